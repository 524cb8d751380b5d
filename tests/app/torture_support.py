"""Support for the crash-torture test: the storm, the hub's config, the servers that receive
its notifications, an operator at the API, and the oracle that says what should come out.

Time. The example rules wait minutes (`for: 30s`, `clear: ... for: 5m`, escalation after
10 and 30 minutes), and the engine measures them on the readings' own timestamps. The storm
therefore stamps its readings ahead of the wall clock and advances them about fifty times
faster than it, so an hour of storm passes in about a minute; `ingest.max_future` is raised to
let them in. The engine's clock, the newest time it has seen, then always belongs to a reading:
the wall-clock ticks lag behind it and move nothing, so whatever a restarted hub derives from
the redelivered readings carries the same times, and the same incident and command ids, as
what the killed one derived. That makes the pure engine, run here over the same readings and
the operator's acknowledgements, an oracle for every incident, command and notification.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hub.actuators.jobs import command_id_for
from hub.app import load_rules
from hub.config import load_config
from hub.ingest.validate import Validator
from hub.inventory import Inventory, load_inventory
from hub.notify.channels import delivery_id
from hub.notify.outbox import Note
from hub.rules.engine import Engine
from hub.rules.events import (
    ActionRequested,
    Event,
    Incident,
    IncidentAcknowledged,
    IncidentCleared,
    IncidentNotFoundError,
    IncidentOpened,
)
from hub.services import free_port
from tests.helpers import HubProcess, Peer, api_tokens, service_sections, write_config
from tests.notify.support import SmtpServer, WebhookServer

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
OPERATOR = "torture-operator-secret"
VIEWER = "torture-viewer-secret"
OPERATOR_NAME = "desk-1"  # the operator token's name in `api_tokens`: the audit's actor

STORM_MINUTES = 60  # of the readings' time
STORM_WALL_S = 70.0  # of the wall clock
ROUND_S = 30  # readings' seconds between two readings of a sensor
LEAD_S = 2.0  # the first reading's time is this far ahead of the wall clock
NS = 1_000_000_000
START_S = 0.3  # a hub process delivers nothing this soon after it was started

# Channels delivered by e-mail; the others are webhooks, and the CAP channel POSTs its XML.
EMAIL_CHANNELS = ("suwon-disaster-office", "duty-officer", "provincial-duty-officer")
# E-mails carry no key: each text names its incident and event, so that a grouped e-mail
# can be taken apart.
MARK = "[{id}/{event}]"
EMAIL_TEMPLATES = {
    "alert": MARK + " {message}",
    "acknowledged": MARK + " {title}: acknowledged by {acked_by}",
    "cleared": MARK + " {title}: cleared",
}
_MARK_RE = re.compile(r"\[([0-9a-f]{16})/(alert|acknowledged|cleared)\]")

# The storm, in each sensor's own unit: (minute of the storm, value) points, straight lines
# between them. Four places flood and recede: three underpass gauges (barriers close, then
# open), the alley of semi-basement homes, and a reservoir past its attention level. Every
# other sensor reports a quiet value, so that no gauge goes silent and no slope moves.
PROFILES: dict[str, list[tuple[float, float]]] = {
    "suwon-seryu-wl-1": [(0, 3), (3, 3), (8, 35), (20, 38), (25, 4), (60, 3)],  # cm
    "goyang-hwajeong-wl-1": [(0, 3), (7, 3), (11, 30), (40, 32), (45, 4), (60, 3)],  # cm
    "goyang-ilsan-wl-1": [(0, 4), (14, 4), (18, 25), (30, 25), (34, 5), (60, 4)],  # cm
    "suwon-jidong-wl-1": [(0, 2), (11, 2), (13, 18), (24, 18), (27, 3), (60, 2)],  # cm
    "suwon-seoho-wl-1": [(0, 8.0), (6, 9.3), (18, 9.4), (21, 8.5), (60, 8.3)],  # m
}
# Quiet values by kind and unit, and how much they wander (well inside every rule's margin).
QUIET: dict[tuple[str, str | None], tuple[float, float]] = {
    ("water_level", "cm"): (4.0, 0.3),
    ("water_level", "m"): (1.2, 0.01),
    ("flood_switch", None): (0.0, 0.0),
    ("flood_switch", "0/1"): (0.0, 0.0),
    ("rain_rate", "mm/h"): (8.0, 2.0),
    ("rain_rate", "in/h"): (0.3, 0.05),
    ("rain_total", "mm"): (20.0, 0.0),
    ("tilt", "deg"): (1.0, 0.005),
    ("tilt", "mrad"): (10.0, 0.05),
    ("displacement", "mm"): (5.0, 0.05),
    ("displacement", "cm"): (0.5, 0.005),
    ("soil_moisture", "%"): (30.0, 0.5),
    ("battery", "mV"): (3900.0, 5.0),
    ("battery", "V"): (12.6, 0.01),
}
NOISE = {"cm": 0.2, "m": 0.005}


@dataclass(frozen=True, slots=True)
class Sent:
    """One reading the test publishes: what, and when (seconds after the storm's start)."""

    topic: str
    payload: bytes
    sensor: str
    region: str
    ts_ns: int
    due_s: float


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ms(ts_ms: int) -> str:
    stamp = _EPOCH + timedelta(milliseconds=ts_ms)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339_ns(text: str) -> int:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ((stamp - _EPOCH) // timedelta(microseconds=1)) * 1000


def _along(points: list[tuple[float, float]], minute: float) -> float:
    for (m0, v0), (m1, v1) in itertools.pairwise(points):
        if m0 <= minute <= m1:
            return v0 + (v1 - v0) * (minute - m0) / (m1 - m0)
    return points[-1][1]


def make_storm(inventory: Inventory, prefix: str, rng: random.Random, start_ns: int) -> list[Sent]:
    """Every sensor of the inventory every ROUND_S seconds for STORM_MINUTES, in time order,
    each reading at its own millisecond."""
    sensors = sorted(inventory.sensors.values(), key=lambda s: s.id)
    speed = STORM_MINUTES * 60 / STORM_WALL_S
    start_ms = start_ns // 1_000_000
    step_ms = ROUND_S * 1000 // len(sensors)
    sent: list[Sent] = []
    for rnd in range(STORM_MINUTES * 60 // ROUND_S):
        for index, sensor in enumerate(sensors):
            ts_ms = start_ms + rnd * ROUND_S * 1000 + index * step_ms + rng.randrange(step_ms // 2)
            minute = (ts_ms - start_ms) / 60_000
            if sensor.id in PROFILES:
                value = _along(PROFILES[sensor.id], minute)
                value += rng.uniform(-1, 1) * NOISE.get(sensor.unit or "", 0.0)
            elif sensor.kind == "rain_total":
                value = 20.0 + minute * 0.15
            else:
                base, wander = QUIET[(sensor.kind, sensor.unit)]
                value = base + rng.uniform(-1, 1) * wander
            body = {"value": round(value, 4), "ts": rfc3339_ms(ts_ms)}
            sent.append(
                Sent(
                    topic=f"{prefix}/sensors/{sensor.region}/{sensor.id}",
                    payload=json.dumps(body).encode(),
                    sensor=sensor.id,
                    region=sensor.region,
                    ts_ns=ts_ms * 1_000_000,
                    due_s=(ts_ms - start_ms) / 1000 / speed,
                )
            )
    return sent


class StormPublisher(threading.Thread):
    """Publishes the storm (QoS 1) at its pace, whether the hub is up or not: the broker
    queues for the hub's persistent session while it is down."""

    def __init__(self, peer: Peer, sent: list[Sent]) -> None:
        super().__init__(name="storm", daemon=True)
        self.peer = peer
        self.sent = sent
        self.published = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        try:
            for item in self.sent:
                delay = start + item.due_s - time.monotonic()
                if delay > 0 and self._halt.wait(delay):
                    return
                self.peer.publish(item.topic, item.payload, qos=1)
                self.published += 1
        except BaseException as exc:  # reported by the test's thread
            self.error = exc

    def stop(self) -> None:
        self._halt.set()


# -- the hub's configuration ----------------------------------------------------------------


def notify_section(smtp_port: int, webhook_url: str) -> dict[str, Any]:
    """The example hub.yaml's notify section, every channel delivered to a local server:
    e-mail for EMAIL_CHANNELS, webhooks for the others, the CAP channel POSTed to the webhook
    server. Short windows and no rate limit to speak of, so the test waits seconds."""
    example = yaml.safe_load((REPO / "hub.yaml").read_text())["notify"]
    channels: dict[str, Any] = {}
    for name, cfg in example["channels"].items():
        kept = {k: v for k, v in cfg.items() if k == "min_severity"}
        if cfg["type"] == "cap":
            channels[name] = {**cfg, "url": webhook_url}
        elif name in EMAIL_CHANNELS:
            channels[name] = {
                "type": "email",
                "port": smtp_port,
                "sender": "hub@example.org",
                "to": [f"{name}@example.org"],
                "templates": EMAIL_TEMPLATES,
                **kept,
            }
        else:
            channels[name] = {"type": "webhook", "url": webhook_url, **kept}
    return {
        **example,
        "channels": channels,
        "group_window": "300ms",
        "rate_limit": {"count": 1000, "per": "1m"},
        "retry_min": "200ms",
        "retry_max": "1s",
    }


def hub_config(
    folder: Path,
    *,
    mqtt_url: str,
    influx_url: str,
    prefix: str,
    database: str,
    uid: str,
    smtp_port: int,
    webhook_url: str,
) -> Path:
    """The example province (site/, rules/) with the test's broker prefix, database, servers
    and tokens."""
    return write_config(
        folder / "hub.yaml",
        **service_sections(mqtt_url, influx_url, prefix, database, uid, flush_interval="100ms"),
        ingest={"max_future": "3h"},  # the storm runs ahead of the wall clock (see above)
        inventory=[str(REPO / "site")],
        rules=[str(REPO / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}", "tokens": api_tokens(OPERATOR, VIEWER)},
        # Generous: an acknowledgement that takes a restart to arrive is not a failure.
        actuators={"ack_timeout": "30s", "done_timeout": "30s"},
        notify=notify_section(smtp_port, webhook_url),
        data_dir=str(folder / "var"),
    )


# -- a webhook server for a synchronous test ------------------------------------------------


@contextmanager
def threaded_webhook() -> Iterator[WebhookServer]:
    """tests/notify's aiohttp webhook server, on an event loop of its own in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="webhook", daemon=True)
    thread.start()
    server = WebhookServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- the operator ---------------------------------------------------------------------------


def api(
    hub: HubProcess, method: str, path: str, body: object = None, token: str = OPERATOR
) -> tuple[int, Any]:
    """One API call: (status, JSON body); (0, None) when the hub did not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{hub.listen}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None  # killed, starting, or dying under the request


@dataclass(slots=True)
class Operator:
    """Acknowledges incidents and commands barriers at random; keeps what the API accepted."""

    rng: random.Random
    actuators: list[str]  # those no rule of the storm commands
    acks: list[str] = field(default_factory=list)  # incident ids, one per 2xx
    commands: list[dict[str, Any]] = field(default_factory=list)  # jobs the API accepted

    def act(self, hub: HubProcess) -> None:
        if self.rng.random() < 0.6:
            self.acknowledge(hub)
        else:
            self.command(hub)

    def acknowledge(self, hub: HubProcess) -> None:
        status, body = api(hub, "GET", "/api/incidents?state=active", token=VIEWER)
        if status != 200 or not body["incidents"]:
            return
        incident = self.rng.choice(body["incidents"])
        status, _ = api(hub, "POST", f"/api/incidents/{incident['id']}/ack")
        if 200 <= status < 300:
            self.acks.append(str(incident["id"]))

    def command(self, hub: HubProcess) -> None:
        actuator = self.rng.choice(self.actuators)
        body = {
            "command": self.rng.choice(["close", "open"]),
            "reason": "crash torture: operator at the desk",
            "override": self.rng.random() < 0.25,
        }
        status, answer = api(hub, "POST", f"/api/actuators/{actuator}/command", body)
        if 200 <= status < 300:
            self.commands.append(dict(answer["command"]))


# -- the oracle -----------------------------------------------------------------------------


def note_state(step: str) -> str:
    """The incident change a notify action reports (docs/notifications.md)."""
    if step in ("open", "retrigger"):
        return "active"
    return "cleared" if step == "clear" else step


@dataclass(slots=True)
class Expected:
    """What the hub must have done, derived from the readings and acknowledgements alone."""

    incidents: dict[str, Incident] = field(default_factory=dict)  # id -> last state
    commands: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (actuator, cmd)
    notes: set[str] = field(default_factory=set)  # incident/state/channel
    unknown_acks: list[str] = field(default_factory=list)  # incidents the rules never opened

    def by_subject(self) -> dict[tuple[str, str], set[str]]:
        """(rule, subject) -> incident ids."""
        out: dict[tuple[str, str], set[str]] = {}
        for inc in self.incidents.values():
            out.setdefault((inc.rule, inc.subject), set()).add(inc.id)
        return out


class Oracle:
    """The hub's own pure engine over the published readings, with the notifier's rules for
    who hears of what (docs/notifications.md): the expected incidents, commands and notes."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.inventory = load_inventory(self.config.inventory)
        self.rules = load_rules(self.config, self.inventory)

    def run(self, sent: list[Sent], acks: Mapping[str, int] | None = None) -> Expected:
        """`acks`: incident id -> the engine time of its acknowledgement (its `acked_at`)."""
        engine = Engine(self.rules, self.inventory)
        validator = Validator(self.inventory, max_future_s=10 * 86400.0)
        pending = sorted((acks or {}).items(), key=lambda item: item[1])
        out = Expected()
        for item in sent:
            while pending and pending[0][1] < item.ts_ns:
                self._acknowledge(out, engine, pending.pop(0)[0])
            readings, refused = validator.sensor_message(
                item.region, item.sensor, item.payload, item.ts_ns
            )
            assert not refused, f"the storm sent a reading the hub refuses: {refused} {item}"
            self._feed(out, engine.on_readings(readings))
        for incident_id, _ in pending:
            self._acknowledge(out, engine, incident_id)
        return out

    def _acknowledge(self, out: Expected, engine: Engine, incident_id: str) -> None:
        # At time 0: the engine stamps it with its clock, the newest reading fed, which is
        # the clock the live engine had when it took the acknowledgement.
        try:
            self._feed(out, engine.acknowledge(incident_id, OPERATOR_NAME, 0))
        except IncidentNotFoundError:
            out.unknown_acks.append(incident_id)

    def _feed(self, out: Expected, events: list[Event]) -> None:
        notify = self.config.notify
        for event in events:
            if isinstance(event, ActionRequested):
                self._action(out, event)
                continue
            inc = event.incident
            out.incidents[inc.id] = inc
            if isinstance(event, IncidentOpened):
                for channel in notify.broadcast:
                    self._alert(out, inc.id, "active", channel, inc.severity)
            elif isinstance(event, IncidentAcknowledged | IncidentCleared):
                told = {k.rsplit("/", 1)[1] for k in out.notes if k.startswith(inc.id + "/")}
                out.notes.update(f"{inc.id}/{event.name}/{channel}" for channel in told)

    def _action(self, out: Expected, action: ActionRequested) -> None:
        if action.kind == "actuate":
            for actuator in action.params["actuators"]:
                cid = command_id_for(action.action_id, actuator)
                out.commands[cid] = (str(actuator), str(action.params["command"]))
        elif action.kind == "notify":
            state = note_state(action.step)
            for channel in action.params["channels"]:
                if state == "cleared":
                    out.notes.add(f"{action.incident_id}/cleared/{channel}")
                else:
                    self._alert(out, action.incident_id, state, channel, action.severity)

    def _alert(self, out: Expected, incident_id: str, state: str, channel: str, sev: str) -> None:
        order = ("minor", "moderate", "severe", "extreme")
        cfg = self.config.notify.channels[channel]
        if order.index(sev) >= order.index(cfg.min_severity):
            out.notes.add(f"{incident_id}/{state}/{channel}")


# -- what the servers received --------------------------------------------------------------


class Stamped(list[T]):
    """A list that notes when each item was appended (time.monotonic()), for the servers'
    lists of what they received."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: T) -> None:
        self.times.append(time.monotonic())  # first: a reader takes times[:len(list)]
        super().append(item)

    def stamped(self) -> list[tuple[float, T]]:
        items = list(self)
        return list(zip(self.times[: len(items)], items, strict=True))


def stamp_receipts(webhook: WebhookServer, smtp: SmtpServer) -> None:
    """Make both servers note when each delivery came."""
    webhook.received = Stamped()
    smtp.mailbox.messages = Stamped()


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float  # time.monotonic() when the server took it
    channel: str
    delivery: str  # X-Hub-Delivery or Message-ID
    items: list[tuple[str, str]]  # ("key", key) | ("mark", "incident/event") | ("?", what)


@dataclass(slots=True)
class Received:
    """Notification keys as a receiver that honours delivery ids sees them."""

    keys: Counter[str] = field(default_factory=Counter)
    copies: list[str] = field(default_factory=list)  # repeats a crash explains (dropped)
    unknown: list[str] = field(default_factory=list)  # deliveries the test cannot place


def _deliveries(webhook: WebhookServer, smtp: SmtpServer) -> list[Delivery]:
    out: list[Delivery] = []
    assert isinstance(webhook.received, Stamped)
    assert isinstance(smtp.messages, Stamped)
    for at, (headers, body) in webhook.received.stamped():
        delivery = headers.get("X-Hub-Delivery", "")
        if headers.get("Content-Type", "").startswith("application/json"):
            doc = json.loads(body)
            keys = [("key", str(m["key"])) for m in doc["messages"]]
            out.append(Delivery(at, str(doc["channel"]), delivery, keys))
        else:  # CAP: one alert per delivery, named only by the hash of its key
            out.append(Delivery(at, "cap", delivery, [("hash", delivery)]))
    for at, msg in smtp.messages.stamped():
        content = msg.get_body(("plain",))
        text = str(content.get_content()) if content is not None else ""
        marks = [("mark", f"{i}/{e}") for i, e in _MARK_RE.findall(text)]
        channel = str(msg["To"]).split("@", 1)[0]
        out.append(Delivery(at, channel, str(msg["Message-ID"]), marks))
    return sorted(out, key=lambda d: d.at)


def received(
    webhook: WebhookServer, smtp: SmtpServer, expected: set[str], lives: list[tuple[float, float]]
) -> Received:
    """Every key the webhook server (JSON and CAP) and the SMTP server received.

    docs/notifications.md allows one repeat: a crash between the server taking a delivery
    and the outbox noting it repeats that delivery with the same `X-Hub-Delivery` /
    `Message-ID`, and receivers drop the copy. A copy is taken for that, and dropped, only if
    the hub that sent the delivery before was killed before its channel received anything
    else (a channel delivers one group at a time and notes each before the next); any other
    repeat counts.
    `lives`: (start, kill) of each hub process, in time.monotonic(); inf for a living one."""
    out = Received()
    last: dict[str, Delivery] = {}  # the latest receipt of each delivery id
    deliveries = _deliveries(webhook, smtp)
    by_hash = {_delivery(key): key for key in expected}
    # E-mails name incident and event; the key follows from the channel and the expected
    # keys (no rule sends one channel two alerts about one incident).
    candidates: dict[tuple[str, str], list[str]] = {}
    for key in sorted(expected):
        incident_id, state, channel = key.split("/")
        event = state if state in ("acknowledged", "cleared") else "alert"
        candidates.setdefault((f"{incident_id}/{event}", channel), []).append(key)
    for delivery in deliveries:
        before = last.get(delivery.delivery)
        last[delivery.delivery] = delivery
        if before is not None and _crash_between(before, delivery, deliveries, lives):
            out.copies.append(f"{delivery.channel} {delivery.delivery}")
            continue
        for kind, what in delivery.items:
            if kind == "key":
                out.keys[what] += 1
            elif kind == "hash" and what in by_hash:
                out.keys[by_hash[what]] += 1
            elif kind == "mark":
                options = candidates.get((what, delivery.channel), [])
                fresh = [k for k in options if out.keys[k] == 0]
                if options:
                    out.keys[(fresh or options)[0]] += 1
                else:
                    out.keys[f"{what} (e-mail to {delivery.channel})"] += 1
            else:
                out.unknown.append(f"{delivery.channel} delivery {delivery.delivery}")
    return out


def _crash_between(
    original: Delivery, copy: Delivery, deliveries: list[Delivery], lives: list[tuple[float, float]]
) -> bool:
    # The hub that sent the original is the last one started before it came (a hub needs
    # far more than START_S to deliver anything); the server may take a request a moment
    # after the hub that sent it was killed.
    started = [(start, end) for start, end in lives if start + START_S <= original.at]
    if not started:
        return False
    end = started[-1][1]
    return end < copy.at and not any(
        d.channel == original.channel and original.at < d.at < end for d in deliveries
    )


def _delivery(key: str) -> str:
    incident_id, state, channel = key.split("/")
    note = Note(
        key=key,
        channel=channel,
        incident_id=incident_id,
        state=state,
        event="",
        text="",
        incident={},
        created=0.0,
    )
    return delivery_id([note])
