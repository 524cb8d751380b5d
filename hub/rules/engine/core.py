"""The rule engine: readings, detections, the clock and operators in; events out.

Pure: no I/O, no wall clock, no asyncio. Every time comes from the caller (a reading's own
timestamp, a tick, an acknowledgement's time), so live runs, replays and rule tests run the
same code and give the same events for the same input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from hub.ingest.validate import Reading
from hub.inventory import Inventory
from hub.rules.engine.effects import camera_event, detection
from hub.rules.engine.leaves import CameraEventFacts
from hub.rules.engine.state import build, dump
from hub.rules.engine.world import NO_CLOCK, SYSTEM_RULES
from hub.rules.events import (
    Event,
    Incident,
    IncidentNotFoundError,
    IncidentStateError,
    IncidentUpdated,
)
from hub.rules.model import SEVERITIES, RuleSet


class Engine:
    """Evaluates a RuleSet over an Inventory.

    Readings of a sensor older than (or as old as) its newest reading are ignored, and
    counted in `late_readings`: a sensor's history is not rewritten once events came of it,
    and QoS 1 redeliveries are dropped for free.
    """

    def __init__(
        self, rules: RuleSet, inventory: Inventory, state: Mapping[str, Any] | None = None
    ) -> None:
        self._rules = rules
        self._inventory = inventory
        self._w, self._pending = build(rules, inventory, state)
        self._changes = 0
        self._saved = 0

    # -- input --------------------------------------------------------------------------------

    def on_readings(self, readings: Iterable[Reading]) -> list[Event]:
        """Feed readings (in canonical units); return the events they cause, in order."""
        w = self._w
        self._begin()
        seen, values, by_sensor, heap = w.seen, w.values, w.by_sensor, w.heap
        missing = w.missing_held
        late = 0
        for sensor, value, ts in readings:
            sid = sensor.id
            prev = seen.get(sid)
            if prev is not None and ts <= prev:
                late += 1
                continue
            if ts > w.clock:
                w.advance(ts)  # timers due by ts fire before the reading counts
            seen[sid] = ts
            values[sid] = value
            if missing and sid in missing:
                w.seen_again(sid, ts)
            bindings = by_sensor.get(sid)
            if bindings is not None:
                for b in bindings:
                    b.feed(w, value, ts, prev)
            if heap and heap[0][0] <= w.clock:
                w.run_due()  # a reading older than the clock may set a timer already due
        w.late += late
        return self._end()

    def tick(self, now_ns: int) -> list[Event]:
        """Move the clock to `now_ns`: `for:`, `missing`, escalations and archiving fall due."""
        self._begin()
        self._w.advance(now_ns)
        return self._end()

    def on_detection(
        self,
        camera_id: str,
        site: str | None,
        ts_ns: int,
        detections: Iterable[Mapping[str, Any]],
        *,
        snapshot: str | None = None,
        job_id: str | None = None,
    ) -> list[Event]:
        """A detection result: `detections` as in the contract, `{"class", "score", ...}`."""
        labels = [(str(d.get("class")), float(d.get("score", 1.0))) for d in detections]
        extra: dict[str, Any] = {"site": site}
        if snapshot is not None:
            extra["snapshot"] = snapshot
        if job_id is not None:
            extra["job_id"] = job_id
        self._begin()
        w = self._w
        w.advance(ts_ns)
        detection(w, camera_id, ts_ns, labels, extra)
        w.run_due()
        return self._end()

    def on_camera_event(self, camera_id: str, ts_ns: int, event: Mapping[str, Any]) -> list[Event]:
        """A camera event (docs/streams.md): `camera_event` conditions, and evidence for the
        incidents whose detect actions watch the camera."""
        score, count = event.get("score"), event.get("count", 1)
        facts = CameraEventFacts(
            kind=str(event.get("kind")),
            cls=str(event["class"]) if event.get("class") is not None else None,
            score=float(score) if isinstance(score, int | float) else None,
            zone=str(event["zone"]) if event.get("zone") is not None else None,
            line=str(event["line"]) if event.get("line") is not None else None,
            count=int(count) if isinstance(count, int) else 1,
        )
        keep = ("event_id", "class", "score", "track_id", "zone", "line", "direction", "count",
                "plate")  # fmt: skip
        item = {k: event[k] for k in (*keep, "snapshot") if event.get(k) is not None}
        item["event"] = facts.kind
        self._begin()
        w = self._w
        w.advance(ts_ns)
        camera_event(w, camera_id, ts_ns, facts, item)
        w.run_due()
        return self._end()

    # -- operators ----------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str, now_ns: int) -> list[Event]:
        """An operator acknowledged an incident; acknowledging twice does nothing.

        Raises IncidentNotFoundError for an unknown (or archived) id.
        """
        self._find(incident_id)
        self._begin()
        self._w.advance(now_ns)
        rec = self._w.incidents.get(incident_id)
        if rec is not None:  # the clock may have archived it just now
            self._w.acknowledge(rec, by, max(now_ns, self._w.clock))
        return self._end()

    def archive(self, incident_id: str, now_ns: int) -> list[Event]:
        """Archive a cleared incident.

        Raises IncidentNotFoundError, or IncidentStateError if it has not cleared.
        """
        self._find(incident_id)
        self._begin()
        w = self._w
        w.advance(now_ns)
        rec = w.incidents.get(incident_id)
        if rec is not None:
            if rec.state != "cleared":
                self._pending = self._end()  # what the clock did is not lost
                raise IncidentStateError(
                    f"incident {incident_id} is {rec.state}; only a cleared incident "
                    "can be archived"
                )
            w.archive(rec, max(now_ns, w.clock))
        return self._end()

    def update_action(
        self, action_id: str, status: str, now_ns: int, detail: str | None = None
    ) -> list[Event]:
        """Record an action's status (e.g. an actuator's ack); ids are "<incident>.<n>"."""
        incident_id = action_id.rpartition(".")[0]
        rec = self._find(incident_id)
        index = next((i for i, a in enumerate(rec.actions) if a.id == action_id), None)
        if index is None:
            raise IncidentNotFoundError(f"incident {incident_id} has no action {action_id}")
        self._begin()
        w = self._w
        w.advance(now_ns)
        if incident_id in w.incidents:
            action = dataclasses.replace(rec.actions[index], status=status, detail=detail)
            rec.set_action(index, action)
            w.out.append(IncidentUpdated(max(now_ns, w.clock), rec.view(), "action"))
        return self._end()

    # -- the hub's own incidents --------------------------------------------------------------

    def raise_system(
        self,
        rule: str,
        subject: str,
        *,
        region: str,
        site: str | None,
        title: str,
        severity: str,
        evidence: Mapping[str, Any],
        now_ns: int,
    ) -> list[Event]:
        """Open the hub's own incident for (rule, subject), or add to the one open.

        `rule` must be one of SYSTEM_RULES. A repeat adds `evidence` and raises the severity
        (never lowers it): one incident stands for a run of failures, as for a flapping sensor.
        """
        if rule not in SYSTEM_RULES:
            raise ValueError(f"{rule!r} is not one of the hub's own incident kinds")
        self._begin()
        w = self._w
        w.advance(now_ns)
        t = max(now_ns, w.clock)
        rec = self._open_system(rule, subject)
        if rec is None:
            w.open_system(
                rule,
                subject,
                place=(region, site),
                head=(title, severity),
                evidence=dict(evidence),
                t=t,
            )
        else:
            rec.add_evidence(dict(evidence))
            if SEVERITIES.index(severity) > SEVERITIES.index(rec.severity):
                rec.severity = severity
            rec.title = title
            w.out.append(IncidentUpdated(t, rec.view(), "evidence"))
        return self._end()

    def clear_system(self, rule: str, subject: str, note: str, now_ns: int) -> list[Event]:
        """Clear the hub's own open incident for (rule, subject); nothing if none is open."""
        rec = self._open_system(rule, subject)
        if rec is None:
            return []
        self._begin()
        w = self._w
        w.advance(now_ns)
        if rec.is_open:  # the clock may have moved it on meanwhile
            rec.add_evidence({"kind": "note", "text": note})
            w.clear_system(rec, max(now_ns, w.clock))
        return self._end()

    def system_incident(self, rule: str, subject: str) -> Incident | None:
        """The hub's own open incident for (rule, subject), if any."""
        rec = self._open_system(rule, subject)
        return rec.view() if rec is not None else None

    def _open_system(self, rule: str, subject: str) -> Any:
        for rec in self._w.by_rule.get(rule, {}).values():
            if rec.subject == subject and rec.is_open:
                return rec
        return None

    # -- rules and state ----------------------------------------------------------------------

    def replace_rules(self, rules: RuleSet) -> list[Event]:
        """Hot reload. Rules whose conditions are unchanged keep all their state; a changed
        rule starts afresh but keeps its open incidents; a removed rule's are cleared."""
        pending = self._pending
        self._w, events = build(rules, self._inventory, dump(self._w))
        self._rules = rules
        self._pending = []
        self._changes += 1
        return pending + events

    def snapshot(self, *, encoded: bool = False) -> dict[str, Any]:
        """Everything that must survive a restart, as JSON-ready data; marks the state clean.

        `encoded`: incidents come as orjson fragments, cheaper when the result goes straight
        to orjson.dumps (the hub saves its state several times a second).
        """
        self._saved = self._changes
        return dump(self._w, encoded=encoded)

    @property
    def dirty(self) -> bool:
        """Whether the state changed since the last snapshot()."""
        return self._changes != self._saved

    @property
    def changes(self) -> int:
        """A counter of calls that changed the state."""
        return self._changes

    @property
    def rules(self) -> RuleSet:
        """The rules being evaluated."""
        return self._rules

    @property
    def clock(self) -> int | None:
        """The latest time seen (readings or ticks), or None before any."""
        return None if self._w.clock == NO_CLOCK else self._w.clock

    @property
    def late_readings(self) -> int:
        """Readings ignored because their sensor had already sent a newer one."""
        return self._w.late

    def incidents(self, *, site: str | None = None, rule: str | None = None) -> list[Incident]:
        """Incidents not archived (open and cleared), oldest first; at `site`, of `rule`.

        The filters apply before the views are built, which is what costs with many incidents.
        """
        found = [
            rec
            for rec in self._w.incidents.values()
            if (site is None or rec.site == site) and (rule is None or rec.rule == rule)
        ]
        found.sort(key=lambda r: (r.opened_at, r.id))
        return [rec.view() for rec in found]

    def open_count(self) -> int:
        """How many incidents are open (active or acknowledged)."""
        return sum(1 for rec in self._w.incidents.values() if rec.is_open)

    def open_for(self, subject: str) -> list[str]:
        """The ids of the open incidents of any rule with this subject."""
        found = []
        for rt in self._w.rules.values():
            subj = rt.subjects.get(subject)
            if subj is not None and subj.incident is not None and subj.incident.is_open:
                found.append(subj.incident.id)
        return found

    def open_by_subject(self) -> dict[str, list[str]]:
        """The ids of open incidents by their subject, oldest first, without building views."""
        found: dict[str, list[str]] = {}
        for rec in sorted(self._w.incidents.values(), key=lambda r: (r.opened_at, r.id)):
            if rec.is_open:
                found.setdefault(rec.subject, []).append(rec.id)
        return found

    def incident(self, incident_id: str) -> Incident | None:
        """One incident not archived, by id."""
        rec = self._w.incidents.get(incident_id)
        return rec.view() if rec else None

    def open_incident(self, rule_id: str, subject: str) -> Incident | None:
        """The open (active or acknowledged) incident of a rule and subject, if any."""
        rt = self._w.rules.get(rule_id)
        subj = rt.subjects.get(subject) if rt else None
        return subj.incident.view() if subj and subj.incident else None

    # -- internals ----------------------------------------------------------------------------

    def _find(self, incident_id: str) -> Any:
        rec = self._w.incidents.get(incident_id)
        if rec is None:
            raise IncidentNotFoundError(f"no incident {incident_id} (it may have been archived)")
        return rec

    def _begin(self) -> None:
        self._w.out, self._pending = self._pending, []

    def _end(self) -> list[Event]:
        out, self._w.out = self._w.out, []
        self._changes += 1
        return out
