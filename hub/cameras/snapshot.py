"""`GET /api/cameras/{id}/snapshot`: a fresh JPEG from a camera, faces blurred, on demand.

The frame is grabbed by capture worker processes of the snapshot's own (hub.detection.capture,
started on the first request, so a hub that never serves one never starts them), under
`detection.snapshot.deadline`: the answer is a picture or a JSON error naming the cause
(timeout 504; refused, not found, unreadable 502) within it, and the event loop serves other
requests meanwhile. Faces are blurred (hub.detection.privacy) before the picture leaves the
hub, unless the camera may be shown unblurred (`detection.unblurred` and its inventory
`privacy` agree); without the face model such a camera's snapshot is refused, never sent
unblurred. Every request is audited (kind `snapshot`: who, which camera, what came of it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from hub.api.auth import Actor, Recorder, Token, authorized, error, install
from hub.detection.config import DetectionConfig
from hub.inventory import Inventory
from hub.inventory.model import Camera
from hub.mqtt import Message

if TYPE_CHECKING:
    from hub.detection.capture import CapturePool
    from hub.detection.privacy import FaceBlurrer
    from hub.scheduler import Job

log = logging.getLogger("hub.snapshots")

SNAPSHOTS: web.AppKey[SnapshotService] = web.AppKey("snapshots")


@dataclass(frozen=True, slots=True)
class Picture:
    """A JPEG ready to send, and how many faces were blurred in it (None: not blurred)."""

    jpeg: bytes
    taken: float
    faces: int | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why there is no picture: an HTTP status, a cause in one word and the reason."""

    status: int
    cause: str
    reason: str


def cause_of(reason: str) -> tuple[int, str]:
    """The status and one-word cause of a capture's failure reason."""
    text = reason.lower()
    if "timed out" in text or "deadline" in text:
        return 504, "timeout"
    if "refused" in text:
        return 502, "refused"
    if "404" in text or "not found" in text or "no such file" in text:
        return 502, "not found"
    if "unknown host" in text:
        return 502, "unknown host"
    return 502, "unreadable"


class SnapshotService:
    """Takes snapshots for the API; a component of the hub (routes, and workers to close)."""

    name = "snapshots"
    topic_prefix: str | None = None
    subscriptions: Sequence[tuple[str, int]] = ()

    def __init__(
        self,
        config: DetectionConfig,
        inventory: Inventory,
        *,
        audit: Recorder,
        faces_model: Path,
        tokens: Sequence[Token],
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.audit = audit
        self.faces_model = faces_model
        self.tokens = tokens
        self.deadline = config.snapshot.deadline
        self._pool: CapturePool | None = None
        self._blurrer: FaceBlurrer | None = None
        self._lock = threading.Lock()
        # Blurring and encoding: one at a time, so that snapshots never take the hub's cores.
        self._threads = ThreadPoolExecutor(1, thread_name_prefix="snapshot")

    # -- the component's part ---------------------------------------------------------------

    def on_messages(self, messages: list[Message]) -> None:
        """No topics of its own."""

    def jobs(self) -> list[Job]:
        """No timed work."""
        return []

    def add_routes(self, app: web.Application) -> None:
        """`GET /api/cameras/{id}/snapshot`, for viewers."""
        app[SNAPSHOTS] = self
        install(app, self.tokens)
        app.router.add_get("/api/cameras/{id}/snapshot", _snapshot)

    async def run(self) -> None:
        """Nothing runs until a snapshot is asked for."""

    async def close(self) -> None:
        """Stop the capture workers, if any were started."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)

    # -- taking a snapshot ------------------------------------------------------------------

    async def take(self, camera: Camera) -> Picture | Failure:
        """A fresh picture from `camera`, or why not, within the deadline."""
        try:
            return await asyncio.wait_for(self._take(camera), self.deadline)
        except TimeoutError:
            return Failure(504, "timeout", f"no picture within the {self.deadline:g} s deadline")

    async def _take(self, camera: Camera) -> Picture | Failure:
        try:
            pool = await asyncio.to_thread(self._capture_pool)
        except ImportError as exc:
            return Failure(503, "unavailable", f"snapshots need the detect extra: {exc}")
        from hub.detection.capture import CaptureError  # noqa: PLC0415 - OpenCV on use

        frame = await pool.capture(camera.id, camera.url)
        if isinstance(frame, CaptureError):
            status, cause = cause_of(frame.reason)
            return Failure(status, cause, _without_secrets(frame.reason, camera.url))
        blur = self.config.blur_faces(camera)
        loop = asyncio.get_running_loop()
        try:
            jpeg, faces = await loop.run_in_executor(self._threads, self._encode, frame.image, blur)
        except FacesUnavailableError as exc:
            return Failure(503, "faces", f"faces cannot be blurred, so nothing is shown: {exc}")
        return Picture(jpeg, frame.ts, faces)

    def _capture_pool(self) -> CapturePool:
        from hub.detection.capture import CapturePool  # noqa: PLC0415 - OpenCV on use

        with self._lock:
            if self._pool is None:
                capture = self.config.capture
                self._pool = CapturePool(
                    self.config.snapshot.workers,
                    connect_timeout=min(capture.connect_timeout, self.deadline),
                    read_timeout=min(capture.read_timeout, self.deadline),
                    deadline=self.deadline,
                )
            return self._pool

    def _encode(self, image: object, blur: bool) -> tuple[bytes, int | None]:
        import cv2  # noqa: PLC0415 - OpenCV on use

        faces = None
        if blur:
            blurrer = self._face_blurrer()
            image, found = blurrer.anonymize(image)  # type: ignore[arg-type]
            faces = len(found)
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        ok, data = cv2.imencode(".jpg", image, quality)  # type: ignore[call-overload]
        if not ok:
            raise ValueError("the frame could not be encoded as JPEG")
        return bytes(data), faces

    def _face_blurrer(self) -> FaceBlurrer:
        if self._blurrer is None:
            try:
                from hub.detection.backends.base import DetectorError  # noqa: PLC0415
                from hub.detection.privacy import FaceBlurrer  # noqa: PLC0415
            except ImportError as exc:
                raise FacesUnavailableError(f"the detect extra is missing: {exc}") from exc
            try:
                self._blurrer = FaceBlurrer(
                    self.faces_model, threshold=self.config.face_threshold, threads=1
                )
            except DetectorError as exc:
                raise FacesUnavailableError(str(exc)) from exc
        return self._blurrer


class FacesUnavailableError(Exception):
    """The face model cannot be loaded: a camera that needs blurring shows nothing."""


@authorized("viewer")
async def _snapshot(request: web.Request, actor: Actor) -> web.StreamResponse:
    service = request.app[SNAPSHOTS]
    camera_id = request.match_info["id"]
    camera = service.inventory.cameras.get(camera_id)
    if camera is None or not actor.sees(camera.region):
        # Another city's camera is as if it were not there, as in GET /api/cameras.
        service.audit.record(
            "snapshot", actor.name, f"snapshot of {camera_id}: no such camera", camera=camera_id,
            outcome="not found",
        )  # fmt: skip
        return error(404, f"no camera {camera_id!r}" + _in_regions(actor))
    start = time.monotonic()
    taken = await service.take(camera)
    took_ms = round((time.monotonic() - start) * 1000)
    if isinstance(taken, Failure):
        service.audit.record(
            "snapshot", actor.name, f"snapshot of {camera.id} failed: {taken.reason}",
            camera=camera.id, region=camera.region, outcome=taken.cause, ms=took_ms,
        )  # fmt: skip
        body = {
            "error": f"camera {camera.id}: {taken.reason}",
            "status": taken.status,
            "camera": camera.id,
            "cause": taken.cause,
        }
        return web.json_response(body, status=taken.status)
    blurred = "unblurred" if taken.faces is None else f"{taken.faces} face(s) blurred"
    service.audit.record(
        "snapshot", actor.name, f"snapshot of {camera.id} ({blurred})",
        camera=camera.id, region=camera.region, outcome="ok", ms=took_ms,
    )  # fmt: skip
    return web.Response(
        body=taken.jpeg,
        content_type="image/jpeg",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Snapshot-Taken": f"{taken.taken:.3f}",
            "X-Faces-Blurred": "unblurred" if taken.faces is None else str(taken.faces),
        },
    )


def _without_secrets(reason: str, url: str) -> str:
    """The reason without the camera's user and password, should a library have quoted the
    URL: viewers never learn cameras' credentials (GET /api/cameras hides them too)."""
    parts = urlsplit(url)
    for secret in (parts.password, parts.username):
        if secret:
            reason = reason.replace(secret, "***")
    return reason


def _in_regions(actor: Actor) -> str:
    return "" if actor.regions is None else " in this token's regions"
