"""Replay: the rules run over stored readings, reporting what they would have done.

The readings come from InfluxDB's `reading` measurement in time order, one time window at a
time so that memory stays bounded over a long range, and go through the same pure Engine
as live. Nothing is sent anywhere: the engine's events are collected into a report.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from hub.ingest.validate import Reading
from hub.inventory import Inventory
from hub.rules.engine import Engine
from hub.rules.events import (
    ActionRequested,
    Event,
    IncidentAcknowledged,
    IncidentArchived,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
    event_to_dict,
)
from hub.rules.model import RuleSet
from hub.rules.testing.runner import relative

if TYPE_CHECKING:
    from hub.storage.influx import InfluxClient

NS = 1_000_000_000
HOUR_NS = 3600 * NS
# Each query's window is resized to return about this many rows: big enough that a sparse
# history is read in few requests, small enough that a dense one stays a few MB in memory.
_TARGET_ROWS = 50_000
_MIN_WINDOW_NS = NS
_MAX_WINDOW_NS = 24 * HOUR_NS
# The text report names at most this many unknown sensors; the JSON names them all.
_NAMED_UNKNOWN = 10


def rfc3339(ns: int) -> str:
    """A time in ns as RFC 3339 UTC, with a fraction only when it is not whole seconds."""
    seconds, frac = divmod(ns, NS)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclasses.dataclass(slots=True)
class IncidentHistory:
    """What became of one incident during the replay."""

    id: str
    rule: str
    subject: str
    title: str
    severity: str
    region: str
    site: str | None
    opened_at: int
    acknowledged_at: int | None = None
    acked_by: str | None = None
    cleared_at: int | None = None
    archived_at: int | None = None
    # Its events after it opened, in the engine's order.
    events: list[Event] = dataclasses.field(default_factory=list)

    @property
    def actions(self) -> list[ActionRequested]:
        """The actions it asked for, in order."""
        return [e for e in self.events if isinstance(e, ActionRequested)]

    @property
    def updates(self) -> list[IncidentUpdated]:
        """Its updates (escalation steps, re-triggers), in order."""
        return [e for e in self.events if isinstance(e, IncidentUpdated)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, times as RFC 3339."""

        def when(ns: int | None) -> str | None:
            return None if ns is None else rfc3339(ns)

        return {
            "id": self.id,
            "subject": self.subject,
            "title": self.title,
            "severity": self.severity,
            "region": self.region,
            "site": self.site,
            "opened_at": rfc3339(self.opened_at),
            "acknowledged_at": when(self.acknowledged_at),
            "acked_by": self.acked_by,
            "cleared_at": when(self.cleared_at),
            "archived_at": when(self.archived_at),
            "updates": [
                {"at": rfc3339(u.at), "reason": u.reason, "severity": u.incident.severity}
                for u in self.updates
            ],
            "actions": [
                {
                    "at": rfc3339(a.at),
                    "action_id": a.action_id,
                    "kind": a.kind,
                    "step": a.step,
                    "params": dict(a.params),
                }
                for a in self.actions
            ],
        }


@dataclasses.dataclass(slots=True)
class ReplayReport:
    """The outcome of a replay: what was read, and every event the engine gave, in order."""

    start_ns: int
    end_ns: int
    rules: list[str]
    readings: int = 0
    unknown_sensors: Counter[str] = dataclasses.field(default_factory=Counter)
    no_value: int = 0
    late: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Readings not fed to the engine: unknown sensors, and points without a value."""
        return self.unknown_sensors.total() + self.no_value

    @property
    def actions(self) -> int:
        """How many actions the rules would have asked for."""
        return sum(isinstance(e, ActionRequested) for e in self.events)

    def incidents(self) -> dict[str, list[IncidentHistory]]:
        """Every rule's incidents in the order they opened (rules without any included)."""
        found: dict[str, IncidentHistory] = {}
        for event in self.events:
            if isinstance(event, ActionRequested):
                if event.incident_id in found:
                    found[event.incident_id].events.append(event)
                continue
            inc = event.incident
            if isinstance(event, IncidentOpened):
                found[inc.id] = IncidentHistory(
                    inc.id, inc.rule, inc.subject, inc.title, inc.severity, inc.region,
                    inc.site, inc.opened_at,
                )  # fmt: skip
                continue
            history = found.get(inc.id)
            if history is None:
                continue
            history.severity = inc.severity
            history.events.append(event)
            if isinstance(event, IncidentAcknowledged):
                history.acknowledged_at, history.acked_by = event.at, inc.acked_by
            elif isinstance(event, IncidentCleared):
                history.cleared_at = event.at
            elif isinstance(event, IncidentArchived):
                history.archived_at = event.at
        out: dict[str, list[IncidentHistory]] = {rule: [] for rule in self.rules}
        for history in found.values():
            out.setdefault(history.rule, []).append(history)
        return out


async def read_history(
    client: InfluxClient, start_ns: int, end_ns: int, *, window_ns: int = HOUR_NS
) -> AsyncGenerator[list[tuple[int, str, Any]], None]:
    """The readings stored in [start, end) as (ts, sensor, value), one window at a time."""
    t = start_ns
    while t < end_ns:
        upto = min(t + window_ns, end_ns)
        where = f"time >= {t:d} AND time < {upto:d}"
        # Only the two integers above go into the query text.
        query = f'SELECT "value", "sensor" FROM "reading" WHERE {where}'  # noqa: S608
        series = await client.query_series(query)
        rows: list[tuple[int, str, Any]] = []
        for s in series:
            at_time, at_value, at_sensor = (s.columns.index(c) for c in ("time", "value", "sensor"))
            rows.extend((v[at_time], v[at_sensor], v[at_value]) for v in s.values)
        # InfluxDB orders by time but leaves the order of equal times to its storage; the
        # sensor id breaks ties so that a replay is the same on any server.
        rows.sort(key=lambda row: (row[0], row[1] or ""))
        yield rows
        t = upto
        if len(rows) > 2 * _TARGET_ROWS:
            window_ns = max(window_ns // 2, _MIN_WINDOW_NS)
        elif len(rows) < _TARGET_ROWS // 4:
            window_ns = min(window_ns * 2, _MAX_WINDOW_NS)


async def replay(
    client: InfluxClient,
    inventory: Inventory,
    rules: RuleSet,
    start_ns: int,
    end_ns: int,
    *,
    window_ns: int = HOUR_NS,
) -> ReplayReport:
    """Run `rules` over the readings stored in [start, end) and report the engine's events."""
    report = ReplayReport(start_ns, end_ns, rules.ids)
    engine = Engine(rules, inventory)
    # The rules begin watching at --from, so that a sensor silent through the whole range
    # is `missing` from there, as it would be for a hub started then.
    report.events += engine.tick(start_ns)
    sensors = inventory.sensors
    history = read_history(client, start_ns, end_ns, window_ns=window_ns)
    async with contextlib.aclosing(history):
        async for rows in history:
            report.readings += len(rows)
            batch: list[Reading] = []
            for ts, sensor_id, value in rows:
                sensor = sensors.get(sensor_id)
                if sensor is None:
                    report.unknown_sensors[str(sensor_id)] += 1
                elif value is None:
                    report.no_value += 1
                else:
                    batch.append(Reading(sensor, float(value), int(ts)))
            # Without ticks between readings: timers are stamped with their own deadlines, so
            # the events are those of a live engine ticked every second on the same readings.
            report.events += engine.on_readings(batch)
    report.events += engine.tick(end_ns)
    report.late = engine.late_readings
    return report


# -- formatting ---------------------------------------------------------------------------------


def span(ns: int) -> str:
    """How long something lasted, for people: to the second (12m34s), or in ms under one.

    Readings' times are rarely whole seconds apart; a test's `relative` would print 754 s and
    a few microseconds as 754000.123ms."""
    if ns < NS:
        return f"{ns / 1e6:.0f}ms"
    return relative(round(ns / NS) * NS)


def describe_action(action: ActionRequested) -> str:
    """An action in words: `actuate close -> barrier-1`, `notify situation-room: "..."`."""
    params = action.params
    if action.kind == "actuate":
        return f"actuate {params.get('command')} -> {', '.join(params.get('actuators', []))}"
    if action.kind == "detect":
        classes = ", ".join(params.get("classes", [])) or "anything"
        return f"detect {classes} on {', '.join(params.get('cameras', []))}"
    if action.kind == "notify":
        channels = ", ".join(params.get("channels", [])) or "nobody"
        return f"notify {channels}: {params.get('message', '')!r}"
    return f"{action.kind} {dict(params)}"


def _incident_lines(h: IncidentHistory) -> list[str]:
    if h.cleared_at is None:
        end = "still open at the end"
    else:
        end = f"cleared {rfc3339(h.cleared_at)} (after {span(h.cleared_at - h.opened_at)})"
    lines = [f"  {h.subject}  opened {rfc3339(h.opened_at)}  {end}  [{h.id}]"]
    for event in h.events:
        if isinstance(event, ActionRequested):
            text = f"{event.step}: {describe_action(event)}"
        elif isinstance(event, IncidentUpdated):
            text = f"updated: {event.reason}, severity {event.incident.severity}"
        elif isinstance(event, IncidentAcknowledged):
            text = f"acknowledged by {event.incident.acked_by}"
        else:
            continue  # clearing is on the incident's own line; archiving is in the JSON
        lines.append(f"    {rfc3339(event.at)}  {text}")
    return lines


def summary(report: ReplayReport) -> str:
    """The report's last line: readings read and skipped, incidents, actions."""
    incidents = [h for found in report.incidents().values() for h in found]
    cleared = sum(h.cleared_at is not None for h in incidents)
    skipped = f"{report.skipped} skipped"
    if report.unknown_sensors:
        names = sorted(report.unknown_sensors)
        shown = ", ".join(names[:_NAMED_UNKNOWN]) + (", ..." if len(names) > _NAMED_UNKNOWN else "")
        noun = "sensor" if len(names) == 1 else "sensors"
        skipped += f" ({len(names)} {noun} not in the inventory: {shown})"
    return (
        f"readings: {report.readings} read, {skipped}, {report.late} late; "
        f"incidents: {len(incidents)} opened, {cleared} cleared, "
        f"{len(incidents) - cleared} open at the end; actions: {report.actions}"
    )


def format_text(report: ReplayReport) -> str:
    """The report for people: per rule, each incident with its actions; a summary last."""
    lines = [f"replay {rfc3339(report.start_ns)} .. {rfc3339(report.end_ns)}"]
    quiet: list[str] = []
    for rule, found in report.incidents().items():
        if not found:
            quiet.append(rule)
            continue
        lines.append(f"{rule}: {len(found)} incident{'s' if len(found) != 1 else ''}")
        for history in found:
            lines += _incident_lines(history)
    if quiet:
        lines.append(f"no incidents: {', '.join(quiet)}")
    if not report.readings:
        lines.append("no readings are stored in this range: check --from, --to and influx.database")
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def to_json(report: ReplayReport) -> dict[str, Any]:
    """The report as one JSON-ready document; `events` are the engine's, times in ns."""
    incidents = report.incidents()
    opened = sum(len(found) for found in incidents.values())
    cleared = sum(h.cleared_at is not None for found in incidents.values() for h in found)
    return {
        "from": rfc3339(report.start_ns),
        "to": rfc3339(report.end_ns),
        "summary": {
            "readings": report.readings,
            "skipped": report.skipped,
            "unknown_sensors": dict(sorted(report.unknown_sensors.items())),
            "without_value": report.no_value,
            "late": report.late,
            "incidents_opened": opened,
            "incidents_cleared": cleared,
            "open_at_end": opened - cleared,
            "actions": report.actions,
        },
        "rules": [
            {"id": rule, "incidents": [h.to_dict() for h in found]}
            for rule, found in incidents.items()
        ],
        "events": [event_to_dict(e) for e in report.events],
    }


def format_json(report: ReplayReport) -> str:
    """to_json as indented text."""
    return orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2).decode() + "\n"
