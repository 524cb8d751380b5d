"""The `detection:` section: privacy opt-out only where the inventory agrees; evidence pruning."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hub.config.model import HubConfig
from hub.detection.config import DetectionConfig
from hub.detection.service import prune_evidence
from hub.detection.worker import Job, Result
from hub.inventory.model import Camera


def camera(privacy: bool | str | None) -> Camera:
    return Camera(
        "cam-1", "x.jpg", "suwon", None, None, "cam-1", None, None, None, privacy, 127.0, 37.0
    )


@pytest.mark.parametrize(
    ("privacy", "listed", "blur"),
    [
        (False, True, False),
        ("public", True, False),
        ("none", True, False),
        (None, True, True),  # the inventory says nothing: faces are blurred
        (True, True, True),
        ("strict", True, True),
        (False, False, True),  # the inventory allows it but the config did not ask
    ],
)
def test_unblurred_only_where_the_inventory_agrees(
    privacy: bool | str | None, listed: bool, blur: bool
) -> None:
    config = DetectionConfig(unblurred=("cam-1",) if listed else ())
    assert config.blur_faces(camera(privacy)) is blur


def test_section_defaults_and_durations(tmp_path: Path) -> None:
    config = HubConfig.model_validate(
        {"data_dir": str(tmp_path), "detection": {"retention": "7d", "deadline": "15s"}},
        context={"base": tmp_path},
    )
    assert config.detection.retention == 7 * 86400
    assert config.detection.deadline == 15
    assert config.detection.evidence_path(config.data_dir) == tmp_path / "evidence"


def test_jobs_and_results_round_trip() -> None:
    job = Job("a.0:cam-1", "cam-1", "a.0", "a", ("person",), 0.5, 1e9)
    assert Job.parse(job.to_json()) == job
    result = Result("a.0:cam-1", "cam-1", 1_700_000_000.25, [{"class": "person"}], "/e.jpg")
    assert Result.parse(result.to_json()) == result
    with pytest.raises(ValueError, match="job_id"):
        Job.parse(b'{"camera_id": "cam-1"}')


def test_retention_deletes_old_evidence_only(tmp_path: Path) -> None:
    old, new = tmp_path / "2020-01-01" / "old.jpg", tmp_path / "today" / "new.jpg"
    for path in (old, new):
        path.parent.mkdir()
        path.write_bytes(b"jpeg")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    assert prune_evidence(tmp_path, now - 3600) == 1
    assert not old.parent.exists()
    assert new.exists()
