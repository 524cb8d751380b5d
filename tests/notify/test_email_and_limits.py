"""E-mail to a real aiosmtpd server (down and back), grouping and rate limits, MQTT, SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.mqtt import MqttClient
from hub.services import LocalMosquitto
from tests.helpers import Peer, eventually
from tests.notify.support import (
    REPO,
    SmtpServer,
    config,
    event,
    notifier,
    open_incident,
    running,
    webhook_server,
)


async def test_email_server_down_then_back(tmp_path: Path) -> None:
    smtp = SmtpServer()  # not listening yet
    mail = {"type": "email", "port": smtp.port, "to": ["duty@example.org"], "sender": "hub@x"}
    cfg = config(channels={"duty-officer": mail})
    async with running(notifier(cfg, tmp_path)) as n:
        await open_incident(n, "m1", ["duty-officer"])
        await eventually(lambda: n.outbox.notes["m1/active/duty-officer"].error, "an attempt")
        smtp.start()
        try:
            await eventually(lambda: len(smtp.messages) == 1, "the mail after the server came")
            n.on_incident(event("cleared", "m1", "cleared"))
            await eventually(lambda: len(smtp.messages) == 2, "the clearing")
        finally:
            smtp.stop()
    first, second = smtp.messages
    assert first["Subject"] == "[severe] Underpass flooding at m1"
    assert first.get_content().strip() == "m1: flooding, act now"
    assert second.get_content().strip() == "Underpass flooding at m1: cleared"
    assert first["Message-ID"] != second["Message-ID"]


async def test_grouping_and_rate_limit(tmp_path: Path) -> None:
    async with webhook_server() as server:
        hook = {"type": "webhook", "url": server.url, "rate_limit": {"count": 1, "per": "1s"}}
        cfg = config(channels={"situation-room": hook}, group_window=0.3)
        async with running(notifier(cfg, tmp_path)) as n:
            # Opened within the group window: one delivery with three messages.
            for iid in ("g1", "g2", "g3"):
                await open_incident(n, iid, ["situation-room"])
            await eventually(lambda: len(server.received) == 1, "one grouped delivery")
            started = time.monotonic()
            # The limit allows one delivery a second: the next changes wait, then go together.
            for iid in ("g1", "g2"):
                n.on_incident(event("cleared", iid, "cleared"))
            await eventually(lambda: len(server.received) == 2, "the second delivery")
            waited = time.monotonic() - started
    batches = [[m["key"] for m in json.loads(b)["messages"]] for _, b in server.received]
    assert batches[0] == ["g1/active/situation-room", "g2/active/situation-room",
                          "g3/active/situation-room"]  # fmt: skip
    assert batches[1] == ["g1/cleared/situation-room", "g2/cleared/situation-room"]
    assert waited >= 0.5  # held back by the limit, not only by the window


async def test_min_severity_and_unknown_channel(tmp_path: Path) -> None:
    async with webhook_server() as server:
        hook = {"type": "webhook", "url": server.url, "min_severity": "severe"}
        cfg = config(channels={"fire-119": hook})
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "low", ["fire-119"], severity="minor")
            await open_incident(n, "high", ["fire-119", "no-such-channel"])
            await eventually(lambda: len(server.received) == 1, "the severe page")
    keys = [m["key"] for _, b in server.received for m in json.loads(b)["messages"]]
    assert keys == ["high/active/fire-119"]


async def test_mqtt_channel_publishes_qos1(
    tmp_path: Path, mosquitto: LocalMosquitto, uid: str
) -> None:
    peer = Peer(mosquitto.url, f"notify-listener-{uid}")
    peer.subscribe(f"t{uid}/#", qos=1)
    client = MqttClient(mosquitto.url, client_id=f"notify-hub-{uid}", clean_start=True)
    topic = {"type": "mqtt", "topic": "{prefix}/ops/maintenance"}
    cfg = config(channels={"maintenance": topic})
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.run(), name="mqtt")
            await client.wait_connected(10)
            async with running(notifier(cfg, tmp_path, publisher=client, prefix=f"t{uid}")) as n:
                await open_incident(n, "q1", ["maintenance"])
                await eventually(lambda: peer.received, "the MQTT message")
            await client.stop()
    finally:
        peer.close()
    topic_name, payload = peer.received[0]
    assert topic_name == f"t{uid}/ops/maintenance"
    assert json.loads(payload)["messages"][0]["key"] == "q1/active/maintenance"


_CHILD = """
import asyncio, sys
from pathlib import Path
from tests.notify.support import config, notifier, open_incident
async def main():
    cfg = config(channels={"fire-119": {"type": "webhook", "url": sys.argv[1]}},
                 group_window=3600)
    n = notifier(cfg, Path(sys.argv[2]))
    await open_incident(n, "k1", ["fire-119"])
    print("accepted", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def test_sigkill_after_acceptance_delivers_after_restart(tmp_path: Path) -> None:
    """A process accepts a page and is killed before sending it: the next start sends it."""
    async with webhook_server() as server:
        child = subprocess.Popen(  # noqa: ASYNC220 - its output is read line by line below
            [sys.executable, "-c", _CHILD, server.url, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"accepted"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert server.received == []
        cfg = config(channels={"fire-119": {"type": "webhook", "url": server.url}})
        async with running(notifier(cfg, tmp_path)) as n:
            await eventually(lambda: len(server.received) == 1, "the page after the restart")
            # The rules hand the action over again after their own restart: not sent twice.
            await open_incident(n, "k1", ["fire-119"])
        async with running(notifier(cfg, tmp_path)):
            pass
    assert len(server.received) == 1
