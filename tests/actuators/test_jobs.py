"""The command job's state machine, with time moved by hand."""

from __future__ import annotations

from hub.actuators import jobs as J

S = J.S
TIMING = {"ack_timeout": 5 * S, "resend_every": S, "done_timeout": 10 * S}


def job(**kw: object) -> J.CommandJob:
    base: dict[str, object] = {
        "command_id": "c1",
        "actuator": "b1",
        "region": "r",
        "site": "s",
        "action": "close",
        "expect": "closed",
        "actor": "rule",
        "reason": "t",
        "issued_at": 0,
        "expires_at": 100 * S,
    }
    return J.CommandJob(**{**base, **kw})  # type: ignore[arg-type]


def test_resent_until_acked_then_timed_out_then_late_done() -> None:
    j = job()
    assert J.due(j, 0, **TIMING) == (False, True)
    J.on_sent(j, 0)
    assert j.state == "sent"
    assert J.due(j, S // 2, **TIMING) == (False, False)
    assert J.due(j, S, **TIMING) == (False, True)
    assert J.due(j, 5 * S, **TIMING)[0]
    assert j.state == "timed_out"
    assert J.due(j, 6 * S, **TIMING)[1], "a timed-out command is still resent"
    J.on_ack(j, "done", "closed", None, 7 * S)
    assert j.state == "timed_out"
    assert not j.wants_send
    J.on_state(j, "closed", (), 8 * S)
    assert j.state == "done"
    assert j.final


def test_done_ack_contradicted_by_state_fails() -> None:
    j = job()
    J.on_sent(j, 0)
    J.on_ack(j, "done", "closed", None, S)
    assert j.state == "accepted"
    assert not J.on_state(j, "closing", ("closing",), S)
    J.on_state(j, "open", ("closing",), 2 * S)
    assert j.state == "failed"


def test_answers_that_overtake_the_brokers_puback_still_count() -> None:
    """The controller's ack and state can be handled before the hub handles the PUBACK."""
    j = job()
    assert not J.on_state(j, "open", (), 0), "the state from before the command"
    J.on_ack(j, "accepted", None, None, S)
    J.on_ack(j, "done", "closed", None, S)
    J.on_state(j, "open", (), S)
    assert j.state == "failed"
    assert not J.on_sent(j, 2 * S) or j.state == "failed"
    k = job()
    J.on_ack(k, "done", "closed", None, S)
    J.on_state(k, "closed", (), S)
    assert k.state == "done"


def test_expiry_and_confirmation() -> None:
    j = job(state="awaiting_confirmation", auto_at=3 * S)
    assert J.due(j, 2 * S, **TIMING) == (False, False)
    assert J.due(j, 3 * S, **TIMING) == (True, True)
    assert j.state == "queued"
    k = job()
    assert J.due(k, 100 * S, **TIMING)[0]
    assert k.state == "expired"
    assert not J.on_ack(k, "done", "closed", None, 101 * S), "final stays final"


def test_command_ids_are_stable_per_action_and_actuator() -> None:
    assert J.command_id_for("i.0", "b1") == J.command_id_for("i.0", "b1")
    assert J.command_id_for("i.0", "b1") != J.command_id_for("i.0", "b2")
