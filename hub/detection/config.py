"""The `detection:` section of hub.yaml: the detector model, evidence and job timing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from hub.config.types import ConfigPath, Name, PositiveDuration, Section
from hub.detection.backends.config import DetectorConfig
from hub.inventory.model import Camera

# Inventory `privacy` values that say a camera's view holds nobody to protect.
NOT_PRIVATE = frozenset({"none", "off", "public"})


class CaptureConfig(Section):
    """How frames are grabbed: worker processes and their timeouts."""

    # Each worker is a process of its own; a machine runs out of memory long before 256.
    workers: Annotated[int, Field(gt=0, le=256)] = 2
    connect_timeout: PositiveDuration = 3.0
    read_timeout: PositiveDuration = 3.0
    # A capture that takes longer is killed with its process, whatever the camera does.
    deadline: PositiveDuration = 8.0


class SnapshotConfig(Section):
    """On-demand snapshots (`GET /api/cameras/{id}/snapshot`): their own capture workers."""

    # The request answers within this, a picture or an error, whatever the camera does.
    deadline: PositiveDuration = 5.0
    workers: Annotated[int, Field(gt=0, le=256)] = 2


class DetectionConfig(Section):
    """Detection jobs: what the workers run and how long the hub waits for them."""

    # Required by `hub detector`; the hub itself only publishes jobs and reads results.
    detector: DetectorConfig | None = None
    # Classes reported when an action names none; empty means whatever the model finds.
    classes: tuple[Name, ...] = ()
    min_score: float = Field(default=0.25, ge=0.0, le=1.0)
    faces_model: ConfigPath | None = None
    face_threshold: float = Field(default=0.4, gt=0.0, le=1.0)
    # Default: <data_dir>/evidence, shared by the hub (retention) and the workers (writing).
    evidence_dir: ConfigPath | None = None
    retention: PositiveDuration = 30 * 86400.0
    # The hub waits this long for a job's result before the action counts as timed out.
    deadline: PositiveDuration = 10.0
    # A job without a result this long after it was sent is sent again (same job id): a
    # worker that died took its queued jobs with it, and the broker does not hand them on.
    resend_after: PositiveDuration = 3.0
    # Cameras whose evidence is stored unblurred; honoured only where the inventory's
    # `privacy` for the camera is false, "none", "off" or "public".
    unblurred: tuple[Name, ...] = ()
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig)

    def evidence_path(self, data_dir: Path) -> Path:
        """Where snapshots are written."""
        return self.evidence_dir if self.evidence_dir is not None else data_dir / "evidence"

    def blur_faces(self, camera: Camera | None) -> bool:
        """Whether faces must be blurred in this camera's evidence (yes unless both agree)."""
        if camera is None or camera.id not in self.unblurred:
            return True
        privacy = camera.privacy
        if privacy is False:
            return False
        return not (isinstance(privacy, str) and privacy.strip().lower() in NOT_PRIVATE)
