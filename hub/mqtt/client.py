"""The hub's MQTT 5.0 client: reconnects by itself, delivers in batches, acks when told to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import struct
from collections.abc import Callable, Iterable, Sequence

from hub import metrics
from hub.mqtt.codec import DEFAULT_MAX_PACKET_SIZE, encode, encode_publish
from hub.mqtt.connection import BrokerLimits, Connection, Endpoint
from hub.mqtt.errors import MqttConnectError, MqttError, MqttExpiredError, subscribe_reason
from hub.mqtt.outbox import Outbox, expiry_properties
from hub.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Message,
    Packet,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from hub.mqtt.packets import Property as P

log = logging.getLogger("hub.mqtt")

OnMessages = Callable[[list[Message]], None]

MAX_INFLIGHT_OUT = 65000  # packet ids are 16 bits; keep some for SUBSCRIBE and UNSUBSCRIBE
_PUBACK = 0x4002_0000  # PUBACK's fixed header; the packet id fills the low 16 bits
_IMPLEMENTATION_SPECIFIC_ERROR = 0x83
_PACKET_ID_NOT_FOUND = 0x92
MAX_EXPIRY = 0xFFFF_FFFF  # seconds: the Message Expiry Interval is a four-byte integer


def _check_topic(topic: str) -> None:
    # The broker drops the whole connection on an invalid topic; a QoS 1 message would then be
    # resent on every reconnect, so refuse it here instead.
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"not a valid topic to publish to: {topic!r}")


def _deadline(expiry: float | None) -> float | None:
    """The loop time at which a message published now with `expiry` seconds expires."""
    if expiry is None:
        return None
    if not math.isfinite(expiry) or expiry > MAX_EXPIRY:
        raise ValueError(f"expiry must be a number of seconds up to {MAX_EXPIRY}, not {expiry}")
    return asyncio.get_running_loop().time() + expiry


class MqttClient:
    """An MQTT 5.0 client of one broker that stays connected until stopped.

    Messages arrive in batches: `on_messages` is called on the event loop once for everything
    one read from the socket completed, so it must not block (hand the batch to a queue). QoS 1
    messages are acknowledged after it returns (even if it raised: the error is logged), or,
    with `auto_ack=False`, only when the consumer calls `ack`, so that the broker redelivers
    what was not made durable. Our Receive Maximum bounds how many it sends unacknowledged.
    A client runs once: after `stop`, make a new one (the broker keeps the session).
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        clean_start: bool = False,
        session_expiry: int = 7 * 86400,
        keepalive: float = 30,
        receive_maximum: int = 65535,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_messages: OnMessages | None = None,
        auto_ack: bool = True,
        backoff_min: float = 0.1,
        backoff_max: float = 10.0,
        connect_timeout: float = 5.0,
        max_inflight_out: int = 1000,
        will: Will | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        ssl_context: ssl.SSLContext | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        """`gate`: asked before each connection and each publish; while it answers False the
        client neither connects nor sends (a hub of a pair that is not the active one)."""
        self._gate = gate
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be in 1..65535, not {receive_maximum}")
        if not 1 <= max_inflight_out <= MAX_INFLIGHT_OUT:
            raise ValueError(f"max_inflight_out must be in 1..{MAX_INFLIGHT_OUT}")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("backoff needs 0 < backoff_min <= backoff_max")
        self.endpoint = Endpoint.from_url(url)
        self.client_id = client_id
        self.on_messages = on_messages
        # Called with the number of connections accepted so far (1: the first) once a
        # connection is up and subscribed, e.g. to publish retained state again.
        self.on_connected: Callable[[int], None] | None = None
        self.auto_ack = auto_ack
        self.keepalive = keepalive
        self.dropped = 0  # QoS 0 messages published while not connected
        self.refused = 0  # QoS 2 messages from the broker, which we do not take
        self._clean_start = clean_start
        self._backoff = (backoff_min, backoff_max)
        self._connect_timeout = connect_timeout
        self._max_packet_size = max_packet_size
        self._ssl: ssl.SSLContext | None = None
        if self.endpoint.tls:
            self._ssl = ssl_context or ssl.create_default_context()
        self._subscriptions: dict[str, int] = {}
        self._refused_subscriptions: dict[str, str] = {}  # topic filter -> reason in words
        self._limits: BrokerLimits | None = None
        for topic_filter, qos in subscriptions:
            self._subscriptions[topic_filter] = _subscription_qos(qos)
        username = username if username is not None else self.endpoint.username
        password = password if password is not None else self.endpoint.password
        self._connect_packet = encode(
            Connect(
                client_id=client_id,
                clean_start=clean_start,
                keepalive=min(math.ceil(keepalive), 0xFFFF),
                username=username,
                password=password.encode() if password is not None else None,
                will=will,
                properties={
                    P.SESSION_EXPIRY_INTERVAL: session_expiry,
                    P.RECEIVE_MAXIMUM: receive_maximum,
                    P.MAXIMUM_PACKET_SIZE: max_packet_size,
                },
            )
        )
        self._conn: Connection | None = None
        self._generation = 0
        self._accepted = 0  # connections the broker accepted so far
        self._ready = asyncio.Event()  # connected and subscribed
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._connecting: asyncio.Timeout | None = None
        self._read_paused = False
        self._outbox = Outbox(max_inflight_out)
        self._requests: dict[int, tuple[Connection, asyncio.Future[tuple[int, ...]]]] = {}

    # --- public -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and our subscriptions are in place."""
        return self._ready.is_set()

    @property
    def refused_subscriptions(self) -> dict[str, str]:
        """The topic filters the broker refused in its latest SUBACK for each, with the reason
        in words ("0x87 not authorized"); a filter leaves when a later SUBACK grants it or
        on `unsubscribe`. A copy: changing it changes nothing."""
        return dict(self._refused_subscriptions)

    @property
    def broker_limits(self) -> BrokerLimits | None:
        """What the broker said in its latest accepting CONNACK about what it takes from us
        (Maximum QoS, Retain Available, Receive Maximum, Maximum Packet Size); None until a
        broker first accepted us. Publishing keeps within them (see `publish`)."""
        return self._limits

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (like wait_for)
        """Wait until connected and subscribed; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def run(self) -> None:
        """Stay connected, reconnecting with exponential backoff and full jitter, until stop()."""
        if self._running:
            raise RuntimeError("MqttClient.run() is already running")
        self._running = True
        self._done.clear()
        attempt = 0
        try:
            while not self._stopping.is_set():
                loop = asyncio.get_running_loop()
                began = loop.time()
                try:
                    await self._session()
                except* (OSError, TimeoutError, MqttError) as group:
                    if not self._stopping.is_set():
                        for exc in group.exceptions:
                            log.warning("MQTT %s: %r", self.endpoint.host, exc)
                if self._stopping.is_set():
                    break
                # A connection that held for a while resets the backoff; one that is dropped
                # right after connecting (a duplicate client id, say) keeps it growing.
                if loop.time() - began >= self._backoff[1]:
                    attempt = 0
                low, high = self._backoff
                delay = random.uniform(0, min(high, low * 2 ** min(attempt, 30)))
                attempt += 1
                log.info("MQTT reconnecting in %.2f s", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
        finally:
            self._running = False
            self._outbox.fail_all(MqttError("the MQTT client stopped before the broker acked"))
            self._done.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Give QoS 1 messages in flight up to `grace` s, DISCONNECT (session kept), end run()."""
        if len(self._outbox) and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._outbox.idle.wait()
        self._stopping.set()
        if self._connecting is not None:
            self._connecting.reschedule(asyncio.get_running_loop().time())
        conn = self._conn
        if conn is not None:
            if conn.accepted and conn.is_open:
                conn.write(encode(Disconnect()))  # reason 0: the broker keeps our session
                # The broker closes once it has read all we sent (our PUBACKs too). Closing
                # first can lose those when a new connection takes the session over at once.
                await asyncio.wait([conn.closed], timeout=self._connect_timeout)
            conn.close()
        if self._running:
            await self._done.wait()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        expiry: float | None = None,
    ) -> None:
        """Send a message. QoS 0: now if connected, else dropped and counted in `dropped`.

        QoS 1: kept until the broker acknowledges it, resent (DUP=1, same packet id) after a
        reconnect; returns on PUBACK and raises MqttPublishError if the broker refused it. At
        most `max_inflight_out` are in flight; beyond that, publish waits. Cancelling the wait
        does not withdraw the message.

        `expiry` (seconds) sets the message's Message Expiry Interval: the broker drops it
        if it cannot deliver it in time. Each send carries the whole seconds left, rounded up;
        a message whose time is up before it is sent (or sent again after a reconnect) is not
        sent, and publish raises MqttExpiredError.

        Within the broker's limits (`broker_limits`): to a broker that takes QoS 0 only, QoS 1
        goes as QoS 0 and publish returns once it is written (no PUBACK: delivery is not
        confirmed); to one that keeps no retained messages, without the retain flag. Each
        is logged as a warning once per connection.
        """
        _check_topic(topic)
        self._check_open()
        deadline = _deadline(expiry)
        if qos == 0:
            await self._publish_qos_0(topic, payload, retain, deadline)
            return
        if qos != 1:
            raise ValueError(f"QoS must be 0 or 1, not {qos}")
        await self._outbox.put(topic, payload, retain, deadline)

    def publish_nowait(
        self, topic: str, payload: bytes, retain: bool = False, *, expiry: float | None = None
    ) -> asyncio.Future[None]:
        """A QoS 1 `publish` that does not wait: the message is written before this returns
        (connected, with room in the broker's window), and the future settles on its PUBACK
        (or once written, to a broker that takes QoS 0 only). Raises what `publish` would
        raise before sending; a refusal (MqttPublishError) or an expiry (MqttExpiredError)
        comes in the future. A future that nobody awaits does not log "exception was never
        retrieved": its failure is logged at debug level only."""
        _check_topic(topic)
        self._check_open()
        return self._outbox.put_nowait(topic, payload, retain, _deadline(expiry))

    def _check_open(self) -> None:
        if self._stopping.is_set():
            raise MqttError("the MQTT client is stopped")
        if self._gate is not None and not self._gate():
            raise MqttError("this hub is not the active one: nothing is sent")

    async def _publish_qos_0(
        self, topic: str, payload: bytes, retain: bool, deadline: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        if deadline is not None and deadline <= loop.time():
            raise MqttExpiredError(topic, "before it was sent")
        properties = expiry_properties(deadline, loop.time())
        packet = encode_publish(topic, payload, retain=retain, properties=properties)
        self._outbox.check_size(packet)
        conn = self._conn
        if conn is not None and conn.accepted:
            await conn.drain()
            if conn.is_open:
                _, retain_now = conn.publish_flags(topic, 0, retain)
                if deadline is not None or retain_now != retain:
                    now = loop.time()  # drain() may have taken a while: the seconds left now
                    if deadline is not None and deadline <= now:
                        raise MqttExpiredError(topic, "before it was sent")
                    properties = expiry_properties(deadline, now)
                    packet = encode_publish(
                        topic, payload, retain=retain_now, properties=properties
                    )
                conn.write(packet)
                return
        self.dropped += 1
        metrics.MQTT_DROPPED.inc()

    def ack(self, messages: Iterable[Message]) -> int:
        """Acknowledge received QoS 1 messages in one write; returns how many PUBACKs were sent.

        Messages from an earlier connection (see `Message.generation`), QoS 0 messages and
        messages already acknowledged are skipped: the broker redelivers the first kind.
        """
        conn = self._conn
        if conn is None or not conn.is_open:
            return 0
        generation, unacked = conn.generation, conn.unacked
        ids = []
        for m in messages:
            if m.generation == generation and m.qos and unacked.get(m.packet_id) is m:
                del unacked[m.packet_id]
                ids.append(_PUBACK | m.packet_id)
        if ids:
            conn.write(struct.pack(f">{len(ids)}I", *ids))
        return len(ids)

    def add_subscription(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe at every connect from now on (before `run`, or for the next connect)."""
        self._subscriptions[topic_filter] = _subscription_qos(qos)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect. A refusal raises
        MqttError and is kept in `refused_subscriptions` (it is asked for again after a
        reconnect)."""
        self._subscriptions[topic_filter] = _subscription_qos(qos)
        conn = self._conn
        if conn is not None and conn.accepted:
            sub = Subscription(topic_filter, min(qos, conn.limits.max_qos))
            (code,) = await self._request(conn, lambda pid: Subscribe(pid, (sub,)))
            if not self._on_suback_code(sub, code):
                reason = self._refused_subscriptions[topic_filter]
                raise MqttError(f"subscription to {topic_filter!r} refused: {reason}")

    async def unsubscribe(self, topic_filter: str) -> None:
        """Unsubscribe, now if connected, and forget the subscription for reconnects."""
        self._subscriptions.pop(topic_filter, None)
        self._refused_subscriptions.pop(topic_filter, None)
        conn = self._conn
        if conn is not None and conn.accepted:
            await self._request(conn, lambda pid: Unsubscribe(pid, (topic_filter,)))

    def pause_reading(self) -> None:
        """Stop reading from the broker (back-pressure: it queues for us meanwhile)."""
        self._read_paused = True
        if self._conn is not None:
            self._conn.set_read_paused(True)

    def resume_reading(self) -> None:
        """Undo `pause_reading`."""
        self._read_paused = False
        if self._conn is not None:
            self._conn.set_read_paused(False)

    # --- one connection -----------------------------------------------------------------

    async def _session(self) -> None:
        if self._gate is not None and not self._gate():
            # The fixed client id would take the session from the active hub.
            raise MqttError("this hub is not the active one: not connecting")
        loop = asyncio.get_running_loop()
        self._generation += 1
        conn = Connection(
            self._generation,
            self._on_packets,
            self._on_lost,
            max_packet_size=self._max_packet_size,
            read_paused=self._read_paused,
        )
        conn.keepalive = self.keepalive
        self._conn = conn
        ep = self.endpoint
        try:
            async with asyncio.timeout(self._connect_timeout) as self._connecting:
                await loop.create_connection(
                    lambda: conn,
                    ep.host,
                    ep.port,
                    ssl=self._ssl,
                    server_hostname=ep.host if self._ssl else None,
                )
                conn.write(self._connect_packet)
                connack = await conn.connack
            self._connecting = None
            if connack is None:
                raise MqttError("the broker closed the connection before CONNACK")
            if connack.reason_code >= 0x80:
                reason = connack.properties.get(P.REASON_STRING, "")
                raise MqttConnectError(connack.reason_code, str(reason))
            async with asyncio.TaskGroup() as tg:
                pinger = tg.create_task(self._keepalive(conn), name="mqtt-keepalive")
                try:
                    await self._subscribe_all(conn)
                    if conn.is_open:
                        self._ready.set()
                        if self.on_connected is not None:
                            try:
                                self.on_connected(self._accepted)
                            except Exception:
                                log.exception("MQTT on_connected failed")
                    await conn.closed
                finally:
                    pinger.cancel()
        finally:
            self._connecting = None
            conn.abort()
            self._detach(conn, None)

    async def _subscribe_all(self, conn: Connection) -> None:
        max_qos = conn.limits.max_qos
        subs = tuple(Subscription(f, min(qos, max_qos)) for f, qos in self._subscriptions.items())
        if not subs:
            return
        lowered = [f for f, qos in self._subscriptions.items() if qos > max_qos]
        if lowered:
            log.warning(
                "MQTT broker takes QoS %d at most: subscribing to %s at QoS %d (messages for "
                "us are not acknowledged, and are lost if the connection drops on their way)",
                max_qos,
                ", ".join(map(repr, lowered)),
                max_qos,
            )
        codes = await self._request(conn, lambda pid: Subscribe(pid, subs))
        for sub, code in zip(subs, codes, strict=False):
            self._on_suback_code(sub, code)

    def _on_suback_code(self, sub: Subscription, code: int) -> bool:
        """Note what the broker answered to one subscription; whether it granted it."""
        topic_filter = sub.topic_filter
        if code >= 0x80:
            reason = subscribe_reason(code)
            self._refused_subscriptions[topic_filter] = reason
            log.error("MQTT subscription to %r refused: %s", topic_filter, reason)
            return False
        if self._refused_subscriptions.pop(topic_filter, None) is not None:
            log.info("MQTT subscription to %r granted (refused before)", topic_filter)
        if code < sub.qos:
            log.warning("MQTT subscription to %r granted QoS %d only", topic_filter, code)
        return True

    async def _request(
        self, conn: Connection, build: Callable[[int], Subscribe | Unsubscribe]
    ) -> tuple[int, ...]:
        packet_id = self._outbox.reserve_id()
        future: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._requests[packet_id] = (conn, future)
        try:
            conn.write(encode(build(packet_id)))
            async with asyncio.timeout(self._connect_timeout):
                return await future
        finally:
            self._requests.pop(packet_id, None)
            self._outbox.release_id(packet_id)

    async def _keepalive(self, conn: Connection) -> None:
        interval = conn.keepalive
        if interval <= 0:
            return
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while conn.is_open:
            await asyncio.sleep(interval / 2)
            now = loop.time()
            if conn.read_paused:
                conn.last_rx = now  # we are not reading: the silence is ours
            if now - conn.last_rx > 1.5 * interval:
                log.warning(
                    "MQTT broker silent for %.1f s: dropping the connection", interval * 1.5
                )
                conn.abort()
                return
            if now - last_ping >= interval * 0.75:  # every other tick: once per interval
                conn.write(b"\xc0\x00")  # PINGREQ
                last_ping = now

    # --- callbacks from the connection ----------------------------------------------------

    def _on_packets(self, conn: Connection, packets: list[Packet]) -> None:
        messages: list[Message] = []
        qos1: list[Message] = []
        unacked = conn.unacked
        for p in packets:
            if type(p) is Message:
                if p.qos:
                    if p.qos != 1:
                        self._refuse(conn, p)
                        continue
                    unacked[p.packet_id] = p
                    qos1.append(p)
                messages.append(p)
            else:
                self._on_control(conn, p)
        if not messages:
            return
        if self.on_messages is not None:
            try:
                self.on_messages(messages)
            except Exception:
                log.exception("MQTT on_messages failed on a batch of %d messages", len(messages))
        if qos1 and (self.auto_ack or self.on_messages is None):
            self.ack(qos1)

    def _refuse(self, conn: Connection, message: Message) -> None:
        # We subscribe with QoS 1 at most, so a QoS 2 message is the broker's mistake. Refusing
        # it in PUBREC ends its exchange, where dropping the connection would bring it back.
        self.refused += 1
        metrics.MQTT_REFUSED.inc()
        log.error("MQTT QoS 2 message on %r refused: this client takes QoS 0 and 1", message.topic)
        conn.write(encode(PubRec(message.packet_id, _IMPLEMENTATION_SPECIFIC_ERROR)))

    def _on_control(self, conn: Connection, packet: Packet) -> None:
        match packet:
            case PubRec() | PubComp():  # before PubAck, their base class
                self._unexpected(conn, packet)
            case PubRel():
                conn.write(encode(PubComp(packet.packet_id, _PACKET_ID_NOT_FOUND)))
            case PubAck():
                self._outbox.on_puback(conn, packet)
            case ConnAck():
                self._on_connack(conn, packet)
            case SubAck() | UnsubAck():
                _, future = self._requests.pop(packet.packet_id, (None, None))
                if future is not None and not future.done():
                    future.set_result(packet.reason_codes)
            case PingResp():
                pass  # data_received already noted that the broker is alive
            case Disconnect():
                reason = packet.properties.get(P.REASON_STRING, "")
                log.warning("MQTT broker disconnects us: 0x%02X %s", packet.reason_code, reason)
            case _:
                self._unexpected(conn, packet)

    def _unexpected(self, conn: Connection, packet: Packet) -> None:
        log.error(
            "MQTT broker sent an unexpected %s: dropping the connection", type(packet).__name__
        )
        conn.close()

    def _on_connack(self, conn: Connection, connack: ConnAck) -> None:
        if conn.connack.done():
            log.error("MQTT broker sent a second CONNACK: dropping the connection")
            conn.close()
            return
        if connack.reason_code < 0x80:
            props = connack.properties
            limits = BrokerLimits.from_connack(connack)
            conn.limits = self._limits = limits
            conn.window = limits.receive_maximum
            server_keepalive = props.get(P.SERVER_KEEP_ALIVE)
            if isinstance(server_keepalive, int):
                conn.keepalive = server_keepalive
            self._outbox.max_packet_size = limits.max_packet_size or 0
            conn.accepted = True
            if self._accepted:
                metrics.MQTT_RECONNECTS.inc()
            metrics.MQTT_CONNECTED.set(1)
            log.info(
                "MQTT connected to %s:%d as %s (session present: %s)",
                self.endpoint.host,
                self.endpoint.port,
                self.client_id,
                connack.session_present,
            )
            if self._accepted and not connack.session_present and not self._clean_start:
                log.warning("MQTT broker lost our session: messages queued for us are gone")
            self._accepted += 1
            # Everything of ours not acknowledged goes again, first, in its original order.
            self._outbox.attach(conn)
        conn.connack.set_result(connack)

    def _on_lost(self, conn: Connection, exc: Exception | None) -> None:
        for packet_id, (owner, future) in list(self._requests.items()):
            if owner is conn:
                del self._requests[packet_id]
                if not future.done():
                    future.set_exception(MqttError("connection lost before the broker answered"))
        self._detach(conn, exc)

    def _detach(self, conn: Connection, exc: Exception | None) -> None:
        """Forget `conn` as the current connection (from whichever notices its end first)."""
        self._outbox.detach(conn)
        if self._conn is not conn:
            return
        self._conn = None
        self._ready.clear()
        if conn.accepted:
            metrics.MQTT_CONNECTED.set(0)
            if self._stopping.is_set():
                log.info("MQTT disconnected from %s", self.endpoint.host)
            else:
                log.warning("MQTT connection to %s lost: %s", self.endpoint.host, exc or "closed")


def _subscription_qos(qos: int) -> int:
    if qos not in (0, 1):
        raise ValueError(f"subscriptions take QoS 0 or 1, not {qos}")
    return qos
