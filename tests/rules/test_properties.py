"""Properties of the engine over any sequence of readings, ticks, acknowledgements, archives
and detections: one open incident per rule and subject, no clear before its trigger, time
never goes back, live equals replay, and a restore anywhere changes nothing."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ingest.validate import Reading
from hub.rules import (
    ActionRequested,
    Engine,
    Event,
    IncidentAcknowledged,
    IncidentArchived,
    IncidentCleared,
    IncidentOpened,
)
from tests.rules.helpers import INVENTORY, T0, rules

S = 1_000_000_000
RULES = rules(
    """
rules:
  - id: level
    severity: severe
    sensors: {kind: water_level}
    trigger: {above: 50 cm, for: 20s}
    clear: {below: 30 cm, for: 30s}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open}
      - detect: {cameras: site, classes: [person]}
      - notify: {channels: [room]}
    escalate:
      - {after: 2m, unless: acknowledged, notify: {channels: [duty]}}
      - {after: 5m, severity: extreme}
    archive_after: 10m
  - id: quick
    severity: minor
    mode: update
    sensors: {kind: water_level}
    trigger: {above: 80 cm}
    archive_after: 5m
  - id: rising
    severity: moderate
    mode: restart
    sensors: {id: [wl-1, wl-3]}
    trigger: {rate: {rise: 20 cm, within: 1m}}
    clear: {below: 20 cm}
    actions: [{notify: {channels: [room]}}]
    escalate: [{after: 90s, notify: {channels: [duty]}}]
  - id: silent
    severity: minor
    sensors: {kind: water_level}
    trigger: {missing: 2m}
  - id: site-silent
    severity: minor
    per: site
    sensors: {kind: water_level}
    trigger: {missing: 2m, match: all}
  - id: site-all
    severity: moderate
    per: site
    sensors: {kind: water_level}
    trigger: {above: 40 cm, match: all, for: 10s}
  - id: site-combo
    severity: extreme
    per: site
    sensors: {kind: water_level}
    at_least: 2
    of:
      - {incident: {rule: level, state: active}}
      - {detection: {classes: [person], within: 1m}}
      - {above: 60 cm}
  - id: region-any
    severity: severe
    per: region
    sensors: {kind: water_level}
    trigger: {incident: {rule: site-all}}
"""
)
SENSORS = ["wl-1", "wl-2", "wl-3"]
CAMERAS = ["cam-1", "cam-2"]

reading = st.tuples(
    st.just("read"),
    st.sampled_from(SENSORS),
    st.integers(0, 10).map(lambda v: v / 10),
    st.integers(0, 40),  # seconds after the previous step
    st.just(0),  # how late its timestamp is
)
late_reading = st.tuples(
    st.just("read"),
    st.sampled_from(SENSORS),
    st.integers(0, 10).map(lambda v: v / 10),
    st.integers(0, 40),
    st.integers(0, 90),
)
tick = st.tuples(st.just("tick"), st.integers(0, 400))
ack = st.tuples(st.just("ack"), st.integers(0, 5))
archive = st.tuples(st.just("archive"), st.integers(0, 5))
detect = st.tuples(st.just("detect"), st.sampled_from(CAMERAS), st.integers(0, 3))

in_order = st.lists(st.one_of(reading, reading, tick, ack, archive, detect), max_size=40)
any_order = st.lists(st.one_of(late_reading, reading, tick, ack, archive, detect), max_size=40)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drive(
    ops: list[tuple[Any, ...]],
    *,
    ticks: bool = True,
    restore_at: int | None = None,
    reload_at: int | None = None,
    check_snapshots: bool = False,
) -> list[Event]:
    """Run the operations; without `ticks`, the clock moves only with the other inputs."""
    eng = Engine(RULES, INVENTORY)
    t = T0
    events = eng.tick(t)  # a live hub and a replay both start watching at the start
    for i, op in enumerate(ops):
        if check_snapshots:
            # Incidents and subjects keep their encoded form until they change: never stale.
            kept = json.dumps(eng.snapshot(), sort_keys=True)
            plain = json.loads(orjson.dumps(eng.snapshot(encoded=True)))
            plain["incidents"] = list(plain["incidents"].values())  # by id when encoded
            encoded = json.dumps(plain, sort_keys=True)
            for rec in eng._w.incidents.values():
                rec._json = rec._encoded = None
            fresh = json.dumps(eng.snapshot(), sort_keys=True)
            assert kept == fresh, f"stale before {op}"
            assert encoded == fresh, f"stale encoded form before {op}"
        if i == restore_at:
            state = json.loads(json.dumps(eng.snapshot()))
            eng = Engine(RULES, INVENTORY, state)
        if i == reload_at:
            events += eng.replace_rules(RULES)
        kind = op[0]
        if kind == "read":
            _, sensor, value, dt, back = op
            t += dt * S
            events += eng.on_readings([Reading(INVENTORY.sensors[sensor], value, t - back * S)])
        elif kind == "tick":
            t += op[1] * S
            if ticks:
                events += eng.tick(t)
        elif kind in ("ack", "archive"):
            # An operator acts on what the hub shows at t: the input itself is at t.
            events += eng.tick(t)
            wanted = ("active",) if kind == "ack" else ("cleared",)
            found = [i for i in eng.incidents() if i.state in wanted]
            if found:
                target = found[op[1] % len(found)]
                if kind == "ack":
                    events += eng.acknowledge(target.id, "desk", t)
                else:
                    events += eng.archive(target.id, t)
        else:
            _, camera, count = op
            dets = [{"class": "person", "score": 0.9}] * count
            events += eng.on_detection(camera, None, t, dets)
    events += eng.tick(t + 3600 * S)
    return events


def check_lifecycle(events: list[Event]) -> None:
    """One open incident per rule and subject; every transition after the one before it."""
    open_by_key: dict[tuple[str, str], str] = {}
    opened_at: dict[str, int] = {}
    cleared_at: dict[str, int] = {}
    last = 0
    for e in events:
        assert e.at >= last, f"time went back: {e}"
        last = e.at
        if isinstance(e, ActionRequested):
            assert e.incident_id in opened_at
            continue
        inc = e.incident
        key = (inc.rule, inc.subject)
        if isinstance(e, IncidentOpened):
            assert key not in open_by_key, f"second open incident for {key}"
            open_by_key[key] = inc.id
            opened_at[inc.id] = e.at
        elif isinstance(e, IncidentCleared):
            assert open_by_key.pop(key) == inc.id
            assert opened_at[inc.id] <= e.at
            cleared_at[inc.id] = e.at
        elif isinstance(e, IncidentArchived):
            assert cleared_at[inc.id] <= e.at
            assert inc.state == "archived"
        elif isinstance(e, IncidentAcknowledged):
            assert inc.id in opened_at
        else:
            assert inc.id in opened_at
            assert inc.id not in cleared_at


@SETTINGS
@given(any_order)
def test_one_open_incident_per_rule_and_subject_and_no_clear_before_trigger(
    ops: list[tuple[Any, ...]],
) -> None:
    check_lifecycle(drive(ops))


@SETTINGS
@given(in_order)
def test_live_with_ticks_equals_replay_from_reading_time(ops: list[tuple[Any, ...]]) -> None:
    assert drive(ops, ticks=True) == drive(ops, ticks=False)


@SETTINGS
@given(any_order, st.data())
def test_a_restore_at_any_point_gives_the_same_events(
    ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(ops)))
    assert drive(ops, restore_at=at) == drive(ops)


@SETTINGS
@given(any_order)
def test_a_snapshot_kept_between_changes_is_never_stale(ops: list[tuple[Any, ...]]) -> None:
    drive(ops, check_snapshots=True)


@SETTINGS
@given(any_order, st.data())
def test_reloading_the_same_rules_at_any_point_changes_nothing(
    ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(ops)))
    assert drive(ops, reload_at=at) == drive(ops)


@SETTINGS
@given(st.lists(st.integers(31, 49), min_size=1, max_size=30), st.integers(1, 30))
def test_a_level_hovering_between_clear_and_trigger_never_pages_again(
    levels: list[int], step: int
) -> None:
    eng = Engine(RULES, INVENTORY)
    sensor = INVENTORY.sensors["wl-1"]
    events = eng.on_readings([Reading(sensor, 0.6, T0 + s * S) for s in (0, 10, 20)])
    assert [e.incident.rule for e in events if isinstance(e, IncidentOpened)] == ["level"]
    readings = [Reading(sensor, v / 100, T0 + (30 + i * step) * S) for i, v in enumerate(levels)]
    events = eng.on_readings(readings)
    assert not [e for e in events if isinstance(e, IncidentOpened) and e.incident.rule == "level"]
    assert not [e for e in events if isinstance(e, ActionRequested) and e.step == "open"]
