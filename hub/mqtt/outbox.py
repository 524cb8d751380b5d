"""Our QoS 1 messages until the broker acknowledges them: packet ids, limits and resends."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from hub.mqtt.codec import encode_publish
from hub.mqtt.connection import Connection
from hub.mqtt.errors import MqttError, MqttPublishError
from hub.mqtt.packets import PubAck

log = logging.getLogger("hub.mqtt")


class Slots:
    """A counting semaphore that can also be taken without waiting, first come first served."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for one before us."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting in line for one."""
        if self.try_take():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as we were cancelled: the next in line gets it
            raise

    def give(self) -> None:
        """Return a slot: to the first in line that still waits, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


@dataclass(slots=True)
class _Outgoing:
    topic: str
    packet: bytes  # encoded with DUP=0
    future: asyncio.Future[None]
    sent: bool = False  # sent at least once: a resend carries DUP=1


class Outbox:
    """QoS 1 messages in flight, in publishing order, across connections.

    At most `limit` are held (`put` waits for room); on each connection at most the broker's
    Receive Maximum are sent unacknowledged, the rest wait in that connection's queue. It also
    hands out the packet ids of SUBSCRIBE and UNSUBSCRIBE, which share the same space.
    """

    def __init__(self, limit: int) -> None:
        self.max_packet_size = 0  # the broker's limit; 0: none
        self.conn: Connection | None = None  # accepted by the broker, open
        self.idle = asyncio.Event()  # nothing in flight
        self.idle.set()
        self._inflight: dict[int, _Outgoing] = {}
        self._reserved: set[int] = set()
        self._slots = Slots(limit)
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._inflight)

    async def put(self, topic: str, payload: bytes, retain: bool) -> None:
        """Hold a message until acked, send it when the window allows, wait for the PUBACK."""
        await self._slots.take()
        await self._hold(topic, payload, retain)

    def put_nowait(self, topic: str, payload: bytes, retain: bool) -> asyncio.Future[None]:
        """`put` without waiting: the message is held (and written, if the window allows)
        before this returns, unless the outbox is full, when a task waits for room in line.
        The future settles on the PUBACK. Cancelling it does not withdraw a message already
        held; cancelling the task of one still waiting for room does."""
        if self._slots.try_take():
            return self._hold(topic, payload, retain)
        return asyncio.ensure_future(self.put(topic, payload, retain))

    def _hold(self, topic: str, payload: bytes, retain: bool) -> asyncio.Future[None]:
        """Hold a message for which a slot was taken; the future settles on its PUBACK."""
        try:
            packet_id = self.new_packet_id()
            packet = encode_publish(topic, payload, qos=1, retain=retain, packet_id=packet_id)
            self.check_size(packet)
        except BaseException:
            self._slots.give()
            raise
        future = asyncio.get_running_loop().create_future()
        self._inflight[packet_id] = _Outgoing(topic, packet, future)
        self.idle.clear()
        # The connection of the moment: waiting for a slot may have outlasted the one before.
        if self.conn is not None:
            self.conn.queue.append(packet_id)
            self.pump(self.conn)
        return future

    def attach(self, conn: Connection) -> None:
        """Send on a newly accepted connection, starting with everything in flight, in order."""
        self.conn = conn
        conn.queue = deque(self._inflight)
        self.pump(conn)

    def detach(self, conn: Connection) -> None:
        """Stop sending on `conn`; what it did not get acked goes again on the next one."""
        if self.conn is conn:
            self.conn = None

    def pump(self, conn: Connection) -> None:
        """Send queued messages while the broker's receive window has room."""
        if not conn.accepted or not conn.is_open:
            return
        out = []
        queue, inflight = conn.queue, self._inflight
        while queue and conn.sent < conn.window:
            entry = inflight.get(queue.popleft())
            if entry is None:
                continue
            packet = entry.packet
            out.append(bytes((packet[0] | 0x08,)) + packet[1:] if entry.sent else packet)
            entry.sent = True
            conn.sent += 1
        if out:
            conn.write(b"".join(out))

    def on_puback(self, conn: Connection, puback: PubAck) -> None:
        """Settle the message that `puback` acknowledges, and send the next one."""
        entry = self._inflight.pop(puback.packet_id, None)
        if entry is None:
            log.debug("MQTT PUBACK for unknown packet id %d", puback.packet_id)
            return
        conn.sent = max(0, conn.sent - 1)
        self._slots.give()
        if not entry.future.done():
            if puback.reason_code >= 0x80:
                entry.future.set_exception(MqttPublishError(entry.topic, puback.reason_code))
            else:
                entry.future.set_result(None)
        if not self._inflight:
            self.idle.set()
        self.pump(conn)

    def fail_all(self, exc: MqttError) -> None:
        """Give up on everything in flight (the client stopped)."""
        for entry in self._inflight.values():
            if not entry.future.done():
                entry.future.set_exception(exc)
            self._slots.give()
        self._inflight.clear()
        self.idle.set()

    def new_packet_id(self) -> int:
        """A packet id not in use by a message in flight or a reserved one."""
        for _ in range(0xFFFF):
            packet_id = self._next_id
            self._next_id = packet_id % 0xFFFF + 1
            if packet_id not in self._inflight and packet_id not in self._reserved:
                return packet_id
        raise MqttError("no free MQTT packet id")

    def reserve_id(self) -> int:
        """A packet id for a SUBSCRIBE or UNSUBSCRIBE, until `release_id`."""
        packet_id = self.new_packet_id()
        self._reserved.add(packet_id)
        return packet_id

    def release_id(self, packet_id: int) -> None:
        """Return a reserved packet id."""
        self._reserved.discard(packet_id)

    def check_size(self, packet: bytes) -> None:
        """Refuse a packet larger than the broker takes (it would drop the connection)."""
        if self.max_packet_size and len(packet) > self.max_packet_size:
            raise MqttError(
                f"message of {len(packet)} bytes is over the broker's limit of "
                f"{self.max_packet_size}"
            )
