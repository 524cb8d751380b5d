"""The commands each actuator kind takes (`actuators.commands`): the configuration's checks,
the API's refusal of any other command, and a command the configuration adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.actuators.config import DEFAULT_COMMANDS, ActuatorsConfig, refusal
from hub.actuators.service import JOBS
from hub.app import Hub
from hub.config import ConfigError, load_config
from tests.actuators.controller import Controller
from tests.actuators.test_policies import call
from tests.helpers import eventually

COMMAND = "/api/actuators/bar-1/command"


def test_the_defaults() -> None:
    assert ActuatorsConfig().commands == {
        "barrier": ("close", "open"),
        "pump": ("start", "stop"),
        "siren": ("on", "off"),
        "sign": ("show", "clear"),
    }
    assert dict(DEFAULT_COMMANDS) == ActuatorsConfig().commands


def test_the_refusal_names_what_the_kind_takes() -> None:
    commands = ActuatorsConfig().commands
    assert refusal(commands, "barrier", "close", "barrier bar-1") is None
    assert refusal(commands, "barrier", "explode", "barrier bar-1") == (
        "'explode' is not a command of barrier bar-1; a barrier takes close, open"
    )
    assert refusal({"alarm": ("ring",)}, "alarm", "stop", "alarm a-1") == (
        "'stop' is not a command of alarm a-1; an alarm takes ring"
    )
    assert refusal(commands, "gate", "open", "gate g-1") == (
        "gate g-1 takes no commands: actuators.commands in hub.yaml lists none for the kind "
        "'gate'; add gate: [...] there with the commands it takes"
    )


def test_bad_command_lists_are_problems_at_their_place(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "actuators:\n"
        "  commands:\n"
        "    barrier: []\n"
        '    pump: [start, "st op"]\n'
        "    siren: [on, off]\n"
        "    sign: show\n"
        "    gate: [open, shut, open]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [f"{p.line}:{p.col}: {p.message}" for p in caught.value.problems] == [
        "3:14: actuators.commands.barrier: a kind takes at least one command: list them, "
        "e.g. [close, open], or leave the kind out",
        "4:19: actuators.commands.pump[1]: expected one word of 1 to 64 letters, digits, '_', "
        "'.' or '-' (such as close), got 'st op'",
        "5:13: actuators.commands.siren[0]: expected text, got true; put it in quotes",
        "5:17: actuators.commands.siren[1]: expected text, got false; put it in quotes",
        "6:11: actuators.commands.sign: expected a list, got 'show'",
        "7:11: actuators.commands.gate: 'open' listed more than once",
    ]
    path.write_text('actuators:\n  commands:\n    "flood gate": [open]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [p.message for p in caught.value.problems] == [
        "actuators.commands: a kind is one word of 1 to 64 letters, digits, '_', '.' or '-' "
        "(such as barrier), got 'flood gate'"
    ]


# -- through a running hub ------------------------------------------------------------------


@pytest.mark.integration
async def test_a_command_the_barrier_does_not_take_is_refused_and_goes_nowhere(
    hub: Hub, controller: Controller
) -> None:
    override = {"command": "explode", "override": True, "reason": "r"}
    for body in ({"command": "explode"}, override):
        status, answer = await call(hub, "POST", COMMAND, body=body)
        assert (status, answer) == (
            400,
            {
                "error": "'explode' is not a command of barrier bar-1; a barrier takes close, open",
                "status": 400,
            },
        )
    assert hub.actuators.commands == {}
    assert hub.store.load(JOBS) == {}
    # Like a bad body, the refusal makes no command, so there is none to audit.
    assert not [e for e in await hub.audit.entries(1000, {"command"}) if e.actor == "desk-1"]
    # A command sent after the refusals arrives alone: nothing went before it.
    status, answer = await call(hub, "POST", COMMAND, body={"command": "close"})
    assert status == 202
    cid = answer["command"]["command_id"]
    await eventually(lambda: hub.actuators.commands[cid].state == "done", "the close done")
    assert list(controller.received) == [cid]
    assert [c["action"] for c in controller.commands.values()] == ["close"]


@pytest.mark.integration
async def test_a_command_the_configuration_adds_is_taken(
    make_hub: Any, controller: Controller
) -> None:
    commands = {
        **{k: list(v) for k, v in DEFAULT_COMMANDS.items()},
        "barrier": ["close", "open", "lock"],
    }
    async with make_hub(commands=commands) as hub:
        await hub.mqtt.wait_connected(10)
        status, answer = await call(hub, "POST", COMMAND, body={"command": "lock"})
        assert status == 202, answer
        cid = answer["command"]["command_id"]
        # `lock` has no state in actuators.states: the controller's `done` confirms it.
        await eventually(lambda: hub.actuators.commands[cid].state == "done", "the lock done")
        assert controller.commands[cid]["action"] == "lock"
        status, answer = await call(hub, "POST", COMMAND, body={"command": "unlock"})
        assert status == 400
        assert answer["error"].endswith("a barrier takes close, open, lock")


@pytest.mark.integration
async def test_an_actuator_whose_kind_has_no_commands_is_refused_with_what_to_add(
    hub: Hub, controller: Controller
) -> None:
    # The hub itself would not start so (its rule closes barriers): the lists as they would
    # be for an actuator of a kind nobody listed.
    hub.actuators.config = hub.actuators.config.model_copy(
        update={"commands": {"pump": ("start", "stop")}}
    )
    status, answer = await call(hub, "POST", COMMAND, body={"command": "close"})
    assert status == 400
    assert answer["error"] == (
        "barrier bar-1 takes no commands: actuators.commands in hub.yaml lists none for the "
        "kind 'barrier'; add barrier: [...] there with the commands it takes"
    )
    assert hub.actuators.commands == {}
    assert not controller.received


@pytest.mark.integration
async def test_a_rule_command_the_kind_does_not_take_is_kept_rejected_and_not_sent(
    hub: Hub, controller: Controller
) -> None:
    """A rule's action from before the lists changed (rule files are checked against them
    when they load): it shows rejected on the rule's incident, and nothing is sent."""
    job = await hub.actuators.submit(
        "bar-1", "explode", actor="underpass-flood", reason="t", from_rule=True
    )
    assert job.state == "rejected"
    assert job.detail == "'explode' is not a command of barrier bar-1; a barrier takes close, open"
    assert hub.store.load(JOBS)[job.command_id]["state"] == "rejected"
    cid = (await hub.actuators.submit("bar-1", "close", actor="desk-1", reason="t")).command_id
    await eventually(lambda: hub.actuators.commands[cid].state == "done", "the close done")
    assert list(controller.received) == [cid]
