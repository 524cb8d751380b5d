"""Safety policies and the HTTP API: tokens and roles, bad bodies, confirmation, interlocks,
operator overrides and the rate limit."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from hub.app import Hub
from tests.actuators.conftest import OPERATOR, VIEWER
from tests.actuators.controller import Controller
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration


async def call(
    hub: Hub, method: str, path: str, token: str | None = OPERATOR, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(
            method, f"http://{hub.config.api.listen}{path}", data=data, headers=headers
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_tokens_roles_and_bad_bodies(hub: Hub, controller: Controller) -> None:
    assert (await call(hub, "GET", "/api/actuators", token=None))[0] == 401
    assert (await call(hub, "GET", "/api/actuators", token="wrong"))[0] == 401
    status, body = await call(hub, "POST", "/api/actuators/bar-1/command", VIEWER, {"command": "x"})
    assert status == 403
    assert "operator" in body["error"]
    status, body = await call(hub, "POST", "/api/actuators/bar-1/command", body="{nope")
    assert status == 400
    assert "not JSON" in body["error"]
    status, body = await call(hub, "POST", "/api/actuators/bar-1/command", body={"comand": "x"})
    assert status == 400
    assert "comand" in body["error"]
    status, body = await call(hub, "POST", "/api/actuators/bar-1/command", body={"reason": "x"})
    assert status == 400
    assert "'command' is missing" in body["error"]
    status, body = await call(hub, "POST", "/api/actuators/nope/command", body={"command": "close"})
    assert status == 404

    status, body = await call(
        hub, "POST", "/api/actuators/bar-1/command", body={"command": "close"}
    )
    assert status == 202
    cid = body["command"]["command_id"]
    await eventually(lambda: hub.actuators.commands[cid].state == "done", "the command done")
    status, body = await call(hub, "GET", "/api/actuators", VIEWER)
    (barrier,) = body["actuators"]
    assert barrier["state"] == "closed"
    assert barrier["commands"] == ["close", "open"]  # what the page offers for its kind
    assert barrier["last"]["actor"] == "desk-1"
    assert any(e.actor == "desk-1" for e in await hub.audit.entries(1000, {"command"}))


async def test_interlock_refuses_open_during_a_flood_unless_overridden(
    hub: Hub, controller: Controller, mosquitto: Any, prefix: str, uid: str
) -> None:
    gauge = Peer(mosquitto.url, f"gauge-{uid}")
    try:
        gauge.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": time.time()}))
        await eventually(lambda: controller.state == "closed", "the barrier to close")
    finally:
        gauge.close()
    path = "/api/actuators/bar-1/command"
    status, body = await call(hub, "POST", path, body={"command": "open"})
    assert status == 409
    assert body["error"].startswith("interlock")
    assert controller.state == "closed"
    status, body = await call(hub, "POST", path, body={"command": "open", "override": True})
    assert status == 400
    assert "an override needs a 'reason'" in body["error"]
    (incident,) = hub.rules.engine.incidents()
    for wrong in ("nope", ""):
        status, body = await call(
            hub, "POST", path, body={"command": "open", "override": True, "reason": "r",
                                     "incident": wrong},
        )  # fmt: skip
        assert status in (400, 404), body
        assert "incident" in body["error"]
    assert controller.state == "closed"
    override = {
        "command": "open",
        "override": True,
        "reason": "crew trapped",
        "incident": incident.id,
    }
    status, body = await call(hub, "POST", path, body=override)
    assert status == 202
    await eventually(lambda: controller.state == "open", "the overridden open")
    (entry,) = await hub.audit.entries(1000, {"override"})
    assert entry.actor == "desk-1"
    assert entry.detail.endswith("past interlocks and the rate limit: crew trapped")
    assert entry.fields["incident_id"] == incident.id
    # The override and its command are in the incident's timeline, with who gave them.
    status, body = await call(hub, "GET", f"/api/incidents/{incident.id}/timeline")
    assert status == 200
    kinds = {(e["kind"], e.get("by")) for e in body["timeline"]}
    assert ("override", "desk-1") in kinds
    assert ("command", "desk-1") in kinds


async def test_confirmation_holds_a_rule_command_for_an_operator(
    make_hub: Any, controller: Controller, mosquitto: Any, prefix: str, uid: str
) -> None:
    async with make_hub(confirm=[{"commands": ["close"]}]) as hub:
        await hub.mqtt.wait_connected(10)
        gauge = Peer(mosquitto.url, f"gauge-{uid}")
        try:
            gauge.publish(
                f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": time.time()})
            )
            (job,) = await eventually(hub.actuators.commands_list, "the command to be held")
        finally:
            gauge.close()
        assert job.state == "awaiting_confirmation"
        assert not controller.received
        path = f"/api/actuators/bar-1/commands/{job.command_id}/confirm"
        assert (await call(hub, "POST", path, VIEWER))[0] == 403
        status, _ = await call(hub, "POST", path)
        assert status == 200
        await eventually(lambda: job.state == "done", "the confirmed command done")
        assert (await call(hub, "POST", path))[0] == 409
        assert await hub.audit.entries(1, {"confirmation"})


async def test_confirmation_goes_ahead_by_itself_after_auto_after(
    make_hub: Any, controller: Controller
) -> None:
    async with make_hub(confirm=[{"commands": ["close"], "auto_after": "300ms"}]) as hub:
        await hub.mqtt.wait_connected(10)
        job = await hub.actuators.submit(
            "bar-1", "close", actor="underpass-flood", reason="t", from_rule=True
        )
        assert job.state == "awaiting_confirmation"
        await eventually(lambda: job.state == "done", "the automatic go-ahead")


async def test_rate_limit(make_hub: Any, controller: Controller) -> None:
    async with make_hub(rate_limit={"commands": 2, "per": "1m"}) as hub:
        await hub.mqtt.wait_connected(10)
        for _ in range(2):
            job = await hub.actuators.submit("bar-1", "close", actor="desk-1", reason="t")
            assert job.state != "rejected"
        job = await hub.actuators.submit("bar-1", "close", actor="desk-1", reason="t")
        assert job.state == "rejected"
        assert job.detail
        assert "rate limit" in job.detail
        job = await hub.actuators.submit(
            "bar-1", "close", actor="desk-1", reason="t", override=True
        )
        assert job.state != "rejected"
