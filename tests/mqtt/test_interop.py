"""The MQTT client and paho-mqtt, an independent implementation, talk to each other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.mqtt import Property
from hub.services import LocalMosquitto
from tests.helpers import eventually
from tests.mqtt.support import Inbox, StartClient

pytestmark = pytest.mark.integration


@contextmanager
def paho_client(broker: LocalMosquitto, client_id: str) -> Iterator[tuple[paho.Client, list[Any]]]:
    """A connected paho MQTT 5 client with its network loop in a thread, and what it receives."""
    received: list[Any] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_message = lambda _c, _u, msg: received.append(msg)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client, received
    finally:
        client.disconnect()
        client.loop_stop()


async def test_paho_publishes_and_we_receive_with_properties(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    inbox = Inbox()
    sub = start_client(
        mosquitto.url, client_id=f"{uid}-sub", subscriptions=[(f"{prefix}/#", 1)], on_messages=inbox
    )
    await sub.wait_connected(10)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    props.UserProperty = [("site", "up-1"), ("unit", "cm")]
    with paho_client(mosquitto, f"{uid}-paho") as (client, _):
        client.publish(f"{prefix}/sensors/r1/wl-1", b'{"value": 12}', qos=1, properties=props)
        for i in range(100):
            client.publish(f"{prefix}/sensors/r1/wl-2", b"%d" % i, qos=i % 2)
        await eventually(lambda: len(inbox.messages) == 101, "paho's 101 messages")

    first, *rest = inbox.messages
    assert (first.topic, first.payload, first.qos) == (
        f"{prefix}/sensors/r1/wl-1",
        b'{"value": 12}',
        1,
    )
    assert first.properties[Property.CONTENT_TYPE] == "application/json"
    assert first.properties[Property.USER_PROPERTY] == (("site", "up-1"), ("unit", "cm"))
    for qos in (0, 1):  # the broker may interleave QoS 0 and 1; each keeps its order
        assert [m.payload for m in rest if m.qos == qos] == [
            b"%d" % i for i in range(100) if i % 2 == qos
        ]


async def test_we_publish_and_paho_receives(
    mosquitto: LocalMosquitto, start_client: StartClient, prefix: str, uid: str
) -> None:
    pub = start_client(mosquitto.url, client_id=f"{uid}-pub")
    await pub.wait_connected(10)
    await pub.publish(f"{prefix}/incidents/r1/i1", b'{"state": "active"}', qos=1, retain=True)
    with paho_client(mosquitto, f"{uid}-paho") as (client, received):
        client.subscribe(f"{prefix}/#", qos=1)
        await eventually(lambda: received, "the retained message")
        await asyncio.gather(
            *(
                pub.publish(f"{prefix}/actuators/r1/b1/command", b"%d" % i, qos=i % 2)
                for i in range(100)
            )
        )
        await eventually(lambda: len(received) == 101, "our 101 messages")
    await pub.publish(f"{prefix}/incidents/r1/i1", b"", qos=1, retain=True)  # clears it

    retained, *rest = received
    assert (retained.topic, retained.payload, retained.retain) == (
        f"{prefix}/incidents/r1/i1",
        b'{"state": "active"}',
        True,
    )
    for qos in (0, 1):
        assert [m.payload for m in rest if m.qos == qos] == [
            b"%d" % i for i in range(100) if i % 2 == qos
        ]
