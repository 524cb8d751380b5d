"""What a real broker does not do on demand: QoS 2 sent to us, a small receive window, a
PUBACK that refuses, garbage on the wire. A scripted broker on a local socket plays it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import pytest

from hub.mqtt import (
    ConnAck,
    Connect,
    Disconnect,
    Message,
    MqttPublishError,
    Packet,
    Parser,
    PingReq,
    Property,
    PubAck,
    PubRec,
    SubAck,
    Subscribe,
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
