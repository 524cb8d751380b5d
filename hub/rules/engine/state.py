"""Build the engine's state from rules, and keep it across restarts and hot reloads.

A snapshot holds what cannot be derived: the clock, each sensor's last reading, incidents,
and per rule and subject the conditions' progress (`for:` starts, rate windows, missing
flags, detection times). Timers are not stored; they are rebuilt from that state, which
is what makes a restored engine give the same events as one that never stopped.

Format (JSON):

    {"format": 2, "clock": ns | null, "late": n,
     "seen": {sensor: ts}, "values": {sensor: value},
     "incidents": [incident as Incident.to_dict() + esc_base, esc_done]
                  ({id: incident} when encoded, as the store keeps them),
     "rules": {rule: {"fingerprint": hex, "since": ns | null,
                      "subjects": {subject: {"triggered": bool, "settle": ns | null,
                                             "bindings": {"<bit>:<sensor>": [...]}}}}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hub.inventory import Inventory
from hub.rules.engine.incidents import IncidentRecord
from hub.rules.engine.leaves import (
    UNLIMITED,
    DetectionBinding,
    HeldBinding,
    IncidentBinding,
    MissingBinding,
    RateBinding,
    SensorBinding,
)
from hub.rules.engine.runtime import RuleRuntime, compile_rule
from hub.rules.engine.subject import SubjectState
from hub.rules.engine.world import NO_CLOCK, ORPHAN, SYSTEM_RULES, World
from hub.rules.events import Event
from hub.rules.model import RuleSet

FORMAT = 2


class SnapshotError(ValueError):
    """A snapshot this version cannot read."""


def _key(b: Any) -> str:
    return f"{b.bit}:{b.sensor}" if isinstance(b, SensorBinding) else f"{b.bit}:"


def _subject(subj: SubjectState) -> dict[str, Any] | None:
    """A subject's state, or None when it is the initial state (not saved)."""
    bindings: dict[str, Any] = {}
    for b in subj.bindings:
        data = None if isinstance(b, IncidentBinding) else b.dump()
        if data is not None:
            bindings[_key(b)] = data
    if bindings or subj.triggered or subj.settle_until is not None:
        return {"triggered": subj.triggered, "settle": subj.settle_until, "bindings": bindings}
    return None


def _encoded_subjects(rt: RuleRuntime) -> dict[str, orjson.Fragment]:
    """The rule's subjects as orjson fragments: those changed since the last time encoded
    again, the others as they were (thousands of subjects, a few changed between saves)."""
    saved = rt.saved
    for subj in rt.touched:
        subj.dirty = False
        data = _subject(subj)
        if data is None:
            saved.pop(subj.id, None)
        else:
            saved[subj.id] = orjson.Fragment(orjson.dumps(data))
    rt.touched.clear()
    return saved


def dump(w: World, *, encoded: bool = False) -> dict[str, Any]:
    """The world's state as JSON-ready data; with `encoded`, incidents and subjects are orjson
    fragments (kept, already encoded, until they change) and only orjson can write the result."""
    rules: dict[str, Any] = {}
    for rid, rt in w.rules.items():
        subjects: Mapping[str, Any]
        if encoded:
            subjects = _encoded_subjects(rt)
        else:
            plain = ((sid, _subject(subj)) for sid, subj in rt.subjects.items())
            subjects = {sid: data for sid, data in plain if data is not None}
        rules[rid] = {"fingerprint": rt.fingerprint, "since": rt.since, "subjects": subjects}
    return {
        "format": FORMAT,
        "clock": None if w.clock == NO_CLOCK else w.clock,
        "late": w.late,
        # The newest reading's time and value per sensor: the engine's own dicts when they go
        # straight to orjson (no Python work for thousands of sensors), copies otherwise.
        "seen": w.seen if encoded else dict(w.seen),
        "values": w.values if encoded else dict(w.values),
        # Encoded, by id: the store keeps each incident under a key of its own.
        "incidents": (
            {rec.id: rec.encoded() for rec in w.incidents.values()}
            if encoded
            else [rec.to_json() for rec in w.incidents.values()]
        ),
        "rules": rules,
    }


def build(
    rules: RuleSet, inventory: Inventory, state: Mapping[str, Any] | None
) -> tuple[World, list[Event]]:
    """A world for `rules`, restored from `state` where the rules allow; and the events that
    restoring made (open incidents of rules that are gone are cleared)."""
    w = World(inventory)
    pers = {rule.id: rule.per for rule in rules.rules}
    for pos, rule in enumerate(rules.rules):
        w.rules[rule.id] = compile_rule(rule, pos, inventory, pers)
    _index(w)
    orphans: list[IncidentRecord] = []
    fresh = set(w.rules)
    if state is not None:
        orphans, fresh = _restore(w, state)
    for rt in w.rules.values():
        if rt.rule.id not in fresh:
            for ib in rt.incident_bindings:
                ib.raw = ib.held = w.incident_truth(ib)
        for subj in rt.subjects.values():
            subj.recount()
    _arm(w)
    for rec in orphans:
        w.clear_orphan(rec, w.clock if w.clock != NO_CLOCK else rec.opened_at)
    if w.clock != NO_CLOCK:
        # A new or changed rule sees the incidents that are already there as it would see
        # them appear: its incident conditions are entered now.
        for rid in sorted(fresh, key=lambda r: w.rules[r].pos):
            for ib in w.rules[rid].incident_bindings:
                ib.set(w.incident_truth(ib), w.clock)
    events, w.out = w.out, []
    return w, events


def _index(w: World) -> None:
    for rt in w.rules.values():
        for subj in rt.subjects.values():
            subj.world = w
            for b in subj.bindings:
                if isinstance(b, HeldBinding):
                    w.by_sensor.setdefault(b.sensor, []).append(b)
        for cameras, det in rt.cameras:
            for camera in cameras:
                w.by_camera.setdefault(camera, []).append(det)
        for ib in rt.incident_bindings:
            w.deps.setdefault(ib.rule, {}).setdefault((ib.level, ib.key), []).append(ib)


def _restore(w: World, state: Mapping[str, Any]) -> tuple[list[IncidentRecord], set[str]]:
    """Load `state`; return the open incidents left without a rule or subject, and the ids
    of the rules that start afresh (new, or with changed conditions)."""
    if state.get("format") not in (1, FORMAT):  # 1: "seen" held [ts, value] pairs
        raise SnapshotError(f"snapshot format {state.get('format')!r} is not {FORMAT}")
    clock = state.get("clock")
    w.clock = NO_CLOCK if clock is None else int(clock)
    w.late = int(state.get("late", 0))
    if state.get("format") == 1:
        for sid, (ts, value) in state.get("seen", {}).items():
            w.seen[sid] = int(ts)
            if value is not None:
                w.values[sid] = float(value)
    else:
        w.seen.update((sid, int(ts)) for sid, ts in state.get("seen", {}).items())
        w.values.update((sid, float(v)) for sid, v in state.get("values", {}).items())
    incidents = state.get("incidents", [])
    for data in incidents.values() if isinstance(incidents, Mapping) else incidents:
        rec = IncidentRecord.from_json(data)
        w.incidents[rec.id] = rec
        w.by_rule.setdefault(rec.rule, {})[rec.id] = rec
    stored = state.get("rules", {})
    changed: set[str] = set()
    fresh: set[str] = set()
    for rid, rt in w.rules.items():
        st = stored.get(rid)
        if st is not None and st.get("fingerprint") == rt.fingerprint:
            _load_rule(rt, st)
            continue
        fresh.add(rid)
        if st is not None:
            changed.add(rid)
        # A new rule, or one whose conditions changed, starts watching now.
        rt.since = None if w.clock == NO_CLOCK else w.clock
        for b in rt.missing:
            b.since = rt.since
    orphans: list[IncidentRecord] = []
    for rec in w.incidents.values():
        if not rec.is_open:
            continue
        if rec.rule in SYSTEM_RULES:
            continue  # the hub's own incidents have no rule to lose
        owner = w.rules.get(rec.rule)
        subj = owner.subjects.get(rec.subject) if owner else None
        if subj is None:
            orphans.append(rec)
            continue
        subj.incident = rec
        if rec.rule in changed:
            # The incident stays open; the new conditions may clear it once they have had
            # time to hear from every sensor again.
            subj.triggered = True
            settle = _settle(subj)
            if settle and w.clock != NO_CLOCK:
                subj.settle_until = w.clock + settle
    return orphans, fresh


def _load_rule(rt: RuleRuntime, st: Mapping[str, Any]) -> None:
    since = st.get("since")
    rt.since = None if since is None else int(since)
    for b in rt.missing:
        b.since = rt.since
    for sid, data in st.get("subjects", {}).items():
        subj = rt.subjects.get(sid)
        if subj is None:
            continue  # the subject left the inventory
        subj.triggered = bool(data.get("triggered"))
        settle = data.get("settle")
        subj.settle_until = None if settle is None else int(settle)
        saved = data.get("bindings", {})
        for b in subj.bindings:
            if not isinstance(b, IncidentBinding) and _key(b) in saved:
                b.load(saved[_key(b)])


def _settle(subj: SubjectState) -> int:
    longest = 0
    for b in subj.bindings:
        if isinstance(b, HeldBinding) and b.stale < UNLIMITED:
            longest = max(longest, b.stale)
        if isinstance(b, RateBinding):
            longest = max(longest, b.within)
    return longest


def _arm(w: World) -> None:
    """Rebuild every timer, and the indexes that follow from the state."""
    for rt in w.rules.values():
        for subj in rt.subjects.values():
            for b in subj.bindings:
                if isinstance(b, HeldBinding):
                    deadline = b.pending()
                    if deadline is not None:
                        w.schedule(deadline, b.order, b, b.since)
                elif isinstance(b, MissingBinding):
                    if b.held:
                        w.missing_held.setdefault(b.sensor, []).append(b)
                    else:
                        b.arm(w)
                elif isinstance(b, DetectionBinding) and b.held:
                    w.schedule(b.last + b.within, b.order, b, b.last)
            if subj.settle_until is not None:
                w.schedule(subj.settle_until, (*subj.order, 1), subj, subj.settle_until)
            if subj.incident is not None:
                w.arm_escalation(subj.incident, subj)
    for rec in w.incidents.values():
        if rec.is_open:
            for action in rec.actions:
                if action.kind == "detect":
                    for camera in action.params["cameras"]:
                        w.watching.setdefault(camera, {})[rec.id] = None
        elif rec.state == "cleared":
            owner = w.rules.get(rec.rule)
            where = owner.subjects.get(rec.subject) if owner else None
            if owner is not None and where is not None:
                w.arm_archive(rec, owner, where.order)
            else:
                w.arm_archive(rec, None, ORPHAN)
