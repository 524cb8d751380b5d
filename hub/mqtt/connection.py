"""One network connection to the broker, as an asyncio protocol, and its per-connection state."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote, urlsplit

from hub.mqtt.codec import DEFAULT_MAX_PACKET_SIZE, encode
from hub.mqtt.errors import MqttProtocolError
from hub.mqtt.packets import ConnAck, Disconnect, Message, Packet, Property
from hub.mqtt.parser import Parser

log = logging.getLogger("hub.mqtt")

MALFORMED_PACKET = 0x81


@dataclass(slots=True, frozen=True)
class Endpoint:
    """Where the broker is, from an `mqtt://` or `mqtts://` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Parse `mqtt[s]://[user[:password]@]host[:port]`."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(slots=True, frozen=True)
class BrokerLimits:
    """What the broker said in CONNACK about what it takes from us (MQTT 5.0, 3.2.2.3).

    The defaults are MQTT's when the broker leaves a property out: QoS 2, retained messages
    kept, 65535 QoS 1 messages unacknowledged at once, and no limit on a packet's size.
    """

    max_qos: int = 2
    retain_available: bool = True
    receive_maximum: int = 65535
    max_packet_size: int | None = None  # bytes; None: no limit

    @classmethod
    def from_connack(cls, connack: ConnAck) -> BrokerLimits:
        """The limits of a CONNACK; a property of the wrong type counts as absent."""
        props = connack.properties

        def integer(ident: int, default: int) -> int:
            value = props.get(ident, default)
            return value if isinstance(value, int) else default

        max_packet = integer(Property.MAXIMUM_PACKET_SIZE, 0)
        return cls(
            max_qos=integer(Property.MAXIMUM_QOS, 2),
            retain_available=integer(Property.RETAIN_AVAILABLE, 1) != 0,
            receive_maximum=integer(Property.RECEIVE_MAXIMUM, 65535),
            max_packet_size=max_packet or None,
        )


class Connection(asyncio.Protocol):
    """Parses what arrives into packets for `on_packets`; reports the end to `on_lost`.

    It also holds what MQTT ties to one network connection: whether the broker accepted it,
    the broker's receive window for our QoS 1 messages, and the QoS 1 messages received on
    it and not acknowledged yet (their packet ids mean nothing on another connection).
    """

    def __init__(
        self,
        generation: int,
        on_packets: Callable[[Connection, list[Packet]], None],
        on_lost: Callable[[Connection, Exception | None], None],
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        read_paused: bool = False,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.generation = generation
        self.parser = Parser(max_packet_size, generation)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[ConnAck | None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.accepted = False  # CONNACK with success
        self.keepalive: float = 0  # seconds; the broker may override ours in CONNACK
        self.last_rx = self.loop.time()
        self.read_paused = read_paused
        # Our QoS 1 messages: the broker's Receive Maximum, how many of ours it holds now,
        # and the packet ids waiting for room in that window.
        self.window = 65535
        self.sent = 0
        self.queue: deque[int] = deque()
        self.limits = BrokerLimits()  # from CONNACK
        self._warned_qos = False  # each warning once per connection
        self._warned_retain = False
        self.unacked: dict[int, Message] = {}  # QoS 1 messages received, by packet id
        self._on_packets = on_packets
        self._on_lost = on_lost
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.read_paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        try:
            packets = self.parser.feed(data)
        except MqttProtocolError as exc:
            self._protocol_error(exc)
            return
        self._on_packets(self, packets)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_writer()
        self._on_lost(self, exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def _protocol_error(self, exc: MqttProtocolError) -> None:
        log.error("MQTT protocol error from the broker, dropping the connection: %s", exc)
        self.write(encode(Disconnect(MALFORMED_PACKET)))
        self.close()

    # for the client

    @property
    def is_open(self) -> bool:
        """Whether bytes written now may still reach the broker."""
        return self.transport is not None and not self.transport.is_closing()

    def publish_flags(self, topic: str, qos: int, retain: bool) -> tuple[int, bool]:
        """The QoS and retain flag to send a message of ours with, within the broker's limits
        (sending more is a protocol error that gets the connection dropped). What that loses
        is logged once per connection."""
        limits = self.limits
        if qos > limits.max_qos:
            qos = limits.max_qos
            if not self._warned_qos:
                self._warned_qos = True
                log.warning(
                    "MQTT broker takes QoS %d at most: QoS 1 messages (the first on %r) go as "
                    "QoS %d, without PUBACK: their delivery is not confirmed, and one lost on "
                    "the way is not sent again",
                    qos,
                    topic,
                    qos,
                )
        if retain and not limits.retain_available:
            retain = False
            if not self._warned_retain:
                self._warned_retain = True
                log.warning(
                    "MQTT broker keeps no retained messages: messages to retain (the first on "
                    "%r) go without the retain flag, so retained state (incidents, barriers) "
                    "will not be kept by this broker for subscribers that come later",
                    topic,
                )
        return qos, retain

    def write(self, data: bytes) -> None:
        """Send bytes, unless the connection is already closing."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if not self._write_paused or self.closed.done():
            return
        if self._drain_waiter is None:
            self._drain_waiter = self.loop.create_future()
        await asyncio.shield(self._drain_waiter)

    def set_read_paused(self, paused: bool) -> None:
        """Stop or resume reading from the socket (the broker then buffers for us)."""
        self.read_paused = paused
        if self.transport is not None and not self.transport.is_closing():
            if paused:
                self.transport.pause_reading()
            else:
                self.last_rx = self.loop.time()  # silence while paused was ours, not the broker's
                self.transport.resume_reading()

    def close(self) -> None:
        """Close after what was written has been sent."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping anything not sent yet."""
        if self.transport is not None:
            self.transport.abort()

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
