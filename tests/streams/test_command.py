"""`hub streams` refuses to start, saying why, on a config it cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import write_config
from tests.streams.support import camera_site


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "streams", "--id", "1", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_no_detector_is_refused(tmp_path: Path) -> None:
    site = camera_site(tmp_path / "site", {"cam": {"url": "rtsp://10.0.0.1/s"}})
    done = run(write_config(tmp_path / "hub.yaml", inventory=[str(site)]))
    assert done.returncode == 1
    assert "neither streams.detector nor detection.detector" in done.stderr


def test_a_bad_zone_is_refused_at_its_place(tmp_path: Path) -> None:
    site = camera_site(
        tmp_path / "site",
        {"cam": {"url": "rtsp://10.0.0.1/s", "lines": [{"id": "l", "points": [[0, 0]]}]}},
    )
    done = run(write_config(tmp_path / "hub.yaml", inventory=[str(site)]))
    assert done.returncode == 1
    assert "cameras.geojson:1:" in done.stderr
    assert "lines[0].points: expected a list of 2 points [x, y]" in done.stderr


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    site = camera_site(tmp_path / "site", {"cam": {"url": "rtsp://10.0.0.1/s"}})
    config = write_config(
        tmp_path / "hub.yaml",
        inventory=[str(site)],
        streams={"detector": {"type": "onnx", "model": "nowhere.onnx"}},
    )
    done = run(config)
    assert done.returncode == 1
    assert "hub streams: not starting:" in done.stderr
    assert "nowhere.onnx" in done.stderr
