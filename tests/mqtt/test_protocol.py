"""What a real broker does not do on demand: QoS 2 sent to us, a small receive window, a
PUBACK that refuses, garbage on the wire. A scripted broker on a local socket plays it."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from collections.abc import AsyncIterator

import pytest

from hub.mqtt import (
    BrokerLimits,
    ConnAck,
    Connect,
    Disconnect,
    Message,
    MqttError,
    MqttExpiredError,
    MqttPublishError,
    Packet,
    Parser,
    PingReq,
    Property,
    PubAck,
    PubRec,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
)
from hub.mqtt.outbox import Slots
from tests.helpers import eventually
from tests.mqtt.support import Inbox, StartClient


class Peer:
    """One connection to the scripted broker: read our client's packets, send it any bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.pending: deque[Packet] = deque()

    async def receive(self) -> Packet:
        """The next packet from the client, skipping PINGREQs."""
        async with asyncio.timeout(10):
            while True:
                while self.pending:
                    packet = self.pending.popleft()
                    if not isinstance(packet, PingReq):
                        return packet
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the client closed the connection")
                self.pending.extend(self.parser.feed(data))

    async def receive_message(self) -> Message:
        """The next packet, which must be a PUBLISH."""
        packet = await self.receive()
        assert isinstance(packet, Message), packet
        return packet

    def send(self, *packets: Packet | bytes) -> None:
        for packet in packets:
            self.writer.write(packet if isinstance(packet, bytes) else encode(packet))

    async def handshake(self, connack: ConnAck | None = None) -> Connect:
        """Take CONNECT, answer it, and grant every subscription in the next SUBSCRIBE."""
        connect = await self.receive()
        assert isinstance(connect, Connect)
        self.send(connack or ConnAck())
        subscribe = await self.receive()
        assert isinstance(subscribe, Subscribe)
        self.send(SubAck(subscribe.packet_id, tuple(s.qos for s in subscribe.subscriptions)))
        return connect


class ScriptedBroker:
    """A listening socket whose connections the test takes one by one."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Peer] = asyncio.Queue()
        self.peers: list[Peer] = []
        self.port = 0

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(Peer(reader, writer))
        await self.accepted.put(self.peers[-1])

    async def next(self) -> Peer:
        async with asyncio.timeout(10):
            return await self.accepted.get()


@pytest.fixture
async def broker() -> AsyncIterator[ScriptedBroker]:
    """A scripted broker; tests take it after `start_client`, so that it closes first."""
    scripted = ScriptedBroker()
    server = await asyncio.start_server(scripted._on_connect, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    async with server:
        yield scripted
        server.close()
        for peer in scripted.peers:  # so that clients being stopped need not wait for us
            peer.writer.close()


def _start(start_client: StartClient, broker: ScriptedBroker, **kwargs: object) -> Inbox:
    inbox = Inbox()
    start_client(
        f"mqtt://127.0.0.1:{broker.port}",
        client_id="scripted",
        subscriptions=[("t/#", 1)],
        on_messages=inbox,
        **kwargs,
    )
    return inbox


async def test_qos_2_from_the_broker_is_refused_and_the_rest_delivered(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    inbox = _start(start_client, broker)
    peer = await broker.next()
    await peer.handshake()
    peer.send(Message("t/a", b"two", qos=2, packet_id=9), Message("t/a", b"one", 1, packet_id=10))
    assert await peer.receive() == PubRec(9, 0x83)
    assert await peer.receive() == PubAck(10)
    assert inbox.payloads() == [b"one"]


async def test_our_qos_1_keeps_to_the_brokers_window_and_is_resent_with_dup(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}"
    client = start_client(url, client_id="scripted", subscriptions=[("t/#", 1)])
    peer = await broker.next()
    await peer.handshake(ConnAck(properties={Property.RECEIVE_MAXIMUM: 2}))
    await client.wait_connected(10)
    sends = [asyncio.create_task(client.publish("t/x", b"%d" % i, qos=1)) for i in range(3)]
    await eventually(lambda: len(client._outbox) == 3, "three messages in the outbox")
    barrier = asyncio.create_task(client.subscribe("t/barrier"))
    one, two = await peer.receive_message(), await peer.receive_message()
    subscribe = await peer.receive()  # before a third message: the window is 2
    assert isinstance(subscribe, Subscribe)
    peer.send(SubAck(subscribe.packet_id, (1,)), PubAck(one.packet_id))
    await barrier
    three = await peer.receive_message()
    assert [one.payload, two.payload, three.payload] == [b"0", b"1", b"2"]
    assert [one.dup, two.dup, three.dup] == [False, False, False]

    peer.writer.close()  # without acking the last two: they must come again
    peer = await broker.next()
    connect = await peer.receive()
    assert isinstance(connect, Connect)
    assert connect.clean_start is False
    peer.send(ConnAck(session_present=True))
    # What was not acked comes first, before the subscriptions are renewed.
    again = [await peer.receive_message(), await peer.receive_message()]
    assert [(m.payload, m.dup, m.packet_id) for m in again] == [
        (b"1", True, two.packet_id),
        (b"2", True, three.packet_id),
    ]
    peer.send(*(PubAck(m.packet_id) for m in again))
    async with asyncio.timeout(10):
        await asyncio.gather(*sends)
    resubscribe = await peer.receive()
    assert isinstance(resubscribe, Subscribe)
    assert [s.topic_filter for s in resubscribe.subscriptions] == ["t/#", "t/barrier"]


async def test_a_refusing_puback_raises_in_publish(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    client = start_client(f"mqtt://127.0.0.1:{broker.port}", client_id="scripted")
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    peer.send(ConnAck())
    await client.wait_connected(10)
    sending = asyncio.create_task(client.publish("t/x", b"no", qos=1))
    message = await peer.receive_message()
    peer.send(PubAck(message.packet_id, 0x87))
    with pytest.raises(MqttPublishError, match="0x87"):
        await sending


async def test_garbage_from_the_broker_ends_the_connection_and_we_come_back(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    _start(start_client, broker)
    peer = await broker.next()
    await peer.handshake()
    peer.send(b"\x30\xff\xff\xff\xff\x01")  # a remaining length of five bytes
    assert await peer.receive() == Disconnect(0x81)
    with pytest.raises(EOFError):
        await peer.receive()
    peer = await broker.next()
    await peer.handshake()


async def test_publish_nowait_writes_before_it_returns_and_waits_in_line_when_full(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    client = start_client(
        f"mqtt://127.0.0.1:{broker.port}", client_id="scripted", max_inflight_out=2
    )
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    peer.send(ConnAck())
    await client.wait_connected(10)
    first = client.publish_nowait("t/x", b"0")
    # Written without a turn of the loop: in the transport's buffer or on the wire already.
    (held,) = client._outbox._inflight.values()
    assert held.sent
    second = client.publish_nowait("t/x", b"1")
    third = client.publish_nowait("t/x", b"2")  # no room: waits in line
    later = asyncio.create_task(client.publish("t/x", b"3", qos=1))
    one, two = await peer.receive_message(), await peer.receive_message()
    assert [one.payload, two.payload] == [b"0", b"1"]
    assert not first.done()
    peer.send(PubAck(one.packet_id))
    three = await peer.receive_message()
    peer.send(PubAck(two.packet_id), PubAck(three.packet_id))
    four = await peer.receive_message()
    assert [three.payload, four.payload] == [b"2", b"3"]  # in the order they were published
    peer.send(PubAck(four.packet_id))
    async with asyncio.timeout(10):
        await asyncio.gather(first, second, third, later)


async def test_slots_go_in_line_and_a_cancelled_waiter_passes_its_slot_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)  # both wait, in that order
    assert not slots.try_take()  # nobody jumps the line
    slots.give()  # handed to the first...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(10):
        await second  # the slot went on to the next in line
    slots.give()
    assert slots.try_take()


async def test_a_refused_subscription_is_reported_until_a_later_suback_grants_it(
    start_client: StartClient, broker: ScriptedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hub.mqtt")
    client = start_client(
        f"mqtt://127.0.0.1:{broker.port}",
        client_id="scripted",
        subscriptions=[("t/#", 1), ("alarms/#", 1), ("$share/g/x", 1)],
    )
    assert client.refused_subscriptions == {}
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    peer.send(ConnAck())
    subscribe = await peer.receive()
    assert isinstance(subscribe, Subscribe)
    peer.send(SubAck(subscribe.packet_id, (1, 0x87, 0x9E)))
    await client.wait_connected(10)
    assert client.refused_subscriptions == {
        "alarms/#": "0x87 not authorized",
        "$share/g/x": "0x9E shared subscriptions not supported",
    }
    assert "MQTT subscription to 'alarms/#' refused: 0x87 not authorized" in caplog.text

    refusing = asyncio.create_task(client.subscribe("big/#"))
    subscribe = await peer.receive()
    assert isinstance(subscribe, Subscribe)
    peer.send(SubAck(subscribe.packet_id, (0x97,)))
    with pytest.raises(MqttError, match=r"'big/#' refused: 0x97 quota exceeded"):
        await refusing
    assert client.refused_subscriptions["big/#"] == "0x97 quota exceeded"
    client.refused_subscriptions.clear()  # a copy: the client's own is untouched
    assert len(client.refused_subscriptions) == 3

    unsubscribing = asyncio.create_task(client.unsubscribe("$share/g/x"))
    unsubscribe = await peer.receive()
    assert isinstance(unsubscribe, Unsubscribe)
    peer.send(UnsubAck(unsubscribe.packet_id, (0x11,)))
    await unsubscribing
    assert set(client.refused_subscriptions) == {"alarms/#", "big/#"}

    peer.writer.close()  # after a reconnect the broker grants what it refused
    peer = await broker.next()
    await peer.handshake()
    await eventually(lambda: client.connected, "the reconnect")
    assert client.refused_subscriptions == {}


async def test_a_broker_without_qos_1_and_retain_gets_qos_0_without_retain_flag(
    start_client: StartClient, broker: ScriptedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hub.mqtt")
    client = start_client(
        f"mqtt://127.0.0.1:{broker.port}", client_id="scripted", subscriptions=[("t/#", 1)]
    )
    before = client.broker_limits
    assert before is None
    # First a broker that takes QoS 1: a message it does not ack waits for the next connection.
    peer = await broker.next()
    await peer.handshake()
    await client.wait_connected(10)
    assert client.broker_limits == BrokerLimits()
    held = asyncio.create_task(client.publish("t/held", b"0", qos=1, retain=True))
    first = await peer.receive_message()
    assert (first.qos, first.retain) == (1, True)
    peer.writer.close()

    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    limits: dict[int, int] = {
        Property.MAXIMUM_QOS: 0,
        Property.RETAIN_AVAILABLE: 0,
        Property.RECEIVE_MAXIMUM: 5,
        Property.MAXIMUM_PACKET_SIZE: 4096,
    }
    peer.send(ConnAck(session_present=True, properties=limits))
    again = await peer.receive_message()  # QoS 0 now: no PUBACK to wait for, no DUP
    assert (again.topic, again.qos, again.retain, again.dup, again.packet_id) == (
        "t/held", 0, False, False, 0
    )  # fmt: skip
    async with asyncio.timeout(10):
        await held  # settled once written
    subscribe = await peer.receive()
    assert isinstance(subscribe, Subscribe)
    assert [(s.topic_filter, s.qos) for s in subscribe.subscriptions] == [("t/#", 0)]
    peer.send(SubAck(subscribe.packet_id, (0,)))
    await client.wait_connected(10)
    assert client.broker_limits == BrokerLimits(
        max_qos=0, retain_available=False, receive_maximum=5, max_packet_size=4096
    )

    async with asyncio.timeout(10):
        await client.publish("t/a", b"1", qos=1, retain=True)
        await client.publish("t/b", b"2", qos=0, retain=True)
        nowait = client.publish_nowait("t/c", b"3", retain=True)
        assert nowait.done()  # written, so settled, before publish_nowait returned
        for _ in range(10):  # more than the broker's window of 5: none waits for a PUBACK
            await client.publish("t/d", b"4", qos=1)
    received = [await peer.receive_message() for _ in range(13)]
    assert {(m.qos, m.retain, m.packet_id) for m in received} == {(0, False, 0)}
    assert [m.payload for m in received[:3]] == [b"1", b"2", b"3"]
    qos_warnings = [r for r in caplog.records if "takes QoS 0 at most: QoS 1" in r.message]
    retain_warnings = [r for r in caplog.records if "keeps no retained messages" in r.message]
    assert len(qos_warnings) == len(retain_warnings) == 1  # once per connection
    assert "delivery is not confirmed" in qos_warnings[0].message
    assert "will not be kept by this broker" in retain_warnings[0].message

    peer.writer.close()  # the next connection has the limits of its own CONNACK
    peer = await broker.next()
    await peer.handshake()
    await client.wait_connected(10)
    assert client.broker_limits == BrokerLimits()
    sending = asyncio.create_task(client.publish("t/e", b"5", qos=1, retain=True))
    message = await peer.receive_message()
    assert (message.qos, message.retain) == (1, True)
    peer.send(PubAck(message.packet_id))
    async with asyncio.timeout(10):
        await sending


def _expiry(message: Message) -> object:
    return message.properties.get(Property.MESSAGE_EXPIRY_INTERVAL)


async def test_a_resent_message_carries_the_seconds_left_and_an_expired_one_is_not_sent(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    client = start_client(f"mqtt://127.0.0.1:{broker.port}", client_id="scripted")
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    peer.send(ConnAck())
    await client.wait_connected(10)
    loop = asyncio.get_running_loop()
    began = loop.time()
    long = client.publish_nowait("t/long", b"long", expiry=2.5)
    short = client.publish_nowait("t/short", b"short", expiry=0.3)
    plain = asyncio.create_task(client.publish("t/plain", b"plain", qos=1))
    received = [await peer.receive_message() for _ in range(3)]
    assert [(m.payload, _expiry(m)) for m in received] == [
        (b"long", 3),  # rounded up
        (b"short", 1),
        (b"plain", None),
    ]
    peer.writer.close()  # none acked: all would go again

    # With the broker gone, the short one's time runs out: it fails without waiting for one.
    with pytest.raises(MqttExpiredError, match="'t/short' expired before the broker ack"):
        async with asyncio.timeout(10):
            await short
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    # Time passing is what is under test: wait until at least 0.6 s of the 2.5 s are gone, so
    # that the seconds left round up to 2 (or 1 on a slow machine), not 3 as at first.
    await asyncio.sleep(max(0.0, began + 0.6 - loop.time()))
    peer.send(ConnAck(session_present=True))
    again = [await peer.receive_message(), await peer.receive_message()]
    assert [(m.payload, m.dup) for m in again] == [(b"long", True), (b"plain", True)]
    assert _expiry(again[0]) in (1, 2)
    assert _expiry(again[1]) is None
    assert [m.packet_id for m in again] == [received[0].packet_id, received[2].packet_id]
    peer.send(*(PubAck(m.packet_id) for m in again))
    async with asyncio.timeout(10):
        await asyncio.gather(long, plain)

    # Time already up: not sent at all, at either QoS.
    with pytest.raises(MqttExpiredError, match="'t/late' expired before it was sent"):
        await client.publish("t/late", b"late", qos=1, expiry=0)
    with pytest.raises(MqttExpiredError, match="before it was sent"):
        await client.publish("t/late", b"late", qos=0, expiry=-1)
    late = client.publish_nowait("t/late", b"late", expiry=0)
    with pytest.raises(MqttExpiredError):
        await late
    with pytest.raises(ValueError, match="expiry"):
        client.publish_nowait("t/late", b"late", expiry=float("nan"))
    await client.publish("t/zero", b"zero", qos=0, expiry=0.2)
    marker = asyncio.create_task(client.publish("t/marker", b"marker", qos=1))
    zero, last = await peer.receive_message(), await peer.receive_message()
    assert [(zero.payload, _expiry(zero)), (last.payload, _expiry(last))] == [
        (b"zero", 1),
        (b"marker", None),
    ]
    peer.send(PubAck(last.packet_id))
    async with asyncio.timeout(10):
        await marker


async def test_a_message_that_expires_waiting_for_the_window_is_not_sent(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    client = start_client(f"mqtt://127.0.0.1:{broker.port}", client_id="scripted")
    peer = await broker.next()
    assert isinstance(await peer.receive(), Connect)
    peer.send(ConnAck(properties={Property.RECEIVE_MAXIMUM: 1}))
    await client.wait_connected(10)
    first = client.publish_nowait("t/first", b"first")
    waiting = client.publish_nowait("t/waiting", b"waiting", expiry=0.1)
    after = client.publish_nowait("t/after", b"after")
    one = await peer.receive_message()
    with pytest.raises(MqttExpiredError, match="'t/waiting' expired before it was sent"):
        async with asyncio.timeout(10):
            await waiting  # its deadline passed while the window was full
    # Its packet id is free again, and taken by the next message without a double send.
    reuse = client.publish_nowait("t/reuse", b"reuse")
    peer.send(PubAck(one.packet_id))
    two = await peer.receive_message()
    peer.send(PubAck(two.packet_id))
    three = await peer.receive_message()
    peer.send(PubAck(three.packet_id))
    assert [one.payload, two.payload, three.payload] == [b"first", b"after", b"reuse"]
    async with asyncio.timeout(10):
        await asyncio.gather(first, after, reuse)
    assert len(client._outbox) == 0


async def test_a_refusing_puback_reaches_only_the_caller(
    start_client: StartClient, broker: ScriptedBroker
) -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        client = start_client(f"mqtt://127.0.0.1:{broker.port}", client_id="scripted")
        peer = await broker.next()
        assert isinstance(await peer.receive(), Connect)
        peer.send(ConnAck())
        await client.wait_connected(10)
        kept = client.publish_nowait("t/kept", b"kept")
        client.publish_nowait("t/dropped", b"dropped")  # nobody looks at this future
        sending = asyncio.create_task(client.publish("t/awaited", b"awaited", qos=1))
        messages = [await peer.receive_message() for _ in range(3)]
        peer.send(*(PubAck(m.packet_id, 0x87) for m in messages))
        with pytest.raises(MqttPublishError, match=r"'t/kept'.*0x87"):
            await kept
        with pytest.raises(MqttPublishError, match=r"'t/awaited'.*0x87"):
            await sending
        await eventually(lambda: len(client._outbox) == 0, "the outbox to empty")
        gc.collect()  # the dropped future is gone: it would complain now if it were to
        await asyncio.sleep(0)
        assert client.connected  # a refusal is the message's business, not the connection's
        assert unhandled == []
    finally:
        loop.set_exception_handler(None)
