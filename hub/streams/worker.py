"""`hub streams --id N`: a stream worker. It joins the fleet (hub.streams.fleet), watches the
cameras that fall to it (hub.streams.watch) and publishes their events at QoS 1 on
`{prefix}/camera-events/{region}/{camera_id}`. See docs/streams.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hub.config import HubConfig
from hub.inventory import Inventory
from hub.inventory.model import Camera
from hub.mqtt import Message, MqttClient, MqttError, Will
from hub.plates.listed import Listed, watchlist_topic
from hub.startup import load_for_worker
from hub.streams.fleet import Assignment, Roster
from hub.streams.scene import CameraEvent
from hub.supervise import until_signalled
from hub.tls import mqtt_ssl_context

if TYPE_CHECKING:
    from hub.detection.backends.base import Detector
    from hub.detection.privacy import FaceBlurrer
    from hub.plates.reader import PlateReader
    from hub.streams.watch import Pools, Watch

log = logging.getLogger("hub.streams")

# Events waiting for the broker; beyond this the oldest are dropped (and counted).
EVENT_QUEUE = 10_000
# After (re)connecting, how long the other workers' retained presence has to arrive before
# this worker takes its share.
SETTLE_S = 0.5


def events_topic(prefix: str, region: str, camera: str) -> str:
    """The topic a camera's events are published on."""
    return f"{prefix}/camera-events/{region}/{camera}"


def presence_topic(prefix: str, worker: str | None = None) -> str:
    """A worker's presence topic (None: the filter for every worker's)."""
    return f"{prefix}/streams/workers/{'+' if worker is None else worker}"


# A camera whose address is one of these is a snapshot camera (a picture per request): the
# hub asks it for stills, and there is no stream to watch.
STILL_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".cgi")


def has_stream(camera: Camera) -> bool:
    """Whether the camera has a video stream to watch (its substream, or its URL when that is
    not a snapshot address)."""
    if camera.substream:
        return True
    return not urlsplit(camera.url).path.lower().endswith(STILL_SUFFIXES)


class StreamWorker:
    """Joins the fleet and watches its share of the cameras until `run` is stopped."""

    def __init__(
        self,
        config: HubConfig,
        inventory: Inventory,
        worker_id: str,
        *,
        make_watch: Callable[[Camera, Callable[[CameraEvent], None]], Watch],
        listed: Listed | None = None,
    ) -> None:
        """`listed`: the watch-list's digests, kept up to date from the hub's retained
        message, for the cameras that read plates."""
        self.settings = config.streams
        self.prefix = config.mqtt.prefix
        self.worker_id = worker_id
        wanted = set(self.settings.cameras)
        self.cameras = {
            c.id: c
            for c in inventory.cameras.values()
            if (not wanted or c.id in wanted) and has_stream(c)
        }
        self.make_watch = make_watch
        self.roster = Roster(worker_id, self.settings.presence.timeout)
        self.watches: dict[str, tuple[Watch, asyncio.Task[None]]] = {}
        self.published = 0
        self.dropped = 0
        self._events: asyncio.Queue[CameraEvent] = asyncio.Queue(EVENT_QUEUE)
        self._changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        mqtt = config.mqtt
        topic = presence_topic(self.prefix, worker_id)
        self.mqtt = MqttClient(
            mqtt.url,
            client_id=f"streams-{worker_id}",
            username=mqtt.username,
            password=mqtt.password,
            ssl_context=mqtt_ssl_context(mqtt),
            clean_start=True,
            session_expiry=0,
            keepalive=self.settings.presence.keepalive,
            backoff_min=mqtt.reconnect_min,
            backoff_max=mqtt.reconnect_max,
            subscriptions=[(presence_topic(self.prefix), 1)],
            # Vanishing empties our retained presence: the others take our cameras at once.
            will=Will(topic, b"", qos=1, retain=True),
        )
        self.listed = listed
        self.watchlist_topic = watchlist_topic(self.prefix)
        if listed is not None:
            self.mqtt.add_subscription(self.watchlist_topic, 1)
        self.mqtt.on_messages = self._on_messages
        self.mqtt.on_connected = lambda _n: self._changed.set()

    # -- the fleet ------------------------------------------------------------------------------

    def _on_messages(self, messages: list[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            if message.topic == self.watchlist_topic:
                self._take_watchlist(message.payload)
                continue
            worker = message.topic.rsplit("/", 1)[-1]
            if self.roster.heard(worker, bool(message.payload), now):
                log.info("worker %s %s", worker, "joined" if message.payload else "left")
                self._changed.set()

    def _take_watchlist(self, payload: bytes) -> None:
        if self.listed is None:
            return
        try:
            self.listed.update(payload)
        except ValueError as exc:  # the last good list stays
            log.warning("plate watch-list not taken: %s", exc)
            return
        log.info("plate watch-list: %d entries", len(self.listed))

    def presence(self) -> dict[str, Any]:
        """This worker's presence and health, as published (retained)."""
        cameras = {}
        for camera_id, (watch, _) in sorted(self.watches.items()):
            state = watch.stream.state
            cameras[camera_id] = {
                "up": state.up,
                "since": round(state.since, 3),
                "reason": state.reason or None,
                "frames": state.frames,
                "reconnects": state.reconnects,
                "analysed": watch.stats.analysed,
                "detected": watch.stats.detected,
                "events": watch.stats.events,
            }
        return {
            "worker": self.worker_id,
            "ts": round(time.time(), 3),
            "live": self.roster.live,
            "cameras": cameras,
            "published": self.published,
            "dropped": self.dropped,
        }

    async def _fleet(self) -> None:
        """Keep the cameras watched those that fall to this worker; publish presence."""
        heartbeat = self.settings.presence.heartbeat
        next_beat = settled_at = 0.0
        was_connected = False
        assignment = Assignment(self.cameras, [self.worker_id])
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.5, heartbeat)):
                    await self._changed.wait()
            self._changed.clear()
            now = time.monotonic()
            connected = self.mqtt.connected
            if self.roster.expire(now):
                log.info("a worker went unheard for %gs", self.roster.timeout)
            if not connected:
                if was_connected:
                    # Our Will has gone out or soon will; the others take our cameras, so
                    # we stop watching them rather than watch them twice.
                    log.warning("broker lost: stopping every camera until it is back")
                    self.roster.forget_all()
                self._assign(set())
                was_connected = False
                continue
            if not was_connected:
                # The others' retained presence comes right after we subscribe; until it has,
                # we would take every camera for ourselves and start them all.
                was_connected, settled_at = True, now + SETTLE_S
            if now < settled_at:
                continue
            live = self.roster.live
            if set(live) != assignment.workers:
                assignment.update(live)
            changed = self._assign(assignment.of(self.worker_id))
            if changed or now >= next_beat:
                next_beat = now + heartbeat
                payload = json.dumps(self.presence()).encode()
                topic = presence_topic(self.prefix, self.worker_id)
                try:
                    self.mqtt.publish_nowait(topic, payload, True)
                except MqttError as exc:  # the connection went meanwhile: next tick
                    log.warning("presence not published: %s", exc)

    def _assign(self, mine: set[str]) -> bool:
        """Start and stop watches so that exactly `mine` are watched; True if any changed."""
        assert self._tg is not None
        gone = [c for c in self.watches if c not in mine]
        for camera_id in gone:
            _, task = self.watches.pop(camera_id)
            task.cancel()
        new = [c for c in sorted(mine) if c not in self.watches]
        for camera_id in new:
            watch = self.make_watch(self.cameras[camera_id], self._emit)
            task = self._tg.create_task(self._guard(watch), name=f"watch-{camera_id}")
            self.watches[camera_id] = (watch, task)
        if gone or new:
            log.info("watching %d cameras (+%d, -%d)", len(self.watches), len(new), len(gone))
        return bool(gone or new)

    async def _guard(self, watch: Watch) -> None:
        """One camera's watch; a fault in it is logged and it starts again, alone."""
        while True:
            try:
                await watch.run()
            except Exception:
                log.exception("camera %s: watch failed; starting it again", watch.camera.id)
            await asyncio.sleep(self.settings.reconnect_min)

    # -- events ---------------------------------------------------------------------------------

    def _emit(self, event: CameraEvent) -> None:
        if self._events.full():
            self._events.get_nowait()
            self.dropped += 1
        self._events.put_nowait(event)

    async def _publish(self) -> None:
        while True:
            event = await self._events.get()
            camera = self.cameras.get(event.camera)
            region = camera.region if camera is not None else "unknown"
            payload = json.dumps(event.to_json()).encode()
            try:
                await self.mqtt.publish(events_topic(self.prefix, region, event.camera), payload, 1)
            except MqttError as exc:  # refused by the broker (too large, not allowed): counted
                log.warning("camera %s: event not published: %s", event.camera, exc)
                self.dropped += 1
                continue
            self.published += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then say goodbye (an empty presence) and stop."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            mqtt = tg.create_task(self.mqtt.run(), name="mqtt")
            fleet = tg.create_task(self._fleet(), name="fleet")
            publish = tg.create_task(self._publish(), name="publish")
            await stop.wait()
            fleet.cancel()
            for _, task in self.watches.values():
                task.cancel()
            self.watches.clear()
            if self.mqtt.connected:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await self.mqtt.publish(
                            presence_topic(self.prefix, self.worker_id), b"", 1, True
                        )
            publish.cancel()
            await self.mqtt.stop()
            mqtt.cancel()


# -- the command ----------------------------------------------------------------------------------


def _watch_factory(
    config: HubConfig,
    detector: Detector,
    blurrer: FaceBlurrer | None,
    pools: Pools,
    plates: tuple[PlateReader, Listed] | None = None,
) -> Callable[[Camera, Callable[[CameraEvent], None]], Watch]:
    """Makes each camera's watch; `plates` (a reader and the watch-list) gives the cameras of
    `plates.cameras` a plate stage."""
    from hub.detection.evidence import EvidenceWriter  # noqa: PLC0415
    from hub.plates.stage import PlateStage  # noqa: PLC0415
    from hub.streams.watch import Analyser, Watch  # noqa: PLC0415

    evidence = config.detection.evidence_path(Path(config.data_dir))

    def make(camera: Camera, emit: Callable[[CameraEvent], None]) -> Watch:
        blur = config.detection.blur_faces(camera)
        writer = EvidenceWriter(
            blurrer if blur else None, blur_faces=blur, quality=config.streams.jpeg_quality
        )
        stage = None
        if plates is not None and camera.id in config.plates.cameras:
            name = config.streams.aliases.get
            stage = PlateStage(
                camera.id, *plates, config.plates, name=lambda c: name(c, c),
                forget_after=max(60.0, config.streams.tracker.lost_after),
            )  # fmt: skip
        analyser = Analyser(camera, config.streams, detector, stage)
        return Watch(camera, config.streams, analyser, pools, writer, evidence=evidence, emit=emit)

    return make


def _plate_reading(config: HubConfig, inventory: Inventory) -> tuple[PlateReader, Listed] | None:
    """The plate reader and an empty watch-list, when cameras read plates; PlateReaderError
    for a reader that does not load or a camera that is not in the inventory."""
    from hub.plates.reader import PlateReaderError, load_reader  # noqa: PLC0415

    settings = config.plates
    if not settings.cameras:
        return None
    unknown = sorted(set(settings.cameras) - set(inventory.cameras))
    if unknown:
        raise PlateReaderError(f"plates.cameras: no camera {', '.join(unknown)} in the inventory")
    # The section refuses cameras without a reader or a secret.
    assert settings.reader is not None
    assert settings.key is not None
    return load_reader(settings.reader, settings.options), Listed(settings.key)


def main(args: argparse.Namespace) -> int:
    """`hub streams`: load the models, join the fleet and watch cameras until SIGTERM."""
    import cv2  # noqa: PLC0415

    from hub.detection.backends.base import DetectorError  # noqa: PLC0415
    from hub.detection.backends.registry import load_detector  # noqa: PLC0415
    from hub.detection.privacy import FaceBlurrer  # noqa: PLC0415
    from hub.detection.worker import default_faces_model  # noqa: PLC0415
    from hub.plates.reader import PlateReaderError  # noqa: PLC0415
    from hub.streams.tracking import Tracker  # noqa: PLC0415
    from hub.streams.watch import Pools  # noqa: PLC0415

    loaded = load_for_worker(args, "hub streams")
    if loaded is None:
        return 1
    config, inventory = loaded
    model = config.streams.detector or config.detection.detector
    if model is None:
        print(
            "hub streams: not starting: the config has neither streams.detector nor "
            "detection.detector",
            file=sys.stderr,
        )
        return 1
    plates = None
    try:
        plates = _plate_reading(config, inventory)
        detector = load_detector(model)
        Tracker(fps=config.streams.fps)  # the tracker's packages, checked at start
        blurrer = FaceBlurrer(
            default_faces_model(config), threshold=config.detection.face_threshold
        )
    except (DetectorError, PlateReaderError) as exc:
        print(f"hub streams: not starting: {exc}", file=sys.stderr)
        return 1
    # OpenCV's own threads halve nothing here (a small picture each time) and cost their
    # hand-overs: measured, motion took 0.27 ms of CPU a frame with them and 0.13 ms without.
    cv2.setNumThreads(1)
    light = ThreadPoolExecutor(1, thread_name_prefix="motion")
    # One model thread: a worker is one core's worth of detection (start more to scale out).
    detect = ThreadPoolExecutor(1, thread_name_prefix="detect")
    evidence = ThreadPoolExecutor(1, thread_name_prefix="evidence")
    pools = Pools(light, detect, evidence)
    make = _watch_factory(config, detector, blurrer, pools, plates)
    worker = StreamWorker(
        config, inventory, args.id, make_watch=make, listed=plates[1] if plates else None
    )
    log.info("stream worker %s: %d cameras in the fleet's care", args.id, len(worker.cameras))
    if args.metrics:
        from prometheus_client import start_http_server  # noqa: PLC0415

        from hub.streams.metrics import registry_for  # noqa: PLC0415

        host, _, port = args.metrics.rpartition(":")
        start_http_server(int(port), host or "127.0.0.1", registry=registry_for(worker))
        log.info("metrics at http://%s/metrics", args.metrics)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(until_signalled(worker.run))
    finally:
        for pool in (light, detect, evidence):
            pool.shutdown(wait=False, cancel_futures=True)
    return 0
