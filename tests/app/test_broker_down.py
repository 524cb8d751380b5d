"""The broker cannot stall the rest: while Mosquitto is down, a missing-sensor incident opens,
its webhook notification and escalation go out, an operator acknowledges it; once the broker
is back the incident's retained state there says so."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from hub.app import Hub
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    Peer,
    api_tokens,
    eventually,
    hub_in_process,
    hub_yaml,
)
from tests.notify.support import WebhookServer, webhook_server

pytestmark = pytest.mark.integration

OPERATOR = "op-secret"
SILENT = """
rules:
  - id: gauge-silent
    severity: moderate
    sensors: [wl-1]
    trigger: {missing: 3s}
    actions:
      - notify: {channels: [room]}
    escalate:
      - {after: 1s, unless: acknowledged, notify: {channels: [room]}}
"""


def notes(hook: WebhookServer) -> list[dict[str, object]]:
    """The messages the webhook was given (a delivery may group several)."""
    return [m for _, body in hook.received for m in json.loads(body)["messages"]]


async def _ack(hub: Hub, incident_id: str) -> int:
    url = f"http://{hub.config.api.listen}/api/incidents/{incident_id}/ack"
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as resp:
        return resp.status


async def test_notifications_escalations_and_acks_go_on_while_the_broker_is_down(
    tmp_path: Path,
    own_mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "silent.yaml").write_text(SILENT)
    async with webhook_server() as hook:
        config = hub_yaml(
            tmp_path,
            own_mosquitto.url,
            influx.url,
            prefix,
            database,
            uid,
            rules=[str(rules)],
            notify={
                "channels": {"room": {"type": "webhook", "url": hook.url}},
                "group_window": 0.05,
                "retry_min": 0.05,
                "retry_max": 0.2,
            },
            api={
                "listen": f"127.0.0.1:{free_port()}",
                "tokens": api_tokens(OPERATOR, "viewer-secret"),
            },
        )
        async with hub_in_process(config) as hub:
            await asyncio.to_thread(own_mosquitto.stop)
            await eventually(lambda: not hub.mqtt.connected, "the hub to see the broker gone")

            await eventually(lambda: len(notes(hook)) >= 1, "the incident's notification")
            (incident,) = hub.rules.engine.incidents(rule="gauge-silent")
            await eventually(lambda: len(notes(hook)) >= 2, "the escalation's notification")
            assert await _ack(hub, incident.id) == 200
            assert not hub.mqtt.connected, "the broker came back too early to tell anything"

            await asyncio.to_thread(own_mosquitto.start)
            room = Peer(own_mosquitto.url, f"room-{uid}")
            try:
                room.subscribe(f"{prefix}/incidents/#")

                def acknowledged() -> bool:
                    states = [
                        json.loads(body).get("state")
                        for topic, body in room.received
                        if topic.endswith(incident.id) and body
                    ]
                    return bool(states) and states[-1] == "acknowledged"

                await eventually(acknowledged, "the retained incident to say acknowledged", 30)
            finally:
                room.close()
