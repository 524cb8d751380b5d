"""Rule test files: readings, ticks, acknowledgements and detections in; expected events out.

rules: [../underpass.yaml]       # optional, relative to this file
inventory: [../../site/]         # optional, relative to this file
tests:
  - name: water above 15 cm for 30 s closes the barriers
    steps:
      - {at: 0s, sensor: suwon-seryu-wl-1, value: 16 cm}
      - {at: 0s, every: 10s, until: 1m, sensor: suwon-seryu-wl-1, value: 16 cm, to: 20 cm}
      - {at: 2m, ack: underpass-flooding, subject: suwon-seryu-wl-1, by: desk-1}
    expect:
      - {at: 30s, opened: underpass-flooding, subject: suwon-seryu-wl-1}
      - {at: 30s, action: actuate, command: close}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.config.problems import KeyPath, describe, did_you_mean
from hub.durations import DurationError, parse_duration
from hub.rules.schema import Ctx, mapping, names, quantity, text

NS = 1_000_000_000
DEFAULT_START = "2026-01-01T00:00:00Z"
EVENT_KEYS = ("opened", "acknowledged", "updated", "cleared", "archived", "action")
# Fields an expectation may compare: on incident events, and on action events.
INCIDENT_FIELDS = ("subject", "severity", "title", "state", "by", "reason", "site", "region")
ACTION_FIELDS = (
    "rule",
    "subject",
    "step",
    "command",
    "actuators",
    "cameras",
    "channels",
    "classes",
    "message",
    "text",
)
STEP_KINDS = ("sensor", "tick", "ack", "archive", "camera")


@dataclass(slots=True)
class Step:
    """One thing that happens at `at` (ns after the start)."""

    line: int
    at: int
    kind: str  # reading | tick | ack | archive | detection | camera_event
    sensor: str = ""
    value: float | bool = 0.0
    unit: str | None = None
    ts: int | None = None  # a reading's own time, when it arrives late
    rule: str = ""
    subject: str = ""
    by: str = ""
    camera: str = ""
    detections: list[dict[str, Any]] = field(default_factory=list)
    event: dict[str, Any] = field(default_factory=dict)  # a camera event (docs/streams.md)


@dataclass(slots=True)
class Expect:
    """One expected event: its time, its kind, and the fields to compare."""

    line: int
    at: int
    event: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Case:
    """One test."""

    name: str
    line: int
    start: int
    rules: tuple[str, ...] | None
    ignore: tuple[str, ...]
    subjects: tuple[str, ...] | None  # compare only the events about these subjects
    steps: list[Step]
    expect: list[Expect]
    until: int | None


@dataclass(slots=True)
class TestFile:
    """A rule test file."""

    path: Path
    rules: list[Path] | None
    inventory: list[Path] | None
    cases: list[Case]


def _line(ctx: Ctx, path: KeyPath) -> int:
    pos = ctx.where.nearest(ctx.base + path)
    return pos.line if pos else 0


def _time(ctx: Ctx, path: KeyPath, value: object) -> int | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        ctx.error(
            path, f"expected a time after the start such as 30s or 1h5m, got {describe(value)}"
        )
        return None
    try:
        return round(parse_duration(value) * NS)
    except DurationError as exc:
        ctx.error(path, str(exc))
        return None


def _start(ctx: Ctx, path: KeyPath, value: object) -> int | None:
    stamp: datetime | None = None
    if isinstance(value, datetime):
        # YAML reads an unquoted time itself; one without a zone is UTC by the YAML spec.
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            stamp = datetime.fromisoformat(str(value))
        except ValueError:
            stamp = None
    if stamp is None or stamp.tzinfo is None:
        ctx.error(path, f"expected an RFC 3339 time such as {DEFAULT_START}, got {describe(value)}")
        return None
    return round(stamp.timestamp()) * NS


def paths(ctx: Ctx, key: str, value: object, base: Path) -> list[Path] | None:
    """`rules:` or `inventory:` of a test file, relative to its folder."""
    found = names(ctx, (key,), value, "path")
    return None if found is None else [base / p for p in found]


def _reading(ctx: Ctx, path: KeyPath, data: dict[str, Any], at: int, line: int) -> list[Step]:
    sensor = text(ctx, (*path, "sensor"), data["sensor"], "a sensor id") or ""
    inv = ctx.inventory
    if inv is not None and sensor and sensor not in inv.sensors:
        hint = did_you_mean(sensor, inv.sensors)
        ctx.error((*path, "sensor"), f"unknown sensor {sensor!r}{hint}")
    if "value" not in data:
        ctx.error(path, "value: is missing")
        return []
    raw = data["value"]
    if isinstance(raw, bool):
        first = quantity(ctx, (*path, "value"), int(raw))
    else:
        first = quantity(ctx, (*path, "value"), raw)
    last = quantity(ctx, (*path, "to"), data["to"]) if "to" in data else first
    ts = _time(ctx, (*path, "ts"), data["ts"]) if "ts" in data else None
    if first is None or last is None:
        return []
    if "every" not in data:
        if "until" in data or "to" in data:
            ctx.error(path, "until: and to: make a series; they need every:")
        return [Step(line, at, "reading", sensor, first.number, first.unit, ts)]
    every = _time(ctx, (*path, "every"), data["every"])
    until = _time(ctx, (*path, "until"), data.get("until")) if "until" in data else None
    if until is None or not every:
        ctx.error(path, "a series needs every: (more than zero) and until:")
        return []
    count = (until - at) // every + 1
    steps = []
    for i in range(max(count, 0)):
        share = i / (count - 1) if count > 1 else 0.0
        value = first.number + (last.number - first.number) * share
        steps.append(Step(line, at + i * every, "reading", sensor, value, first.unit))
    return steps


_STEP_KEYS = (
    *("at", "sensor", "value", "ts", "every", "until", "to", "tick", "ack"),
    *("archive", "subject", "by", "camera", "detections", "event"),
)
_EVENT_KEYS = ("kind", "class", "score", "zone", "line", "direction", "track_id", "count", "plate")


def _camera_event(
    ctx: Ctx, path: KeyPath, data: dict[str, Any], at: int, *, line: int, camera: str
) -> list[Step]:
    """`{at: 2m, camera: cam-1, event: {kind: entered, class: person, zone: underpass}}`."""
    if "detections" in data:
        ctx.error(path, "a camera step gives detections or an event, not both")
        return []
    event = mapping(ctx, (*path, "event"), data["event"], _EVENT_KEYS, "{kind: entered, zone: z}")
    if event is None:
        return []
    if "kind" not in event:
        ctx.error((*path, "event"), "kind: is missing, e.g. {kind: entered, class: person}")
        return []
    return [Step(line, at, "camera_event", camera=camera, event=dict(event))]


def _step(ctx: Ctx, path: KeyPath, value: object) -> list[Step]:
    data = mapping(ctx, path, value, _STEP_KEYS, "{at: 0s, sensor: wl-1, value: 16 cm}")
    if data is None:
        return []
    line = _line(ctx, path)
    at = _time(ctx, (*path, "at"), data["at"]) if "at" in data else None
    kinds = [k for k in STEP_KINDS if k in data]
    if at is None or len(kinds) != 1:
        if "at" not in data:
            ctx.error(path, "at: is missing: say when, e.g. at: 30s")
        elif len(kinds) != 1:
            ctx.error(path, f"a step needs exactly one of {', '.join(STEP_KINDS)}")
        return []
    kind = kinds[0]
    if kind == "sensor":
        return _reading(ctx, path, data, at, line)
    if kind == "tick":
        return [Step(line, at, "tick")]
    if kind == "camera":
        camera = text(ctx, (*path, "camera"), data["camera"], "a camera id") or ""
        if "event" in data:
            return _camera_event(ctx, path, data, at, line=line, camera=camera)
        items = data.get("detections", [])
        dets: list[dict[str, Any]] = []
        for i, item in enumerate(items if isinstance(items, list) else [items]):
            if isinstance(item, str):
                dets.append({"class": item, "score": 1.0})
            elif isinstance(item, dict) and "class" in item:
                dets.append({"class": str(item["class"]), "score": float(item.get("score", 1.0))})
            else:
                ctx.error((*path, "detections", i), "expected a class name or {class, score}")
        return [Step(line, at, "detection", camera=camera, detections=dets)]
    rule = text(ctx, (*path, kind), data[kind], "a rule id") or ""
    subject = text(ctx, path, data.get("subject"), "subject: the incident's subject") or ""
    by = str(data.get("by", "test"))
    return [Step(line, at, kind, rule=rule, subject=subject, by=by)]


_EXPECT_KEYS = ("at", *EVENT_KEYS, *sorted({*INCIDENT_FIELDS, *ACTION_FIELDS}))


def _expect(ctx: Ctx, path: KeyPath, value: object) -> Expect | None:
    data = mapping(ctx, path, value, _EXPECT_KEYS, "{at: 30s, opened: underpass-flooding}")
    if data is None:
        return None
    line = _line(ctx, path)
    events = [k for k in EVENT_KEYS if k in data]
    if len(events) != 1 or "at" not in data:
        ctx.error(path, f"an expectation needs at: and one of {', '.join(EVENT_KEYS)}")
        return None
    at = _time(ctx, (*path, "at"), data["at"])
    event = events[0]
    allowed = ACTION_FIELDS if event == "action" else INCIDENT_FIELDS
    fields = {k: v for k, v in data.items() if k not in ("at", event)}
    for key in fields:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"; {event} events have {', '.join(allowed)}"
            ctx.error((*path, key), f"{key}: does not apply to {event} events{hint}", key=True)
            return None
    fields["rule" if event != "action" else "kind"] = data[event]
    return None if at is None else Expect(line, at, event, fields)


def parse_case(ctx: Ctx, path: KeyPath, value: object) -> Case | None:
    """One item of `tests:`."""
    keys = ("name", "start", "rules", "ignore", "subjects", "steps", "expect", "until")
    data = mapping(ctx, path, value, keys, "{name: ..., steps: [...], expect: [...]}")
    if data is None:
        return None
    line = _line(ctx, path)
    name = text(ctx, (*path, "name"), data.get("name"), "name: what the test shows") or ""
    start = _start(ctx, (*path, "start"), data.get("start", DEFAULT_START))
    rules = names(ctx, (*path, "rules"), data["rules"], "rule id") if "rules" in data else None
    ignore = names(ctx, (*path, "ignore"), data["ignore"], "event") if "ignore" in data else ()
    for i, item in enumerate(ignore or ()):
        if item not in EVENT_KEYS:
            ctx.error(
                (*path, "ignore", i), f"unknown event {item!r}{did_you_mean(item, EVENT_KEYS)}"
            )
    subjects = None
    if "subjects" in data:
        subjects = names(ctx, (*path, "subjects"), data["subjects"], "subject")
    until = _time(ctx, (*path, "until"), data["until"]) if "until" in data else None
    steps: list[Step] = []
    raw_steps = data.get("steps", [])
    for i, item in enumerate(raw_steps if isinstance(raw_steps, list) else []):
        steps += _step(ctx, (*path, "steps", i), item)
    expect: list[Expect] = []
    raw_expect = data.get("expect", [])
    if not isinstance(raw_expect, list):
        ctx.error((*path, "expect"), "expected a list of events; [] when none")
        raw_expect = []
    for i, item in enumerate(raw_expect):
        found = _expect(ctx, (*path, "expect", i), item)
        if found is not None:
            expect.append(found)
    if start is None:
        return None
    # Steps happen in time order; a reading that arrives late says so with ts:.
    steps.sort(key=lambda s: s.at)
    return Case(name, line, start, rules, tuple(ignore or ()), subjects, steps, expect, until)
