"""Incremental parser of an MQTT 5.0 byte stream.

The parser is on the hot path of ingest (tens of thousands of small PUBLISH packets a
second), so PUBLISH is decoded inline with bytes indexing and slicing; the rarer control
packets go through a small, bounds-checked reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Final, cast

from hub.mqtt.codec import (
    AUTH,
    BIN,
    BYTE,
    CONNACK,
    CONNECT,
    DEFAULT_MAX_PACKET_SIZE,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PROPERTY_KINDS,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    REPEATABLE,
    STR,
    SUBACK,
    SUBSCRIBE,
    U16,
    U32,
    UNSUBACK,
    UNSUBSCRIBE,
    VARINT,
)
from hub.mqtt.errors import MqttProtocolError
from hub.mqtt.packets import (
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Message,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PropertyValue,
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

_NAMES: Final = (
    "reserved", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
    "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
)  # fmt: skip


class _Reader:
    """Bounds-checked reads from the body of one packet: `data[pos:end]`."""

    __slots__ = ("data", "end", "name", "pos")

    def __init__(self, data: bytes, name: str, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.name = name
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def error(self, what: str) -> MqttProtocolError:
        return MqttProtocolError(f"malformed {self.name} packet: {what}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.end:
            raise self.error(f"needs {n} more bytes at offset {self.pos}, has {self.remaining()}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise self.error("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise self.error(f"string is not valid UTF-8: {raw[:60]!r}") from exc

    def properties(self) -> Properties:
        length = self.varint()
        if length == 0:
            return NO_PROPERTIES
        end = self.pos + length
        if end > self.end:
            raise self.error(f"property block of {length} bytes overruns the packet")
        props: dict[int, PropertyValue] = {}
        repeated: dict[int, list[object]] = {}
        while self.pos < end:
            ident = self.varint()
            kind = PROPERTY_KINDS.get(ident)
            if kind is None:
                # A newer property: its length is unknown, so skip the rest of the block
                # (the block's length is known) rather than drop the connection.
                break
            value = self._value(kind)
            if ident in REPEATABLE:
                repeated.setdefault(ident, []).append(value)
            else:
                props[ident] = cast(PropertyValue, value)
        if self.pos > end:
            raise self.error("a property overruns its block")
        self.pos = end
        for ident, values in repeated.items():
            props[ident] = cast(PropertyValue, tuple(values))
        return props

    def _value(self, kind: int) -> object:
        if kind == BYTE:
            return self.u8()
        if kind == U16:
            return self.u16()
        if kind == U32:
            return self.u32()
        if kind == VARINT:
            return self.varint()
        if kind == STR:
            return self.string()
        if kind == BIN:
            return self.binary()
        return (self.string(), self.string())

    def optional_reason(self) -> tuple[int, Properties]:
        """Reason code and properties, which the short forms of some packets leave out."""
        reason = self.u8() if self.remaining() else 0
        props = self.properties() if self.remaining() else NO_PROPERTIES
        return reason, props


def _decode_connect(r: _Reader) -> Connect:
    if (name := r.string()) != "MQTT":
        raise r.error(f"protocol name {name!r} is not 'MQTT'")
    if (level := r.u8()) != 5:
        raise r.error(f"protocol level {level} is not 5 (MQTT 5.0)")
    flags = r.u8()
    if flags & 0x01:
        raise r.error("reserved connect flag is set")
    keepalive = r.u16()
    props = r.properties()
    client_id = r.string()
    will = None
    if flags & 0x04:
        will_props = r.properties()
        topic = r.string()
        will = Will(topic, r.binary(), (flags >> 3) & 3, bool(flags & 0x20), will_props)
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    return Connect(client_id, bool(flags & 0x02), keepalive, username, password, will, props)


def _decode_subscribe(r: _Reader) -> Subscribe:
    packet_id, props = r.u16(), r.properties()
    subs = []
    while r.remaining():
        topic_filter, opts = r.string(), r.u8()
        if opts & 0xC0 or opts & 0x03 == 3:
            raise r.error(f"invalid subscription options 0x{opts:02X}")
        subs.append(Subscription(topic_filter, opts & 3, bool(opts & 4), bool(opts & 8), opts >> 4))
    if not subs:
        raise r.error("no topic filter")
    return Subscribe(packet_id, tuple(subs), props)


def _decode_unsubscribe(r: _Reader) -> Unsubscribe:
    packet_id, props = r.u16(), r.properties()
    filters = []
    while r.remaining():
        filters.append(r.string())
    if not filters:
        raise r.error("no topic filter")
    return Unsubscribe(packet_id, tuple(filters), props)


def _decode_control(first: int, body: bytes) -> Packet:
    kind, flags = first >> 4, first & 0x0F
    name = _NAMES[kind]
    if kind == 0:
        raise MqttProtocolError("packet type 0 is reserved")
    if flags != (0x02 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0):
        raise MqttProtocolError(f"malformed {name} packet: fixed header flags 0x{flags:X}")
    r = _Reader(body, name)
    packet: Packet
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        packet_id = r.u16()
        reason, props = r.optional_reason()
        cls = (PubAck, PubRec, PubRel, PubComp)[kind - PUBACK]
        packet = cls(packet_id, reason, props)
    elif kind == CONNACK:
        ack_flags, reason = r.u8(), r.u8()
        packet = ConnAck(bool(ack_flags & 1), reason, r.properties())
    elif kind in (SUBACK, UNSUBACK):
        packet_id, props = r.u16(), r.properties()
        codes = tuple(r.take(r.remaining()))
        packet = (SubAck if kind == SUBACK else UnsubAck)(packet_id, codes, props)
    elif kind == PINGREQ:
        packet = PingReq()
    elif kind == PINGRESP:
        packet = PingResp()
    elif kind == DISCONNECT:
        packet = Disconnect(*r.optional_reason())
    elif kind == AUTH:
        packet = Auth(*r.optional_reason())
    elif kind == CONNECT:
        packet = _decode_connect(r)
    elif kind == SUBSCRIBE:
        packet = _decode_subscribe(r)
    else:
        packet = _decode_unsubscribe(r)
    if r.remaining():
        raise r.error(f"{r.remaining()} unexpected bytes at the end")
    return packet


def _long_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Remaining length starting at `pos`, and where the body starts; (0, -1) if incomplete."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(buf):
            return 0, -1
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MqttProtocolError("malformed remaining length: longer than 4 bytes")


def _publish_properties(buf: bytes, pos: int, end: int) -> tuple[Properties, int]:
    r = _Reader(buf, "PUBLISH", pos, end)
    props = r.properties()
    return props, r.pos


def _slot_setter(name: str) -> Callable[[Message, object], None]:
    setter: Callable[[Message, object], None] = getattr(Message, name).__set__
    return setter


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs
# about 1 us a message; filling the slots directly through their descriptors costs a third
# of that. The unpacking in `Parser._parse` fails loudly if Message gains a field.
_MESSAGE_SETTERS: Final = tuple(_slot_setter(f.name) for f in fields(Message))


class Parser:
    """Incremental parser of the packets in an MQTT byte stream.

    `feed` takes whatever arrived and returns the packets completed by it, keeping a partial
    packet for the next call. Messages get this parser's `generation`. A packet larger than
    `max_packet_size` bytes, or any malformed packet, raises `MqttProtocolError`; the stream
    cannot be resynchronised after that, so drop the connection.
    """

    __slots__ = ("_buffered", "_chunks", "_need", "generation", "max_packet_size")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, generation: int = 0) -> None:
        self.max_packet_size = max_packet_size
        self.generation = generation
        self._chunks: list[bytes] = []  # the unparsed tail, kept as chunks to join only once
        self._buffered = 0
        self._need = 0  # bytes the tail must reach before parsing is worth trying again

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return self._buffered

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """The packets that `data` completes, in order."""
        if type(data) is not bytes:
            data = bytes(data)  # slices of the buffer become payloads, which must be bytes
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks.clear()
        out: list[Packet] = []
        pos = self._parse(data, out)
        if pos < len(data):
            self._chunks.append(data[pos:] if pos else data)
        self._buffered = len(data) - pos
        return out

    def _parse(self, buf: bytes, out: list[Packet]) -> int:  # noqa: PLR0915 (one hot loop)
        n = len(buf)
        pos = 0
        limit = self.max_packet_size
        generation = self.generation
        append = out.append
        self._need = 0
        new = object.__new__
        (
            set_topic,
            set_payload,
            set_qos,
            set_retain,
            set_dup,
            set_packet_id,
            set_generation,
            set_properties,
        ) = _MESSAGE_SETTERS
        try:
            while n - pos >= 2:
                first = buf[pos]
                length = buf[pos + 1]
                start = pos + 2
                if length > 127:
                    length, start = _long_length(buf, pos + 1)
                    if start < 0:
                        break
                end = start + length
                if end - pos > limit:
                    raise MqttProtocolError(
                        f"packet of {end - pos} bytes is larger than the maximum of {limit}"
                    )
                if end > n:
                    self._need = end - pos
                    break
                if first & 0xF0 == 0x30:  # PUBLISH, inline: it is nearly all of the traffic
                    qos = (first >> 1) & 3
                    p = start + 2 + ((buf[start] << 8) | buf[start + 1])
                    topic = buf[start + 2 : p].decode()
                    if qos:
                        if qos == 3:
                            raise MqttProtocolError("malformed PUBLISH packet: QoS 3")
                        packet_id = (buf[p] << 8) | buf[p + 1]
                        p += 2
                    else:
                        packet_id = 0
                    if buf[p] == 0:
                        props = NO_PROPERTIES
                        p += 1
                    else:
                        props, p = _publish_properties(buf, p, end)
                    if p > end:
                        raise MqttProtocolError("malformed PUBLISH packet: fields overrun it")
                    m = new(Message)
                    set_topic(m, topic)
                    set_payload(m, buf[p:end])
                    set_qos(m, qos)
                    set_retain(m, (first & 1) == 1)
                    set_dup(m, (first & 8) == 8)
                    set_packet_id(m, packet_id)
                    set_generation(m, generation)
                    set_properties(m, props)
                    append(m)
                else:
                    append(_decode_control(first, buf[start:end]))
                pos = end
        except UnicodeDecodeError as exc:
            raise MqttProtocolError(f"malformed PUBLISH packet: topic is not UTF-8: {exc}") from exc
        except IndexError as exc:
            raise MqttProtocolError("malformed PUBLISH packet: fields overrun it") from exc
        if not self._need:
            self._need = n - pos + 1
        return pos
