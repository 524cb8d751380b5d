"""The MQTT client against a real Mosquitto: delivery, deferred acks, sizes, TLS and passwords."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from hub.mqtt import Endpoint, Message, MqttClient, MqttError, Will
from hub.services import LocalMosquitto
from tests.helpers import eventually
from tests.mqtt.support import Inbox, StartClient

pytestmark = pytest.mark.integration


async def test_qos_0_and_1_messages_arrive_in_batches(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    inbox = Inbox()
    sub = start_client(
        mosquitto.url, client_id=f"{uid}-sub", subscriptions=[(f"{prefix}/#", 1)], on_messages=inbox
    )
    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await sub.wait_connected(10)
    await pub.wait_connected(10)

    await asyncio.gather(*(pub.publish(f"{prefix}/a/{i}", b"%d" % i, qos=1) for i in range(500)))
    for i in range(500):
        await pub.publish(f"{prefix}/b", b"%d" % i)

    await eventually(lambda: len(inbox.messages) == 1000, "1000 messages")
    one, zero = inbox.messages[:500], inbox.messages[500:]
    assert sorted(m.payload for m in one) == sorted(b"%d" % i for i in range(500))
    assert {(m.qos, m.retain, m.dup) for m in one} == {(1, False, False)}
    assert all(m.packet_id > 0 for m in one)
    assert [m.payload for m in zero] == [b"%d" % i for i in range(500)]  # one topic keeps order
    assert {(m.topic, m.qos, m.packet_id) for m in zero} == {(f"{prefix}/b", 0, 0)}
    assert len(inbox.batches) < 1000  # handed over per read, not per message


async def test_unacked_messages_come_back_after_a_reconnect_and_acked_ones_do_not(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    topic = f"{prefix}/sensors/r1/s1"
    first = Inbox()
    sub = start_client(
        mosquitto.url,
        client_id=f"{uid}-sub",
        subscriptions=[(topic, 1)],
        on_messages=first,
        auto_ack=False,
    )
    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await sub.wait_connected(10)
    await pub.wait_connected(10)
    for i in range(10):
        await pub.publish(topic, b"%d" % i, qos=1)
    await eventually(lambda: len(first.messages) == 10, "10 messages")

    received = first.messages
    assert sub.ack(received[:5]) == 5
    assert sub.ack(received[:5]) == 0  # twice would ack a newer message that reused the id
    await sub.stop()

    again = Inbox()
    sub2 = start_client(
        mosquitto.url, client_id=f"{uid}-sub", subscriptions=[(topic, 1)], on_messages=again
    )
    await sub2.wait_connected(10)
    await pub.publish(topic, b"marker", qos=1)  # redeliveries come before it
    await eventually(lambda: b"marker" in again.payloads(), "the marker")

    assert again.payloads() == [b"5", b"6", b"7", b"8", b"9", b"marker"]
    assert all(m.dup for m in again.messages[:5])
    assert sub2.ack(received) == 0  # acks of the old connection's messages are not sent


async def test_a_1_mb_message_goes_through(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    inbox = Inbox()
    sub = start_client(
        mosquitto.url, client_id=f"{uid}-sub", subscriptions=[(f"{prefix}/#", 1)], on_messages=inbox
    )
    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await sub.wait_connected(10)
    await pub.wait_connected(10)
    payload = bytes(range(256)) * 4096
    await pub.publish(f"{prefix}/snapshot", payload, qos=1)
    await eventually(lambda: inbox.messages, "the 1 MB message")
    assert [m.payload for m in inbox.messages] == [payload]


async def test_qos_0_while_disconnected_is_dropped_and_counted(
    own_mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    own_mosquitto.stop()
    pub = start_client(own_mosquitto.url, client_id=f"{uid}-pub")
    await pub.publish(f"{prefix}/x", b"lost")
    assert pub.dropped == 1
    with pytest.raises(ValueError, match="not a valid topic"):
        await pub.publish(f"{prefix}/+", b"x")


async def test_retained_messages_and_unsubscribe(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await pub.wait_connected(10)
    await pub.publish(f"{prefix}/state", b"closed", qos=1, retain=True)
    inbox = Inbox()
    sub = start_client(mosquitto.url, client_id=f"{uid}-sub", on_messages=inbox)
    await sub.wait_connected(10)
    await sub.subscribe(f"{prefix}/state", 1)
    await eventually(lambda: inbox.messages, "the retained message")
    assert [(m.payload, m.retain) for m in inbox.messages] == [(b"closed", True)]

    await sub.unsubscribe(f"{prefix}/state")
    await sub.subscribe(f"{prefix}/other", 1)
    await pub.publish(f"{prefix}/state", b"", qos=1, retain=True)
    await pub.publish(f"{prefix}/other", b"marker", qos=1)
    await eventually(lambda: len(inbox.messages) == 2, "the marker")
    assert inbox.messages[1].payload == b"marker"


async def test_tls_with_mqtts_url(
    tls_mosquitto: tuple[LocalMosquitto, Path], start_client: StartClient, uid: str
) -> None:
    broker, cert = tls_mosquitto
    context = ssl.create_default_context(cafile=str(cert))
    inbox = Inbox()
    url = f"mqtts://127.0.0.1:{broker.port}"
    client = start_client(
        url, client_id=uid, ssl_context=context, subscriptions=[("t/#", 1)], on_messages=inbox
    )
    await client.wait_connected(10)
    await client.publish("t/1", b"over TLS", qos=1)
    await eventually(lambda: inbox.payloads() == [b"over TLS"], "the message over TLS")


async def test_username_and_password(
    password_mosquitto: LocalMosquitto,
    start_client: StartClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "hub.mqtt")
    bad = start_client(f"mqtt://sensor:wrong@127.0.0.1:{password_mosquitto.port}", client_id=uid)
    await eventually(lambda: "0x87 not authorized" in caplog.text, "the refusal in the log")
    assert not bad.connected
    await bad.stop()
    good = start_client(
        password_mosquitto.url, client_id=f"{uid}-2", username="sensor", password="s3cret"
    )
    await good.wait_connected(10)


def test_urls() -> None:
    assert Endpoint.from_url("mqtt://broker") == Endpoint("broker", 1883, tls=False)
    assert Endpoint.from_url("mqtts://u%40x:p%3A@[::1]:8884") == Endpoint(
        "::1", 8884, tls=True, username="u@x", password="p:"
    )
    assert "p:" not in repr(Endpoint.from_url("mqtts://u:p:@h"))
    with pytest.raises(ValueError, match="mqtt://"):
        Endpoint.from_url("http://broker")


async def test_stop_fails_qos_1_messages_still_in_flight(
    own_mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    own_mosquitto.stop()
    pub = start_client(own_mosquitto.url, client_id=uid)
    publishing = asyncio.create_task(pub.publish(f"{prefix}/x", b"1", qos=1))
    await eventually(lambda: len(pub._outbox) == 1, "the message in the outbox")
    await pub.stop()
    with pytest.raises(MqttError, match="stopped"):
        await publishing
    with pytest.raises(MqttError, match="stopped"):
        await pub.publish(f"{prefix}/x", b"2", qos=1)


def test_message_is_immutable() -> None:
    message = Message("t", b"x")
    with pytest.raises(AttributeError):
        message.topic = "u"  # type: ignore[misc]
    assert hash(message) == hash(Message("t", b"x"))
    assert MqttClient("mqtt://h", client_id="c").connected is False


async def test_the_will_is_published_when_we_vanish(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    inbox = Inbox()
    watcher = start_client(
        mosquitto.url, client_id=f"{uid}-w", subscriptions=[(f"{prefix}/#", 1)], on_messages=inbox
    )
    will = Will(f"{prefix}/status/hub-1", b"offline", qos=1, retain=False)
    client = start_client(mosquitto.url, client_id=f"{uid}-hub", will=will)
    await watcher.wait_connected(10)
    await client.wait_connected(10)
    assert client._conn is not None
    client._conn.abort()  # as a crash would: no DISCONNECT
    await eventually(lambda: inbox.payloads() == [b"offline"], "the will")
    await client.wait_connected(10)  # and it came back by itself
