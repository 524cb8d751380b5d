"""Incidents: actions, escalation, modes, acknowledging and archiving, late readings, ids,
snapshots and hot reloads."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from hub.rules import (
    ActionRequested,
    Engine,
    IncidentNotFoundError,
    IncidentOpened,
    IncidentStateError,
    IncidentUpdated,
    event_to_dict,
)
from hub.rules.engine.incidents import incident_id
from tests.rules.helpers import INVENTORY, at, brief, engine, feed, r, rules

ACTIONS = """
rules:
  - id: flood
    title: "Flooding at {site_name} ({region_name})"
    severity: severe
    sensors: {kind: water_level, site: u1}
    trigger: {above: 15 cm}
    clear: {below: 10 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open, expires: 10m}
      - detect: {cameras: nearest, count: 1, within: 1 km, classes: [person]}
      - notify: {channels: [room], region_contacts: true, message: "{title} is {state}"}
    on_clear:
      - notify: {channels: [room]}
    escalate:
      - {after: 10m, unless: acknowledged, notify: {channels: [duty]}}
      - {after: 20m, severity: extreme, notify: {channels: [province]}}
"""


def actions(events: list) -> list[tuple[float, str, str, dict]]:  # type: ignore[type-arg]
    return [
        ((e.at - at(0)) / 1e9, e.kind, e.step, dict(e.params))
        for e in events
        if isinstance(e, ActionRequested)
    ]


def test_actions_are_resolved_for_the_subject() -> None:
    eng = engine(ACTIONS)
    events = feed(eng, ("wl-1", 0.2, 0))
    first = events[0]
    assert isinstance(first, IncidentOpened)
    assert first.incident.title == "Flooding at Underpass one (Region one)"
    assert (first.incident.site, first.incident.region, first.incident.subject) == (
        "u1",
        "r1",
        "wl-1",
    )
    assert actions(events) == [
        (
            0.0,
            "actuate",
            "open",
            {
                "actuators": ["barrier-1"],
                "command": "close",
                "on_clear": "open",
                "expires_s": 600.0,
            },
        ),
        (0.0, "detect", "open", {"cameras": ["cam-1"], "classes": ["person"]}),
        (
            0.0,
            "notify",
            "open",
            {
                "channels": ["room", "r1-office"],
                "message": "Flooding at Underpass one (Region one) is active",
                "title": "Flooding at Underpass one (Region one)",
            },
        ),
    ]
    assert [a.status for a in first.incident.actions] == ["requested"] * 3


def test_clearing_undoes_what_was_actuated_and_runs_on_clear() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0))
    events = feed(eng, ("wl-1", 0.05, 60))
    assert brief(events)[0] == (60.0, "cleared", "flood", "wl-1")
    notify = events[2]
    assert isinstance(notify, ActionRequested)
    assert actions(events) == [
        (60.0, "actuate", "clear", {"actuators": ["barrier-1"], "command": "open"}),
        (
            60.0,
            "notify",
            "clear",
            {
                "channels": ["room"],
                "message": "Flooding at Underpass one (Region one) (severe, cleared)",
                "title": "Flooding at Underpass one (Region one)",
            },
        ),
    ]
    assert notify.params["message"].endswith("(severe, cleared)")


def test_escalation_runs_on_the_clock_unless_acknowledged() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0))
    events = eng.tick(at(3600))
    assert [(t, kind) for t, kind, *_ in brief(events)] == [
        (600.0, "updated"),
        (600.0, "action"),
        (1200.0, "updated"),
        (1200.0, "action"),
    ]
    assert actions(events)[0][1:3] == ("notify", "escalate[0]")
    last = events[2]
    assert isinstance(last, IncidentUpdated)
    assert (last.reason, last.incident.severity) == ("escalate[1]", "extreme")


def test_acknowledged_skips_only_the_steps_that_say_unless_acknowledged() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0))
    inc = eng.open_incident("flood", "wl-1")
    assert inc is not None
    events = eng.acknowledge(inc.id, "desk-1", at(60))
    events += eng.acknowledge(inc.id, "desk-2", at(70))  # twice: nothing more
    events += eng.tick(at(3600))
    assert [(t, kind) for t, kind, *_ in brief(events)] == [
        (60.0, "acknowledged"),
        (1200.0, "updated"),
        (1200.0, "action"),
    ]
    assert events[0].incident.acked_by == "desk-1"  # type: ignore[union-attr]


def test_a_cleared_incident_cancels_its_escalation() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.0, 60))
    assert eng.tick(at(3600)) == []


MODES = """
rules:
  - id: m
    severity: moderate
    mode: {mode}
    sensors: {{id: wl-1}}
    trigger: {{above: 15 cm}}
    clear: {{below: 5 cm}}
    actions:
      - notify: {{channels: [room]}}
    escalate:
      - {{after: 10m, notify: {{channels: [duty]}}}}
"""
RETRIGGER = [("wl-1", 0.2, 0), ("wl-1", 0.1, 60), ("wl-1", 0.2, 300)]


def test_mode_single_ignores_a_retrigger() -> None:
    eng = engine(MODES.format(mode="single"))
    events = feed(eng, *RETRIGGER) + eng.tick(at(1000))
    assert [(t, kind) for t, kind, *_ in brief(events)] == [
        (0.0, "opened"),
        (0.0, "action"),
        (600.0, "updated"),
        (600.0, "action"),
    ]


def test_mode_update_records_the_retrigger() -> None:
    eng = engine(MODES.format(mode="update"))
    events = feed(eng, *RETRIGGER)
    assert [(t, kind) for t, kind, *_ in brief(events)] == [
        (0.0, "opened"),
        (0.0, "action"),
        (300.0, "updated"),
    ]
    update = events[-1]
    assert isinstance(update, IncidentUpdated)
    assert update.reason == "retrigger"
    assert [e["value"] for e in update.incident.evidence] == [0.2, 0.2]


def test_mode_restart_runs_the_actions_again_and_restarts_escalation() -> None:
    eng = engine(MODES.format(mode="restart"))
    events = feed(eng, *RETRIGGER) + eng.tick(at(1000))
    assert [(t, kind) for t, kind, *_ in brief(events)] == [
        (0.0, "opened"),
        (0.0, "action"),
        (300.0, "updated"),
        (300.0, "action"),
        (900.0, "updated"),
        (900.0, "action"),
    ]


def test_late_and_duplicate_readings_are_ignored_and_counted() -> None:
    eng = engine(ACTIONS)
    events = eng.on_readings([r("wl-1", 0.05, 10), r("wl-1", 0.3, 5), r("wl-1", 0.3, 10)])
    assert events == []
    assert eng.late_readings == 2


def test_a_reading_older_than_the_clock_but_newest_for_its_sensor_counts_now() -> None:
    eng = engine(ACTIONS)
    eng.tick(at(100))
    events = eng.on_readings([r("wl-1", 0.3, 50)])
    assert brief(events)[0] == (100.0, "opened", "flood", "wl-1")


def test_ids_are_derived_from_rule_subject_and_time() -> None:
    eng = engine(ACTIONS)
    events = feed(eng, ("wl-1", 0.2, 0))
    assert events[0].incident.id == incident_id("flood", "wl-1", at(0))  # type: ignore[union-attr]
    again = engine(ACTIONS)
    assert feed(again, ("wl-1", 0.2, 0)) == events


def test_archive_needs_a_cleared_incident_and_unknown_ids_are_errors() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0))
    inc = eng.open_incident("flood", "wl-1")
    assert inc is not None
    with pytest.raises(IncidentStateError, match="only a cleared incident"):
        eng.archive(inc.id, at(10))
    with pytest.raises(IncidentNotFoundError):
        eng.acknowledge("nope", "desk", at(10))
    feed(eng, ("wl-1", 0.0, 20))
    events = eng.archive(inc.id, at(30))
    assert brief(events) == [(30.0, "archived", "flood", "wl-1")]
    assert eng.incidents() == []
    with pytest.raises(IncidentNotFoundError):
        eng.archive(inc.id, at(40))


def test_a_cleared_incident_is_archived_after_archive_after() -> None:
    eng = engine(ACTIONS + "    archive_after: 1h\n")
    feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.0, 20))
    assert brief(eng.tick(at(7200))) == [(3620.0, "archived", "flood", "wl-1")]


def test_acknowledging_a_cleared_incident_records_who() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.0, 20))
    (inc,) = eng.incidents()
    (event,) = eng.acknowledge(inc.id, "desk", at(30))
    assert (event.incident.state, event.incident.acked_by) == ("cleared", "desk")  # type: ignore[union-attr]


def test_action_status_updates_the_incident() -> None:
    eng = engine(ACTIONS)
    opened = feed(eng, ("wl-1", 0.2, 0))
    action = next(e for e in opened if isinstance(e, ActionRequested) and e.kind == "actuate")
    (event,) = eng.update_action(action.action_id, "done", at(5), "closed")
    assert isinstance(event, IncidentUpdated)
    assert (event.reason, event.incident.actions[0].status) == ("action", "done")
    with pytest.raises(IncidentNotFoundError):
        eng.update_action(action.incident_id + ".99", "done", at(6))


def test_detection_results_become_evidence_of_incidents_that_asked() -> None:
    eng = engine(ACTIONS)
    feed(eng, ("wl-1", 0.2, 0))
    dets = [{"class": "person", "score": 0.8}, {"class": "car", "score": 0.6}]
    events = eng.on_detection("cam-1", "u1", at(5), dets, snapshot="snap.jpg", job_id="j1")
    (event,) = events
    assert isinstance(event, IncidentUpdated)
    assert event.reason == "evidence"
    assert event.incident.evidence[-1] == {
        "kind": "detection",
        "camera": "cam-1",
        "ts": at(5),
        "counts": {"car": 1, "person": 1},
        "max_score": 0.8,
        "site": "u1",
        "snapshot": "snap.jpg",
        "job_id": "j1",
    }
    assert eng.on_detection("cam-2", "u2", at(6), dets) == []


def test_events_are_json_ready() -> None:
    eng = engine(ACTIONS)
    events = feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.0, 60)) + eng.tick(at(90000))
    text = json.dumps([event_to_dict(e) for e in events])
    assert '"event": "archived"' in text


def test_snapshot_round_trips_and_marks_clean() -> None:
    eng = engine(ACTIONS)
    dirty = [eng.dirty]
    feed(eng, ("wl-1", 0.2, 0))
    dirty.append(eng.dirty)
    state = json.loads(json.dumps(eng.snapshot()))
    dirty.append(eng.dirty)
    assert dirty == [False, True, False]
    again = Engine(eng.rules, INVENTORY, state)
    assert again.snapshot() == state
    assert again.incidents() == eng.incidents()
    assert again.tick(at(3600)) == eng.tick(at(3600))


def test_replace_rules_keeps_the_state_of_unchanged_rules() -> None:
    text = """
rules:
  - {id: a, severity: minor, sensors: {id: wl-1}, trigger: {above: 15 cm, for: 1m}}
  - {id: b, severity: minor, sensors: {id: wl-1}, trigger: {above: 1 m}}
"""
    eng = engine(text)
    feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.2, 30))
    # a new title does not lose the running `for:`
    retitled = text.replace("severity: minor", "title: A, severity: minor", 1)
    events = eng.replace_rules(rules(retitled))
    assert events == []
    events = feed(eng, ("wl-1", 0.2, 60))
    assert brief(events) == [(60.0, "opened", "a", "wl-1")]
    assert events[0].incident.title == "A"  # type: ignore[union-attr]


def test_replace_rules_keeps_the_open_incident_of_a_changed_rule() -> None:
    text = "rules:\n  - {id: a, severity: minor, sensors: {id: wl-1}, trigger: {above: 15 cm}}\n"
    eng = engine(text)
    feed(eng, ("wl-1", 0.2, 0))
    assert eng.replace_rules(rules(text.replace("15 cm", "12 cm"))) == []
    # it does not clear before the sensors have had time to report again (3 intervals),
    # and it does not open a second incident for the same water
    events = feed(eng, ("wl-1", 0.13, 30), ("wl-1", 0.05, 60))
    assert events == []
    assert brief(eng.tick(at(200))) == [(90.0, "cleared", "a", "wl-1")]


def test_the_kept_encoded_state_follows_the_settling_time_of_a_changed_rule() -> None:
    text = "rules:\n  - {id: a, severity: minor, sensors: {id: wl-1}, trigger: {above: 15 cm}}\n"
    eng = engine(text)
    feed(eng, ("wl-1", 0.2, 0))
    eng.replace_rules(rules(text.replace("15 cm", "12 cm")))

    def encoded() -> dict[str, Any]:
        state = dict(orjson.loads(orjson.dumps(eng.snapshot(encoded=True))))
        state["incidents"] = list(state["incidents"].values())  # by id when encoded
        return state

    feed(eng, ("wl-1", 0.2, 30))  # the new condition holds
    assert encoded()["rules"]["a"]["subjects"]["wl-1"]["settle"] == at(90)
    # Readings that change nothing, then the settling time runs out with the level still up.
    feed(eng, ("wl-1", 0.2, 60), ("wl-1", 0.2, 90))
    eng.tick(at(100))
    assert encoded()["rules"]["a"]["subjects"]["wl-1"]["settle"] is None
    assert encoded() == json.loads(json.dumps(eng.snapshot()))


def test_replace_rules_clears_the_incidents_of_a_removed_rule() -> None:
    text = "rules:\n  - {id: a, severity: minor, sensors: {id: wl-1}, trigger: {above: 15 cm}}\n"
    eng = engine(text)
    feed(eng, ("wl-1", 0.2, 0))
    other = "rules:\n  - {id: b, severity: minor, sensors: {id: wl-2}, trigger: {above: 1 m}}\n"
    events = eng.replace_rules(rules(other))
    assert brief(events) == [(0.0, "cleared", "a", "wl-1")]
    assert events[0].incident.evidence[-1]["kind"] == "note"  # type: ignore[union-attr]


def test_a_rule_added_by_reload_sees_incidents_already_open() -> None:
    base = "rules:\n  - {id: a, severity: minor, sensors: {id: wl-1}, trigger: {above: 15 cm}}\n"
    eng = engine(base)
    feed(eng, ("wl-1", 0.2, 0))
    eng.tick(at(50))
    more = base + (
        "  - {id: b, severity: severe, per: site, sensors: {kind: water_level},"
        " trigger: {incident: a}}\n"
    )
    assert brief(eng.replace_rules(rules(more))) == [(50.0, "opened", "b", "u1")]
