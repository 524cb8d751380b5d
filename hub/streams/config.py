"""The `streams:` section of hub.yaml: continuous analysis of camera streams (`hub streams`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from hub.config.types import ConfigPath, Name, PositiveDuration, Section
from hub.detection.backends.config import DetectorConfig
from hub.durations import format_duration

# Frames a second that are analysed; cameras send more, the rest are decoded and dropped.
MAX_FPS = 30.0
# Frames handed to Python: 1920 px wide is a main stream, which analysis does not need.
MAX_SIDE = 1920


class MotionConfig(Section):
    """Motion gating: background subtraction on a small grey copy of each frame."""

    height: Annotated[int, Field(ge=18, le=360)] = 90  # rows of the copy
    # Per-pixel difference (0-255) from the running background that counts as change.
    threshold: Annotated[int, Field(ge=1, le=255)] = 25
    # Changed area, as a fraction of the frame, that counts as motion.
    min_area: Annotated[float, Field(gt=0.0, le=1.0)] = 0.002
    # How fast the background learns (weight of each new frame).
    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    # More change than this (lightning, headlights, the camera's IR switching) is not motion:
    # the background is reset instead.
    lightning: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8


class TrackerConfig(Section):
    """ByteTrack's settings (ultralytics' implementation)."""

    high_score: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    low_score: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    new_track_score: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    # Boxes are matched enlarged by this fraction of their size on each side (buffered IoU):
    # at 2-5 frames a second people move about their own width between frames.
    buffer: Annotated[float, Field(ge=0.0, le=5.0)] = 1.0
    # A track unseen this long is dropped (and has left every zone it was in).
    lost_after: PositiveDuration = 3.0
    # Detection runs this often while tracks are alive, motion or not, so that an object
    # that left without motion after it (out of the frame, say) is not kept forever.
    refresh: PositiveDuration = 1.0


class PresenceConfig(Section):
    """How stream workers know each other (see docs/streams.md, "The fleet")."""

    # MQTT keepalive of a worker: a worker whose machine vanishes is known dead within 1.5x.
    keepalive: PositiveDuration = 10.0
    # Presence is published again this often; a worker unheard for `timeout` is dead even
    # when no Will came (a broker restart that kept a dead worker's retained presence).
    heartbeat: PositiveDuration = 5.0
    timeout: PositiveDuration = Field(default=20.0, validate_default=True)

    @model_validator(mode="after")
    def _order(self) -> PresenceConfig:
        if self.timeout <= self.heartbeat:
            raise ValueError(
                f"presence.timeout ({format_duration(self.timeout)}) must be longer than "
                f"presence.heartbeat ({format_duration(self.heartbeat)}), or live workers "
                "would be taken for dead between two heartbeats"
            )
        return self


class StreamsConfig(Section):
    """Stream workers: decoding, motion, detection, tracking, events and the fleet."""

    # Cameras watched; empty: every camera of the inventory.
    cameras: tuple[Name, ...] = ()
    fps: Annotated[float, Field(gt=0.0, le=MAX_FPS)] = 2.0
    width: Annotated[int, Field(ge=64, le=MAX_SIDE)] = 640
    height: Annotated[int, Field(ge=64, le=MAX_SIDE)] = 360
    # The model run on motion; absent, detection.detector is used.
    detector: DetectorConfig | None = None
    # Classes tracked (after `aliases`); empty: everything the model finds.
    classes: tuple[Name, ...] = ()
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.4
    # Model class names renamed in events: the fall model's `fallen_person` is a person.
    aliases: dict[str, Name] = Field(default_factory=lambda: {"fallen_person": "person"})
    # Model classes (before `aliases`) that raise a fall, fire or smoke event, once per track.
    alerts: dict[str, tuple[Name, ...]] = Field(
        default_factory=lambda: {
            "fall": ("fallen_person", "Fall"),
            "fire": ("fire", "flame"),
            "smoke": ("smoke",),
        }
    )
    # A track must be outside a zone this many frames in a row to have left it (no flapping
    # on the edge).
    leave_frames: Annotated[int, Field(ge=1, le=100)] = 2
    motion: MotionConfig = Field(default_factory=MotionConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    # A stream that gives no frame for this long is restarted.
    stall_after: PositiveDuration = 10.0
    reconnect_min: PositiveDuration = 1.0
    reconnect_max: PositiveDuration = 60.0
    # A camera down this long gets a `stream_down` event (and `stream_up` when it is back).
    down_after: PositiveDuration = 60.0
    # Snapshots of events; default <evidence folder>/streams.
    snapshots: ConfigPath | None = None
    jpeg_quality: Annotated[int, Field(ge=10, le=100)] = 80

    @model_validator(mode="after")
    def _checks(self) -> StreamsConfig:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(
                f"reconnect_max ({format_duration(self.reconnect_max)}) is shorter than "
                f"reconnect_min ({format_duration(self.reconnect_min)})"
            )
        if self.width % 2 or self.height % 2:
            # Frames come as I420, whose colour planes are half the size each way.
            raise ValueError(f"width and height must be even, not {self.width}x{self.height}")
        allowed = {"fall", "fire", "smoke"}
        for kind in self.alerts:
            if kind not in allowed:
                raise ValueError(f"alerts: unknown event kind {kind!r} (fall, fire or smoke)")
        return self

    def snapshot_path(self, evidence: Path) -> Path:
        """Where event snapshots are written."""
        return self.snapshots if self.snapshots is not None else evidence / "streams"
