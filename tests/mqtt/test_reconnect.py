"""The MQTT client when the broker goes away: restarts, a broker down at start, a hung broker,
and how many unacknowledged messages a broker we did not configure lets us hold."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal

import pytest

from hub import metrics
from hub.mqtt import MqttClient
from hub.services import LocalMosquitto
from tests.helpers import eventually
from tests.mqtt.support import Inbox, StartClient

pytestmark = pytest.mark.integration


def _reconnects() -> float:
    return metrics.REGISTRY.get_sample_value("hub_mqtt_reconnects_total") or 0.0


def _connected() -> float | None:
    return metrics.REGISTRY.get_sample_value("hub_mqtt_connected")


async def test_a_broker_restart_while_publishing_qos_1_loses_nothing(
    own_mosquitto: LocalMosquitto,
    start_client: StartClient,
    prefix: str,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "hub.mqtt")
    inbox = Inbox()
    sub = start_client(
        own_mosquitto.url,
        client_id=f"{uid}-sub",
        subscriptions=[(f"{prefix}/#", 1)],
        on_messages=inbox,
    )
    pub = start_client(own_mosquitto.url, client_id=f"{uid}-pub", max_inflight_out=50)
    await sub.wait_connected(10)
    await pub.wait_connected(10)
    reconnects = _reconnects()

    def publish(numbers: range) -> asyncio.Future[list[None]]:
        return asyncio.gather(*(pub.publish(f"{prefix}/r", b"%d" % i, qos=1) for i in numbers))

    await publish(range(200))
    in_flight = publish(range(200, 600))  # some of these are on the wire when it stops
    await asyncio.to_thread(own_mosquitto.stop)
    while_down = publish(range(600, 1000))  # these wait in the client
    await eventually(lambda: not pub.connected, "the publisher to notice")
    await asyncio.to_thread(own_mosquitto.start)
    async with asyncio.timeout(30):
        await asyncio.gather(in_flight, while_down)

    expected = {b"%d" % i for i in range(1000)}
    await eventually(lambda: set(inbox.payloads()) >= expected, "all 1000 messages", timeout=30)
    assert _reconnects() >= reconnects + 2  # both clients came back
    assert _connected() == 1
    assert f"as {uid}-sub (session present: True)" in caplog.text  # its queue survived


async def test_a_broker_down_at_start_is_retried_with_backoff(
    own_mosquitto: LocalMosquitto,
    start_client: StartClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "hub.mqtt")
    own_mosquitto.stop()
    client = start_client(own_mosquitto.url, client_id=uid, backoff_min=0.02, backoff_max=0.2)

    def delays() -> list[float]:
        return [float(d) for d in re.findall(r"reconnecting in ([\d.]+) s", caplog.text)]

    await eventually(lambda: len(delays()) >= 6, "six retries")
    assert not client.connected
    # Full jitter: each wait is drawn from [0, min(max, min * 2^attempt)].
    bounds = [min(0.2, 0.02 * 2**n) for n in range(len(delays()))]
    assert all(d <= b + 0.005 for d, b in zip(delays(), bounds, strict=True)), delays()
    assert "Connect call failed" in caplog.text or "refused" in caplog.text.lower()

    await asyncio.to_thread(own_mosquitto.start)
    await client.wait_connected(10)


async def test_a_hung_broker_is_noticed_by_keepalive_and_left(
    own_mosquitto: LocalMosquitto, start_client: StartClient, uid: str
) -> None:
    client = start_client(own_mosquitto.url, client_id=uid, keepalive=0.4, connect_timeout=0.5)
    await client.wait_connected(10)
    assert own_mosquitto.proc is not None
    pid = own_mosquitto.proc.pid
    os.kill(pid, signal.SIGSTOP)  # the TCP connection stays up, but nothing answers
    try:
        await eventually(lambda: not client.connected, "the silence to be noticed", timeout=10)
    finally:
        os.kill(pid, signal.SIGCONT)
    await client.wait_connected(10)


async def test_mosquitto_with_its_default_config_honours_our_receive_maximum(
    default_mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    """Mosquitto's max_inflight_messages (20 by default) does not cap an MQTT 5 client: the
    client's Receive Maximum sets the window, so we may hold 500 messages unacknowledged.

    (Mosquitto 2.0.11 keeps to a small window only until the first PUBACK: after that each
    PUBACK releases up to a window's worth more, so a consumer must not count on it.)
    """
    url = default_mosquitto.url
    wide, narrow = Inbox(), Inbox()
    common = {"subscriptions": [(f"{prefix}/#", 1)], "auto_ack": False}
    wide_client = start_client(url, client_id=f"{uid}-wide", on_messages=wide, **common)
    narrow_client = start_client(
        url, client_id=f"{uid}-narrow", on_messages=narrow, receive_maximum=10, **common
    )
    pub = start_client(url, client_id=f"{uid}-pub")
    for client in (wide_client, narrow_client, pub):
        await client.wait_connected(10)

    await asyncio.gather(*(pub.publish(f"{prefix}/x", b"%d" % i, qos=1) for i in range(500)))

    await eventually(lambda: len(wide.messages) == 500, "500 unacked messages in flight")
    # A SUBACK comes after everything the broker wrote to us before it: a barrier.
    await narrow_client.subscribe(f"{prefix}/barrier", 1)
    assert len(narrow.messages) == 10

    def ack_all() -> bool:
        narrow_client.ack(narrow.messages)
        return len(narrow.messages) == 500

    await eventually(ack_all, "the rest, as we ack")
    assert [m.payload for m in narrow.messages] == [b"%d" % i for i in range(500)]


def test_client_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="receive_maximum"):
        MqttClient("mqtt://h", client_id="c", receive_maximum=0)
    with pytest.raises(ValueError, match="QoS 0 or 1"):
        MqttClient("mqtt://h", client_id="c", subscriptions=[("t", 2)])
