"""Incidents taken back from their retained messages when the rules' state is lost: same ids,
still open, cleared by the rules once the water goes down, never opened a second time."""

from __future__ import annotations

from typing import Any

from hub.rules import Engine
from hub.rules.rederive import snapshot_from_incidents
from hub.rules.service import incident_payload
from tests.rules.helpers import INVENTORY, at, brief, feed, rules

FLOOD = """
rules:
  - id: flood
    title: "Flooding at {site_name}"
    severity: severe
    sensors: {kind: water_level, site_type: underpass}
    per: site
    trigger: {above: 15 cm}
    clear: {below: 10 cm, for: 1m}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open}
"""


def retained(eng: Engine) -> list[dict[str, Any]]:
    """What the hub published, retained, for each incident (the contract's JSON)."""
    return [incident_payload(i.to_dict()) for i in eng.incidents()]


def test_a_lost_state_takes_back_the_open_incidents_with_their_ids() -> None:
    ruleset = rules(FLOOD)
    before = Engine(ruleset, INVENTORY)
    feed(before, ("wl-1", 0.20, 0), ("wl-3", 0.30, 5))
    before.acknowledge(before.incidents()[0].id, "op-kim", at(10))
    old = {i.id: i for i in before.incidents()}
    assert len(old) == 2

    after = Engine(ruleset, INVENTORY, snapshot_from_incidents(retained(before), at(20)))
    taken = {i.id: i for i in after.incidents()}
    assert set(taken) == set(old)
    for iid, incident in taken.items():
        assert incident.state == old[iid].state
        assert incident.acked_by == old[iid].acked_by
        assert [a.id for a in incident.actions] == [a.id for a in old[iid].actions]
        assert incident.opened_at // 1_000_000 == old[iid].opened_at // 1_000_000  # ms on MQTT

    # Still flooding: no second incident, no second close command.
    events = feed(after, ("wl-1", 0.25, 30), ("wl-3", 0.35, 31))
    assert not [e for e in brief(events) if e[1] in ("opened", "action")]
    # The water goes down: the incident clears under its old id and the barrier reopens.
    events = feed(
        after,
        ("wl-1", 0.02, 40),
        ("wl-2", 0.02, 41),
        ("wl-1", 0.02, 110),
        ("wl-2", 0.02, 111),
    )
    cleared = [e for e in brief(events) if e[1] == "cleared"]
    # Both gauges below 10 cm from t=41 on, for the rule's minute.
    assert cleared == [(101.0, "cleared", "flood", "u1")]
    assert any(e[1:] == ("action", "actuate", "open") for e in brief(events))
    u1 = next(i for i in after.incidents() if i.subject == "u1")
    assert u1.id in old
    assert u1.state == "cleared"


def test_archived_and_foreign_messages_are_left_out() -> None:
    ruleset = rules(FLOOD)
    before = Engine(ruleset, INVENTORY)
    feed(before, ("wl-1", 0.20, 0))
    payloads = retained(before)
    payloads.append({**payloads[0], "id": "gone", "state": "archived"})
    after = Engine(ruleset, INVENTORY, snapshot_from_incidents(payloads, at(5)))
    assert [i.id for i in after.incidents()] == [payloads[0]["id"]]
