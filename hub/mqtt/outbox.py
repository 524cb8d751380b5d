"""Our QoS 1 messages until the broker acknowledges them: packet ids, limits and resends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass

from hub.mqtt.codec import encode_publish
from hub.mqtt.connection import Connection
from hub.mqtt.errors import MqttError, MqttExpiredError, MqttPublishError
from hub.mqtt.packets import NO_PROPERTIES, Properties, PubAck
from hub.mqtt.packets import Property as P

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


def expiry_properties(deadline: float | None, now: float) -> Properties:
    """The Message Expiry Interval of a message that expires at loop time `deadline`: the
    seconds left, rounded up, at least 1 (MQTT counts whole seconds)."""
    if deadline is None:
        return NO_PROPERTIES
    return {P.MESSAGE_EXPIRY_INTERVAL: max(1, math.ceil(deadline - now))}


@dataclass(slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    retain: bool
    packet_id: int
    packet: bytes  # QoS 1, DUP=0, as published (for a message with a deadline, as first sent)
    future: asyncio.Future[None]
    deadline: float | None = None  # loop time at which the message expires
    timer: asyncio.TimerHandle | None = None  # fires at the deadline
    sent: bool = False  # sent at least once: a resend carries DUP=1
    sent_on: Connection | None = None  # the connection it was last sent on


def _forget_exception(future: asyncio.Future[None]) -> None:
    # Marks a failure as retrieved, so that a future nobody awaits does not log "exception was
    # never retrieved"; whoever awaits it still gets the exception.
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.debug("MQTT publish_nowait: %s", exc)


class Outbox:
    """QoS 1 messages in flight, in publishing order, across connections.

    At most `limit` are held (`put` waits for room); on each connection at most the broker's
    Receive Maximum are sent unacknowledged, the rest wait in that connection's queue. It also
    hands out the packet ids of SUBSCRIBE and UNSUBSCRIBE, which share the same space.

    A message with a deadline (its Message Expiry Interval) carries the seconds left each time
    it is sent. One whose deadline passes while it is not with the broker (waiting for room,
    for a connection, or sent on a connection since lost) is dropped, its future failed with
    MqttExpiredError. A broker that takes QoS 0 only gets QoS 0: the future settles once the
    message is written.
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

    async def put(
        self, topic: str, payload: bytes, retain: bool, deadline: float | None = None
    ) -> None:
        """Hold a message until acked, send it when the window allows, wait for the PUBACK."""
        await self._slots.take()
        await self._hold(topic, payload, retain, deadline)

    def put_nowait(
        self, topic: str, payload: bytes, retain: bool, deadline: float | None = None
    ) -> asyncio.Future[None]:
        """`put` without waiting: the message is held (and written, if the window allows)
        before this returns, unless the outbox is full, when a task waits for room in line.
        The future settles on the PUBACK. Cancelling it does not withdraw a message already
        held; cancelling the task of one still waiting for room does. A failure is marked as
        retrieved, so a future that nobody awaits does not log "exception never retrieved"."""
        future: asyncio.Future[None]
        if self._slots.try_take():
            future = self._hold(topic, payload, retain, deadline)
        else:
            future = asyncio.ensure_future(self.put(topic, payload, retain, deadline))
        future.add_done_callback(_forget_exception)
        return future

    def _hold(
        self, topic: str, payload: bytes, retain: bool, deadline: float | None
    ) -> asyncio.Future[None]:
        """Hold a message for which a slot was taken; the future settles on its PUBACK."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            now = loop.time()
            if deadline is not None and deadline <= now:
                self._slots.give()
                future.set_exception(MqttExpiredError(topic, "before it was sent"))
                return future
            packet_id = self.new_packet_id()
            packet = encode_publish(
                topic,
                payload,
                qos=1,
                retain=retain,
                packet_id=packet_id,
                properties=expiry_properties(deadline, now),
            )
            self.check_size(packet)
        except BaseException:
            self._slots.give()
            raise
        entry = _Outgoing(topic, payload, retain, packet_id, packet, future, deadline)
        if deadline is not None:
            entry.timer = loop.call_at(deadline, self._on_deadline, entry)
        self._inflight[packet_id] = entry
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
        written: list[_Outgoing] = []  # sent at QoS 0: settled once written
        queue, inflight = conn.queue, self._inflight
        now = conn.loop.time()
        limited = conn.limits.max_qos < 1 or not conn.limits.retain_available
        qos, retain = 1, False
        while queue and conn.sent < conn.window:
            entry = inflight.get(queue.popleft())
            if entry is None:
                continue
            if entry.deadline is not None and entry.deadline <= now:
                self._expire(entry)
                continue
            if limited:
                qos, retain = conn.publish_flags(entry.topic, 1, entry.retain)
            else:
                retain = entry.retain
            if qos == 0:
                properties = expiry_properties(entry.deadline, now)
                out.append(
                    encode_publish(entry.topic, entry.payload, retain=retain, properties=properties)
                )
                written.append(entry)
                continue
            if entry.deadline is None and retain == entry.retain:
                packet = entry.packet
                out.append(bytes((packet[0] | 0x08,)) + packet[1:] if entry.sent else packet)
            else:
                out.append(
                    encode_publish(
                        entry.topic,
                        entry.payload,
                        qos=1,
                        retain=retain,
                        dup=entry.sent,
                        packet_id=entry.packet_id,
                        properties=expiry_properties(entry.deadline, now),
                    )
                )
            entry.sent = True
            entry.sent_on = conn
            conn.sent += 1
        if out:
            conn.write(b"".join(out))
        for entry in written:
            self._release(entry)
            if not entry.future.done():
                entry.future.set_result(None)

    def on_puback(self, conn: Connection, puback: PubAck) -> None:
        """Settle the message that `puback` acknowledges, and send the next one."""
        entry = self._inflight.get(puback.packet_id)
        if entry is None:
            log.debug("MQTT PUBACK for unknown packet id %d", puback.packet_id)
            return
        conn.sent = max(0, conn.sent - 1)
        self._release(entry)
        if not entry.future.done():
            if puback.reason_code >= 0x80:
                entry.future.set_exception(MqttPublishError(entry.topic, puback.reason_code))
            else:
                entry.future.set_result(None)
        self.pump(conn)

    def _release(self, entry: _Outgoing) -> None:
        """Stop holding a message: its packet id and its slot are free again."""
        del self._inflight[entry.packet_id]
        if entry.timer is not None:
            entry.timer.cancel()
        self._slots.give()
        if not self._inflight:
            self.idle.set()

    def _expire(self, entry: _Outgoing) -> None:
        self._release(entry)
        if entry.sent:
            detail = "before the broker acknowledged it (not sent again)"
        else:
            detail = "before it was sent"
        log.warning("MQTT message on %r expired %s", entry.topic, detail)
        if not entry.future.done():
            entry.future.set_exception(MqttExpiredError(entry.topic, detail))

    def _on_deadline(self, entry: _Outgoing) -> None:
        """A message's deadline came: drop it unless it is with the broker on this connection
        (then its PUBACK settles it; the broker drops it if it cannot deliver it in time)."""
        entry.timer = None
        if self._inflight.get(entry.packet_id) is not entry:
            return
        conn = self.conn
        if conn is not None and entry.sent_on is conn and conn.is_open:
            return
        if conn is not None:
            with contextlib.suppress(ValueError):
                conn.queue.remove(entry.packet_id)  # its id may be reused before the queue's turn
        self._expire(entry)

    def fail_all(self, exc: MqttError) -> None:
        """Give up on everything in flight (the client stopped)."""
        for entry in list(self._inflight.values()):
            self._release(entry)
            if not entry.future.done():
                entry.future.set_exception(exc)

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
