"""What a real Mosquitto refuses or limits, and how the client keeps to it: a subscription its
access control refuses, a broker with `max_qos 0` and `retain_available false`, and messages
that expire in a persistent session's queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.mqtt import BrokerLimits, MqttError
from hub.services import LocalMosquitto, free_port
from tests.helpers import eventually
from tests.mqtt.support import ConfiguredMosquitto, Inbox, StartClient, subscribe_only

pytestmark = pytest.mark.integration


@pytest.fixture
def acl_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """Mosquitto whose anonymous clients may subscribe to `ok/#` only."""
    broker = subscribe_only(tmp_path / "acl", "ok/#")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def limited_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """Mosquitto that takes QoS 0 only and keeps no retained messages."""
    lines = "allow_anonymous true\nmax_qos 0\nretain_available false\n"
    broker = ConfiguredMosquitto(data_dir=tmp_path / "limited", port=free_port(), lines=lines)
    broker.start()
    yield broker
    broker.stop()


async def test_a_subscription_mosquitto_refuses_is_reported(
    acl_mosquitto: LocalMosquitto,
    start_client: StartClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "hub.mqtt")
    client = start_client(
        acl_mosquitto.url, client_id=uid, subscriptions=[("ok/#", 1), ("secret/#", 1)]
    )
    await client.wait_connected(10)
    assert client.refused_subscriptions == {"secret/#": "0x87 not authorized"}
    assert "MQTT subscription to 'secret/#' refused: 0x87 not authorized" in caplog.text
    with pytest.raises(MqttError, match=r"'secret/x' refused: 0x87 not authorized"):
        await client.subscribe("secret/x")
    await client.subscribe("ok/x")
    assert set(client.refused_subscriptions) == {"secret/#", "secret/x"}
    await client.unsubscribe("secret/#")
    await client.unsubscribe("secret/x")
    assert client.refused_subscriptions == {}


async def test_a_broker_with_max_qos_0_and_no_retain_keeps_us_connected(
    limited_mosquitto: LocalMosquitto,
    start_client: StartClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "hub.mqtt")
    inbox = Inbox()
    sub = start_client(
        limited_mosquitto.url, client_id=f"{uid}-sub", subscriptions=[("t/#", 1)], on_messages=inbox
    )
    pub = start_client(limited_mosquitto.url, client_id=f"{uid}-pub")
    await sub.wait_connected(10)
    await pub.wait_connected(10)
    limits = pub.broker_limits
    assert limits is not None
    assert (limits.max_qos, limits.retain_available) == (0, False)
    assert limits == BrokerLimits(0, False, limits.receive_maximum, limits.max_packet_size)

    async with asyncio.timeout(10):
        await pub.publish("t/state", b"closed", qos=1, retain=True)
        await pub.publish_nowait("t/state", b"open", retain=True)
        for i in range(50):  # more than Mosquitto's window of 20: none waits for a PUBACK
            await pub.publish("t/n", b"%d" % i, qos=1)
    await eventually(lambda: len(inbox.messages) == 52, "the 52 messages")
    assert {(m.qos, m.retain) for m in inbox.messages} == {(0, False)}
    assert inbox.payloads()[:2] == [b"closed", b"open"]
    # Mosquitto drops a client that sends QoS 1 or the retain flag here: nobody was dropped.
    assert pub.connected
    assert sub.connected
    assert "connection to" not in caplog.text
    assert caplog.text.count("takes QoS 0 at most: QoS 1 messages") == 1
    assert caplog.text.count("keeps no retained messages") == 1


async def test_a_message_expires_in_an_offline_subscribers_queue(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    topic = f"{prefix}/actuators/r1/b1/command"
    received: list[Any] = []
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def connect_subscriber() -> paho.Client:
        # A persistent session, so that Mosquitto queues for it while it is away.
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{uid}-paho", protocol=paho.MQTTv5
        )
        client.on_message = lambda _c, _u, msg: received.append(msg)

        def on_subscribe(*_: object) -> None:
            loop.call_soon_threadsafe(subscribed.set)

        client.on_subscribe = on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        client.connect(mosquitto.host, mosquitto.port, clean_start=False, properties=props)
        client.loop_start()
        return client

    subscriber = connect_subscriber()
    subscriber.subscribe(topic, qos=1)
    async with asyncio.timeout(10):
        await subscribed.wait()
    subscriber.disconnect()  # session kept: 300 s
    subscriber.loop_stop()

    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await pub.wait_connected(10)
    await pub.publish(topic, b"short", qos=1, expiry=1)
    await pub.publish(topic, b"long", qos=1, expiry=60)
    # The expiry is what is under test: wait past it (Mosquitto counts whole seconds).
    await asyncio.sleep(2.1)

    subscriber = connect_subscriber()
    try:
        await eventually(lambda: received, "the queued message")
        await pub.publish(topic, b"marker", qos=1)  # after what was queued
        await eventually(lambda: len(received) >= 2, "the marker")
        assert [m.payload for m in received] == [b"long", b"marker"]
        assert 55 <= received[0].properties.MessageExpiryInterval <= 60  # the time left
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
