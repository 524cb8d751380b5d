"""`hub detector`: a worker that takes detection jobs from the broker's shared subscription.

For each job it grabs the camera's frame (a capture process under a deadline), runs the
detector and the face blurrer in a thread (never on the event loop), writes the evidence
JPEG, publishes the result at QoS 1 and only then acknowledges the job. Every failure
becomes a result with `error`, so the hub never waits on a job that cannot be done.

The wire format of jobs and results lives here too, so that the hub and the workers share it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import HubConfig
from hub.inventory import Inventory
from hub.mqtt import Message, MqttClient
from hub.startup import load_for_worker
from hub.supervise import until_signalled
from hub.tls import mqtt_ssl_context

if TYPE_CHECKING:
    from hub.detection.backends.base import Detection, Detector
    from hub.detection.capture import CapturePool, Image
    from hub.detection.privacy import FaceBlurrer

log = logging.getLogger("hub.detector")

SHARE_GROUP = "detectors"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# -- the wire format ----------------------------------------------------------------------------


def requests_topic(prefix: str) -> str:
    """The topic the hub publishes jobs on."""
    return f"{prefix}/detect/requests"


def results_topic(prefix: str, camera_id: str) -> str:
    """The topic a camera's results are published on."""
    return f"{prefix}/detect/results/{camera_id}"


@dataclass(frozen=True, slots=True)
class Job:
    """One camera to look through for one action."""

    job_id: str
    camera_id: str
    action_id: str
    incident_id: str
    classes: tuple[str, ...] = ()
    min_score: float | None = None
    expires_at: float | None = None  # epoch seconds; a worker taking it later answers an error

    def to_json(self) -> bytes:
        """The job as published."""
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "camera_id": self.camera_id,
            "action_id": self.action_id,
            "incident_id": self.incident_id,
            "classes": list(self.classes),
            "min_score": self.min_score,
            "expires_at": self.expires_at,
        }
        return json.dumps(body).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Job:
        """A job from its JSON; ValueError says what is wrong."""
        data = _object(payload, "job")
        classes = data.get("classes") or []
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("job: classes must be a list of names")
        min_score, expires = data.get("min_score"), data.get("expires_at")
        return cls(
            _text(data, "job_id"),
            _text(data, "camera_id"),
            str(data.get("action_id", "")),
            str(data.get("incident_id", "")),
            tuple(classes),
            float(min_score) if isinstance(min_score, int | float) else None,
            float(expires) if isinstance(expires, int | float) else None,
        )


@dataclass(frozen=True, slots=True)
class Result:
    """What a worker found through one camera, or why it could not look."""

    job_id: str
    camera_id: str
    ts: float  # epoch seconds: when the frame was grabbed (or the job failed)
    detections: list[dict[str, Any]] = field(default_factory=list)
    snapshot: str | None = None
    error: str | None = None

    def to_json(self) -> bytes:
        """The result as the contract has it."""
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "camera_id": self.camera_id,
            "ts": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "detections": self.detections,
            "snapshot": self.snapshot,
        }
        if self.error is not None:
            body["error"] = self.error
        return json.dumps(body).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Result:
        """A result from its JSON; ValueError says what is wrong."""
        data = _object(payload, "result")
        raw_ts = data.get("ts")
        if isinstance(raw_ts, int | float) and not isinstance(raw_ts, bool):
            ts = float(raw_ts)
        elif isinstance(raw_ts, str):
            ts = datetime.fromisoformat(raw_ts.replace("Z", "+00:00")).timestamp()
        else:
            raise ValueError("result: ts must be RFC 3339 or epoch seconds")  # noqa: TRY004 - bad input, handled as ValueError
        detections = data.get("detections") or []
        if not isinstance(detections, list) or not all(isinstance(d, dict) for d in detections):
            raise ValueError("result: detections must be a list of objects")
        snapshot, error = data.get("snapshot"), data.get("error")
        return cls(
            _text(data, "job_id"),
            _text(data, "camera_id"),
            ts,
            detections,
            str(snapshot) if snapshot else None,
            str(error) if error is not None else None,
        )


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object")  # noqa: TRY004 - bad input
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


# -- the worker ---------------------------------------------------------------------------------


class DetectorWorker:
    """Takes jobs one at a time and answers each; `run` until `stop` is set."""

    def __init__(
        self,
        config: HubConfig,
        inventory: Inventory,
        worker_id: str,
        *,
        detector: Detector,
        blurrer: FaceBlurrer | None,
        pool: CapturePool,
    ) -> None:
        self.config = config.detection
        self.inventory = inventory
        self.worker_id = worker_id
        self.detector = detector
        self.blurrer = blurrer
        self.pool = pool
        self.prefix = config.mqtt.prefix
        self.evidence_dir = self.config.evidence_path(Path(config.data_dir))
        self.done = 0
        mqtt = config.mqtt
        # A clean session that ends with the connection: the broker keeps no queue for a
        # dead worker, so new jobs go to the live members of the group. Jobs it held are
        # dropped by Mosquitto (not handed on); the hub sends unanswered jobs again.
        self.mqtt = MqttClient(
            mqtt.url,
            client_id=f"detector-{worker_id}",
            username=mqtt.username,
            password=mqtt.password,
            ssl_context=mqtt_ssl_context(mqtt),
            clean_start=True,
            session_expiry=0,
            keepalive=mqtt.keepalive,
            receive_maximum=1,  # one job in hand; the rest stay with the group
            backoff_min=mqtt.reconnect_min,
            backoff_max=mqtt.reconnect_max,
            auto_ack=False,
            subscriptions=[(f"$share/{SHARE_GROUP}/{requests_topic(self.prefix)}", 1)],
        )
        self._jobs: asyncio.Queue[Message] = asyncio.Queue()
        self.mqtt.on_messages = self._on_messages
        # Inference and blurring release the GIL in onnxruntime and OpenCV; one thread keeps
        # a worker to one job's CPU at a time (start more workers to scale out).
        self._threads = ThreadPoolExecutor(1, thread_name_prefix="detect")

    def _on_messages(self, messages: list[Message]) -> None:
        for message in messages:
            self._jobs.put_nowait(message)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve jobs until `stop` is set; a job in hand is left unacknowledged."""
        try:
            async with asyncio.TaskGroup() as tg:
                mqtt = tg.create_task(self.mqtt.run(), name="mqtt")
                consume = tg.create_task(self._consume(), name="jobs")
                await stop.wait()
                consume.cancel()
                await self.mqtt.stop()
                mqtt.cancel()
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _consume(self) -> None:
        await self.mqtt.wait_connected()
        log.info("detector %s ready: subscribed to the job queue", self.worker_id)
        while True:
            message = await self._jobs.get()
            await self.handle(message)

    async def handle(self, message: Message) -> None:
        """Answer one job, then acknowledge it."""
        try:
            job = Job.parse(message.payload)
        except ValueError as exc:
            log.warning("dropping a job that cannot be read: %s", exc)
            self.mqtt.ack([message])
            return
        log.info("taking job %s (camera %s)", job.job_id, job.camera_id)
        result = await self.answer(job)
        await self.mqtt.publish(results_topic(self.prefix, job.camera_id), result.to_json(), 1)
        # Only now: a worker killed before this point leaves the job to be sent again.
        self.mqtt.ack([message])
        self.done += 1
        log.info("job %s done: %s", job.job_id, result.error or f"{len(result.detections)} found")

    async def answer(self, job: Job) -> Result:
        """The result of one job; never raises for a camera's or a model's failure."""
        camera = self.inventory.cameras.get(job.camera_id)
        if camera is None:
            return _failed(job, f"camera {job.camera_id} is not in this worker's inventory")
        if job.expires_at is not None and time.time() > job.expires_at:
            return _failed(job, "the job expired before a worker took it")
        from hub.detection.capture import CaptureError  # noqa: PLC0415 - OpenCV on use

        frame = await self.pool.capture(camera.id, camera.url)
        if isinstance(frame, CaptureError):
            return _failed(job, f"capture: {frame.reason}")
        blur = self.config.blur_faces(camera)
        loop = asyncio.get_running_loop()
        try:
            found, path = await loop.run_in_executor(
                self._threads, self._detect, job, frame.image, blur
            )
        except Exception as exc:  # a model or encoder failure is the job's answer
            log.exception("job %s: detection failed", job.job_id)
            return _failed(job, f"detector: {type(exc).__name__}: {exc}")
        return Result(job.job_id, job.camera_id, frame.ts, [d.to_json() for d in found], str(path))

    def _detect(self, job: Job, image: Image, blur: bool) -> tuple[list[Detection], Path]:
        from hub.detection.backends.base import DetectionFilter  # noqa: PLC0415
        from hub.detection.evidence import EvidenceWriter  # noqa: PLC0415

        wanted = DetectionFilter(
            classes=job.classes or self.config.classes,
            min_score=max(job.min_score or 0.0, self.config.min_score),
        )
        found = wanted.apply(self.detector.detect(image))
        writer = EvidenceWriter(self.blurrer, blur_faces=blur, quality=self.config.jpeg_quality)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.evidence_dir / day / f"{_UNSAFE.sub('_', job.job_id)}.jpg"
        return found, writer.write(path, image, found)


def _failed(job: Job, reason: str) -> Result:
    return Result(job.job_id, job.camera_id, time.time(), error=reason)


# -- the command --------------------------------------------------------------------------------


def default_faces_model(config: HubConfig) -> Path:
    """The face model: the config's, else where scripts/fetch-models puts it."""
    faces = config.detection.faces_model
    return faces if faces is not None else Path(config.data_dir) / "models/faces/centerface.onnx"


def main(args: argparse.Namespace) -> int:
    """`hub detector`: load the model and serve jobs until SIGTERM or Ctrl-C."""
    from hub.detection.backends.base import DetectorError  # noqa: PLC0415
    from hub.detection.backends.registry import load_detector  # noqa: PLC0415
    from hub.detection.capture import CapturePool  # noqa: PLC0415
    from hub.detection.privacy import FaceBlurrer  # noqa: PLC0415

    loaded = load_for_worker(args, "hub detector")
    if loaded is None:
        return 1
    config, inventory = loaded
    settings = config.detection
    if settings.detector is None:
        print("hub detector: not starting: the config has no detection.detector", file=sys.stderr)
        return 1
    try:
        detector = load_detector(settings.detector)
        # Evidence is blurred unless a camera opts out, so the face model is needed at start.
        blurrer = FaceBlurrer(default_faces_model(config), threshold=settings.face_threshold)
    except DetectorError as exc:
        print(f"hub detector: not starting: {exc}", file=sys.stderr)
        return 1
    capture = settings.capture
    with CapturePool(
        capture.workers,
        connect_timeout=capture.connect_timeout,
        read_timeout=capture.read_timeout,
        deadline=capture.deadline,
    ) as pool:
        worker = DetectorWorker(
            config, inventory, args.id, detector=detector, blurrer=blurrer, pool=pool
        )
        log.info("detector %s serving jobs from %s", args.id, config.mqtt.url)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(until_signalled(worker.run))
    return 0
