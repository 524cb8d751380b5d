"""Watching one camera: its stream's frames through motion gating, the detector, the tracker
and the camera's scene, to events with snapshots.

The newest frame wins: a frame that arrives while the last one is still analysed replaces
any frame waiting, so a slow detector makes a camera skip frames, never fall behind.
CPU work runs in the executors it is given, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hub.detection.backends.base import Detection, Detector
from hub.detection.evidence import EvidenceWriter
from hub.inventory.model import Camera
from hub.streams.config import StreamsConfig
from hub.streams.motion import Image, MotionDetector
from hub.streams.scene import CameraEvent, Scene, Track
from hub.streams.source import Frame, Stream
from hub.streams.tracking import Tracker

if TYPE_CHECKING:
    from hub.plates.stage import PlateStage

log = logging.getLogger("hub.streams.watch")


@dataclass(slots=True)
class WatchStats:
    """Counts for health and benchmarks."""

    analysed: int = 0
    skipped: int = 0  # frames replaced by a newer one before they were analysed
    motion: int = 0
    detected: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)  # frame read -> event, seconds


@dataclass(frozen=True, slots=True)
class Pools:
    """Where CPU work runs: motion and tracking (light), the model, snapshots."""

    light: Executor
    detect: Executor
    evidence: Executor


class Analyser:
    """Frames in, events out, for one camera: motion, detection, tracking, scene. Synchronous;
    the caller runs each step where it likes."""

    def __init__(
        self,
        camera: Camera,
        settings: StreamsConfig,
        detector: Detector,
        plates: PlateStage | None = None,
    ) -> None:
        self.camera = camera
        self.plates = plates  # reads the plates of tracked vehicles (hub.plates)
        self.settings = settings
        self.detector = detector
        m, t = settings.motion, settings.tracker
        self.motion = MotionDetector(
            height=m.height,
            threshold=m.threshold,
            min_area=m.min_area,
            alpha=m.alpha,
            lightning=m.lightning,
        )
        self.tracker = Tracker(
            fps=settings.fps,
            lost_after=t.lost_after,
            high_score=t.high_score,
            low_score=t.low_score,
            new_track_score=t.new_track_score,
            match_iou=t.match_iou,
            buffer=t.buffer,
        )
        self.scene = Scene(
            camera.id,
            camera.zones,
            camera.lines,
            aliases=settings.aliases,
            alerts=settings.alerts,
            leave_frames=settings.leave_frames,
            lost_after=t.lost_after,
        )
        self.tracks: list[Track] = []
        self.last_detect = float("-inf")

    def wants_detection(self, moved: float, ts: float) -> bool:
        """Whether to run the model: on motion, or to refresh tracks that are alive."""
        if moved > 0:
            return True
        return bool(self.scene.tracks) and ts - self.last_detect >= self.settings.tracker.refresh

    def detect(self, image: Image) -> list[Detection]:
        """The model's detections worth tracking (score, class after aliases)."""
        keep = self.settings.classes
        return [
            d
            for d in self.detector.detect(image)
            if d.score >= self.settings.min_score
            and (not keep or self.scene.name(d.cls) in keep or d.cls in keep)
        ]

    def detect_frame(self, frame: Frame) -> list[Detection]:
        """`detect` on a stream's frame, in colour."""
        return self.detect(frame.bgr())

    def track(self, detections: list[Detection], image: Image, ts: float) -> None:
        """Update the tracks from this frame's detections."""
        h, w = image.shape[:2]
        self.tracks = self.tracker.update(detections, w, h)
        self.last_detect = ts

    def events(self, ts: float) -> list[CameraEvent]:
        """The scene's events at `ts` (tracks as last detected)."""
        return self.scene.update(self.tracks, ts)

    def read_plates(self, image: Image, ts: float) -> list[CameraEvent]:
        """`plate` events of listed vehicles among the tracks just detected in `image`."""
        return self.plates.events(self.tracks, image, ts) if self.plates else []


class Watch:
    """One camera, for as long as `run` runs; events go to `emit`."""

    def __init__(
        self,
        camera: Camera,
        settings: StreamsConfig,
        analyser: Analyser,
        pools: Pools,
        writer: EvidenceWriter,
        *,
        evidence: Path,
        emit: Callable[[CameraEvent], None],
    ) -> None:
        self.camera = camera
        self.settings = settings
        self.analyser = analyser
        self.pools = pools
        self.writer = writer
        self.evidence = evidence
        self.snapshots = settings.snapshot_path(evidence)
        self.emit = emit
        self.stream = Stream(
            camera.id,
            camera.substream or camera.url,
            fps=settings.fps,
            width=settings.width,
            height=settings.height,
            stall_after=settings.stall_after,
            backoff_min=settings.reconnect_min,
            backoff_max=settings.reconnect_max,
        )
        self.stats = WatchStats()
        self._latest: tuple[Frame, float] | None = None
        self._fresh = asyncio.Event()
        self._down_reported = False

    async def run(self) -> None:
        """Read, analyse and report until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(), name=f"read-{self.camera.id}")
            tg.create_task(self._analyse(), name=f"analyse-{self.camera.id}")
            tg.create_task(self._health(), name=f"health-{self.camera.id}")

    async def _read(self) -> None:
        async for frame in self.stream.frames():
            if self._latest is not None:
                self.stats.skipped += 1
            self._latest = frame
            self._fresh.set()

    async def _analyse(self) -> None:
        loop = asyncio.get_running_loop()
        a = self.analyser
        while True:
            await self._fresh.wait()
            self._fresh.clear()
            if self._latest is None:
                continue
            frame, ts = self._latest
            self._latest = None
            self.stats.analysed += 1
            moved = await loop.run_in_executor(self.pools.light, a.motion.changed, frame.grey)
            self.stats.motion += moved > 0
            plates: list[CameraEvent] = []
            if a.wants_detection(moved, ts):
                # The colour picture is made here, in the model's pool, and only here.
                found = await loop.run_in_executor(self.pools.detect, a.detect_frame, frame)
                self.stats.detected += 1
                await loop.run_in_executor(self.pools.light, a.track, found, frame.bgr(), ts)
                if a.plates is not None:
                    plates = await loop.run_in_executor(
                        self.pools.detect, a.read_plates, frame.bgr(), ts
                    )
            events = a.events(ts) + plates
            if events:
                await self._report(events, frame, ts)

    async def _report(self, events: list[CameraEvent], frame: Frame, ts: float) -> None:
        loop = asyncio.get_running_loop()
        snapshot: str | None = None
        try:
            snapshot = await loop.run_in_executor(
                self.pools.evidence, self._snapshot, events, frame, ts
            )
        except Exception:  # an event without its picture is still worth sending
            log.exception("camera %s: cannot write the events' snapshot", self.camera.id)
        now = time.time()
        for event in events:
            self.stats.events += 1
            self.stats.latencies.append(now - ts)
            self.emit(replace(event, snapshot=snapshot))

    def _snapshot(self, events: list[CameraEvent], frame: Frame, ts: float) -> str:
        image = frame.bgr()
        h, w = image.shape[:2]
        about = {e.track_id for e in events}
        boxes = [
            Detection(
                self.analyser.scene.name(t.cls),
                t.score,
                (t.box[0] * w, t.box[1] * h, t.box[2] * w, t.box[3] * h),
            )
            for t in self.analyser.tracks
            if t.id in about or None in about
        ]
        day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
        path = self.snapshots / day / f"{self.camera.id}-{events[0].event_id}.jpg"
        written = self.writer.write(path, image, boxes)
        try:
            return str(written.relative_to(self.evidence))
        except ValueError:  # a snapshot folder outside the evidence folder
            return str(written)

    async def _health(self) -> None:
        """Report a stream down for `down_after` once, and its return once."""
        state = self.stream.state
        while True:
            await asyncio.sleep(min(1.0, self.settings.down_after / 4))
            now = time.time()
            if not state.up and not self._down_reported:
                if now - state.since >= self.settings.down_after:
                    self._down_reported = True
                    self.emit(CameraEvent(self.camera.id, "stream_down", now, detail=state.reason))
            elif state.up and self._down_reported:
                self._down_reported = False
                self.emit(CameraEvent(self.camera.id, "stream_up", now))
