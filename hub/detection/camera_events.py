"""Camera events from the stream workers (docs/streams.md), taken in by the hub.

Each event on `{prefix}/camera-events/{region}/{camera}` is checked (an object with the
contract's fields and types, a camera of the inventory in the topic's region, a time neither
in the future nor too old), handed to the rules' `camera_event` conditions and to the
evidence of incidents that watch the camera, written to InfluxDB's `camera_event`
measurement, kept among the latest for `GET /api/camera-events`, and told to listeners (the
situation room's stream). A worker's resend of an event (same `event_id`) counts once. An
event that cannot be read is logged with its topic and the reason, counted, and dropped:
like a reading, one bad message never holds up the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from hub import metrics
from hub.api.auth import Actor, Token, authorized, error, install
from hub.detection.service import event_snapshot_url
from hub.inventory import Inventory
from hub.mqtt import Message
from hub.rules.conditions.detection import EVENT_KINDS
from hub.rules.service import rfc3339
from hub.storage.line import point_line

log = logging.getLogger("hub.camera_events")

REMEMBERED = 10_000  # event ids kept to recognise a resend
KEPT = 1000  # the latest events, for the API
_TEXT = ("event_id", "class", "zone", "line", "direction", "snapshot", "clip", "plate", "detail")
# Why a stream is down, as the worker says it: kept, cut to this many characters.
_DETAIL_CHARS = 500
_DIRECTIONS = ("in", "out")


class EventError(ValueError):
    """What is wrong with an event, in a sentence."""


class Sink(Protocol):
    def submit(self, lines: bytes, count: int, token: object | None = None) -> None: ...


class Rules(Protocol):
    def on_camera_event(self, camera_id: str, ts_ns: int, event: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """One event as the hub keeps it: the payload's fields, checked, and its region."""

    camera: str
    region: str
    kind: str
    ts_ns: int
    fields: dict[str, Any]  # the payload's other fields, as sent (None left out)

    def to_dict(self, evidence_dir: Path | None = None) -> dict[str, Any]:
        """The API's form: the contract's fields, time in RFC 3339, and `snapshot_url` where
        GET /api/evidence serves the snapshot (under `evidence_dir`)."""
        out = {"camera": self.camera, "region": self.region, "kind": self.kind,
               **self.fields, "ts": rfc3339(self.ts_ns)}  # fmt: skip
        if evidence_dir is not None:
            url = event_snapshot_url(self.fields.get("snapshot"), evidence_dir)
            if url is not None:
                out["snapshot_url"] = url
        return out


def parse(topic: str, payload: bytes, inventory: Inventory, prefix: str) -> CameraEvent:
    """The event on `topic`, or EventError saying what is wrong."""
    parts = topic.removeprefix(f"{prefix}/camera-events/").split("/")
    if len(parts) != 2:
        raise EventError(f"expected {prefix}/camera-events/<region>/<camera>")
    region, camera_id = parts
    camera = inventory.cameras.get(camera_id)
    if camera is None:
        raise EventError(f"no camera {camera_id!r} in the inventory")
    if camera.region != region:
        raise EventError(f"camera {camera_id} is in region {camera.region}, not {region}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("camera", camera_id) != camera_id:
        raise EventError(f"'camera' is {data['camera']!r} on the topic of {camera_id}")
    kind = data.get("kind")
    if kind not in EVENT_KINDS:
        raise EventError(f"'kind' must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    ts = data.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise EventError(f"'ts' must be a time in epoch seconds, got {ts!r}")
    fields: dict[str, Any] = {}
    for key in _TEXT:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise EventError(f"{key!r} must be text or null, got {value!r}")
        if value is not None:
            fields[key] = value
    if "detail" in fields:
        fields["detail"] = fields["detail"][:_DETAIL_CHARS]
    if (kind == "plate") != ("plate" in fields):
        raise EventError("a plate event, and only a plate event, carries 'plate'")
    if fields.get("direction") not in (None, *_DIRECTIONS):
        raise EventError(f"'direction' must be in, out or null, got {fields['direction']!r}")
    for key in ("track_id", "count"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise EventError(f"{key!r} must be a whole number or null, got {value!r}")
        if value is not None:
            fields[key] = value
    if fields.get("count", 1) < 1:
        raise EventError(f"'count' must be at least 1, got {fields['count']}")
    score = data.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise EventError(f"'score' must be a number from 0 to 1 or null, got {score!r}")
        fields["score"] = float(score)
    return CameraEvent(camera_id, region, str(kind), round(ts * 1e9), fields)


class CameraEvents:
    """The hub's side of camera events: a component (see hub.app.Component)."""

    name = "camera-events"

    def __init__(
        self,
        inventory: Inventory,
        *,
        rules: Rules,
        ack: Callable[[list[Message]], object],
        sink: Sink,
        prefix: str,
        max_future_s: float,
        max_age_s: float,
        tokens: Sequence[Token] = (),
        evidence_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        plate_listed: Callable[[str], bool] = lambda _plate: False,
    ) -> None:
        """`plate_listed`: whether a plate is on the watch-list now; a plate event of one that
        is not (taken off since the worker saw it, or never on it) is dropped, so that the
        hub keeps no plate that is not wanted."""
        self.inventory = inventory
        self.evidence_dir = evidence_dir  # where snapshots lie, for their URLs
        self.plate_listed = plate_listed
        self.rules = rules
        self.ack = ack
        self.sink = sink
        self.prefix = prefix
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s
        self.tokens = tuple(tokens)
        self.clock = clock
        self.topic_prefix: str | None = f"{prefix}/camera-events/"
        self.subscriptions: Sequence[tuple[str, int]] = [(f"{prefix}/camera-events/+/+", 1)]
        self.latest: deque[CameraEvent] = deque(maxlen=KEPT)
        self.listeners: list[Callable[[CameraEvent], None]] = []
        self._seen: OrderedDict[str, None] = OrderedDict()

    def on_messages(self, messages: list[Message]) -> None:
        """Handle each event, then acknowledge them all (a bad one is dropped, logged)."""
        for message in messages:
            try:
                self.handle(parse(message.topic, message.payload, self.inventory, self.prefix))
            except EventError as exc:
                metrics.CAMERA_EVENTS.labels("invalid").inc()
                log.warning("%s: camera event dropped: %s", message.topic, exc)
            except Exception:
                metrics.CAMERA_EVENTS.labels("failed").inc()
                log.exception("%s: camera event could not be handled", message.topic)
        self.ack(messages)

    def handle(self, event: CameraEvent) -> None:
        """One checked event: the rules, InfluxDB, the latest, the listeners."""
        event_id = event.fields.get("event_id")
        if event_id is not None:
            if event_id in self._seen:
                metrics.CAMERA_EVENTS.labels("duplicate").inc()
                return
            self._seen[event_id] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        now = self.clock()
        ts = event.ts_ns / 1e9
        if ts > now + self.max_future_s or ts < now - self.max_age_s:
            metrics.CAMERA_EVENTS.labels("out_of_time").inc()
            log.warning(
                "camera event %s of %s dropped: its time %s is %.0f s from the hub's clock",
                event.kind, event.camera, rfc3339(event.ts_ns), ts - now,
            )  # fmt: skip
            return
        plate = event.fields.get("plate")
        if plate is not None and not self.plate_listed(plate):
            metrics.CAMERA_EVENTS.labels("not_listed").inc()
            log.warning(
                "plate event of %s dropped: the plate is not on the watch-list", event.camera
            )
            return
        metrics.CAMERA_EVENTS.labels("ok").inc()
        self.rules.on_camera_event(event.camera, event.ts_ns, {"kind": event.kind, **event.fields})
        self.sink.submit(self._line(event), 1)
        self.latest.append(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("camera events: listener %r failed", listener)

    @staticmethod
    def _line(event: CameraEvent) -> bytes:
        f = event.fields
        tags = {"camera": event.camera, "region": event.region, "kind": event.kind}
        tags |= {k: str(f[k]) for k in ("class", "zone", "line") if f.get(k)}
        values: dict[str, str | int | float | bool] = {"count": int(f.get("count", 1))}
        values |= {k: f[k] for k in ("score", "track_id", "event_id", "direction", "snapshot",
                                     "plate")
                   if f.get(k) is not None}  # fmt: skip
        return point_line("camera_event", tags, values, event.ts_ns)

    def snapshot_regions(self, url: str) -> set[str]:
        """The regions of the latest events whose snapshot GET /api/evidence serves at `url`:
        a token of those regions may see it."""
        if self.evidence_dir is None:
            return set()
        return {
            e.region
            for e in self.latest
            if event_snapshot_url(e.fields.get("snapshot"), self.evidence_dir) == url
        }

    def add_routes(self, app: web.Application) -> None:
        """`GET /api/camera-events?camera=&kind=&limit=` (viewer)."""
        app[EVENTS] = self
        install(app, self.tokens)
        app.router.add_get("/api/camera-events", _list)

    def jobs(self) -> list[Any]:
        """Nothing on the clock."""
        return []

    async def run(self) -> None:
        """Nothing to run."""

    async def close(self) -> None:
        """Nothing to close."""


EVENTS: web.AppKey[CameraEvents] = web.AppKey("camera_events", CameraEvents)


@authorized("viewer")
async def _list(request: web.Request, actor: Actor) -> web.StreamResponse:
    camera, kind = request.query.get("camera"), request.query.get("kind")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return error(400, "'limit' must be a whole number")
    if not 1 <= limit <= KEPT:
        return error(400, f"'limit' must be between 1 and {KEPT}")
    events = request.app[EVENTS]
    found = [
        e.to_dict(events.evidence_dir)
        for e in reversed(events.latest)
        if actor.sees(e.region)
        and (camera is None or e.camera == camera)
        and (kind is None or e.kind == kind)
    ]
    return web.json_response({"events": found[:limit]})
