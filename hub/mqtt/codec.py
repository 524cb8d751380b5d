"""MQTT 5.0 wire format: constants, and encoding of every packet (decoding is in `parser`)."""

from __future__ import annotations

from typing import Final

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
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

DEFAULT_MAX_PACKET_SIZE: Final = 16 * 1024 * 1024
MAX_REMAINING_LENGTH: Final = 268_435_455  # four bytes of variable byte integer

# How each property's value is written (MQTT 5.0, section 2.2.2.2).
BYTE, U16, U32, VARINT, STR, BIN, PAIR = range(7)
PROPERTY_KINDS: Final = {
    0x01: BYTE, 0x02: U32, 0x03: STR, 0x08: STR, 0x09: BIN, 0x0B: VARINT, 0x11: U32,
    0x12: STR, 0x13: U16, 0x15: STR, 0x16: BIN, 0x17: BYTE, 0x18: U32, 0x19: BYTE,
    0x1A: STR, 0x1C: STR, 0x1F: STR, 0x21: U16, 0x22: U16, 0x23: U16, 0x24: BYTE,
    0x25: BYTE, 0x26: PAIR, 0x27: U32, 0x28: BYTE, 0x29: BYTE, 0x2A: BYTE,
}  # fmt: skip
# These may occur more than once in a packet; their value is a tuple of all occurrences.
REPEATABLE: Final = frozenset({0x0B, 0x26})


def encode_varint(value: int) -> bytes:
    """A variable byte integer (1 to 4 bytes)."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"variable byte integer out of range: {value}")
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        value, digit = value >> 7, value & 0x7F
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _bin(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"binary data or string longer than 65535 bytes: {len(value)}")
    return _u16(len(value)) + value


def _str(value: str) -> bytes:
    return _bin(value.encode())


def _property(ident: int, kind: int, value: object) -> bytes:
    head = bytes((ident,))
    if kind == BYTE and isinstance(value, int):
        return head + bytes((value,))
    if kind == U16 and isinstance(value, int):
        return head + value.to_bytes(2, "big")
    if kind == U32 and isinstance(value, int):
        return head + value.to_bytes(4, "big")
    if kind == VARINT and isinstance(value, int):
        return head + encode_varint(value)
    if kind == STR and isinstance(value, str):
        return head + _str(value)
    if kind == BIN and isinstance(value, bytes):
        return head + _bin(value)
    if kind == PAIR and isinstance(value, tuple):
        key, val = value
        return head + _str(key) + _str(val)
    raise ValueError(f"property 0x{ident:02X} cannot hold {value!r}")


def encode_properties(properties: Properties) -> bytes:
    """A property block: its length, then each property."""
    if not properties:
        return b"\x00"
    parts: list[bytes] = []
    for ident, value in properties.items():
        kind = PROPERTY_KINDS.get(ident)
        if kind is None:
            raise ValueError(f"unknown property 0x{ident:02X}")
        if ident in REPEATABLE:
            if not isinstance(value, tuple):
                raise ValueError(f"property 0x{ident:02X} takes a tuple of values")
            parts.extend(_property(ident, kind, one) for one in value)
        else:
            parts.append(_property(ident, kind, value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _packet(first_byte: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties: Properties = NO_PROPERTIES,
) -> bytes:
    """A PUBLISH packet."""
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos}")
    if qos and not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"QoS {qos} needs a packet id in 1..65535, not {packet_id}")
    first = (PUBLISH << 4) | (dup << 3) | (qos << 1) | retain
    ident = _u16(packet_id) if qos else b""
    return _packet(first, _str(topic), ident, encode_properties(properties), payload)


def _encode_connect(p: Connect) -> bytes:
    flags = p.clean_start << 1
    tail = [_str(p.client_id)]
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (p.will.retain << 5)
        tail += [encode_properties(p.will.properties), _str(p.will.topic), _bin(p.will.payload)]
    if p.username is not None:
        flags |= 0x80
        tail.append(_str(p.username))
    if p.password is not None:
        flags |= 0x40
        tail.append(_bin(p.password))
    head = _str("MQTT") + bytes((5, flags)) + _u16(p.keepalive)
    return _packet(CONNECT << 4, head, encode_properties(p.properties), *tail)


def _encode_ack(first: int, packet_id: int, reason_code: int, properties: Properties) -> bytes:
    # The short forms: reason code and properties may be left out when they are the defaults.
    if not properties:
        if reason_code == 0:
            return _packet(first, _u16(packet_id))
        return _packet(first, _u16(packet_id), bytes((reason_code,)))
    return _packet(first, _u16(packet_id), bytes((reason_code,)), encode_properties(properties))


def _encode_pub_ack(p: PubAck) -> bytes:
    kind = {PubAck: PUBACK, PubRec: PUBREC, PubRel: PUBREL, PubComp: PUBCOMP}[type(p)]
    first = (kind << 4) | (0x02 if kind == PUBREL else 0)
    return _encode_ack(first, p.packet_id, p.reason_code, p.properties)


def _encode_subscribe(p: Subscribe) -> bytes:
    parts = [_u16(p.packet_id), encode_properties(p.properties)]
    for s in p.subscriptions:
        options = (
            s.qos | (s.no_local << 2) | (s.retain_as_published << 3) | (s.retain_handling << 4)
        )
        parts += [_str(s.topic_filter), bytes((options,))]
    return _packet((SUBSCRIBE << 4) | 0x02, *parts)


def _encode_unsubscribe(p: Unsubscribe) -> bytes:
    filters = [_str(f) for f in p.topic_filters]
    props = encode_properties(p.properties)
    return _packet((UNSUBSCRIBE << 4) | 0x02, _u16(p.packet_id), props, *filters)


def _encode_reason(first: int, reason_code: int, properties: Properties) -> bytes:
    if not properties:
        return _packet(first, bytes((reason_code,))) if reason_code else _packet(first)
    return _packet(first, bytes((reason_code,)), encode_properties(properties))


def encode(packet: Packet) -> bytes:
    """The bytes of any packet."""
    match packet:
        case Message():
            return encode_publish(
                packet.topic,
                packet.payload,
                qos=packet.qos,
                retain=packet.retain,
                dup=packet.dup,
                packet_id=packet.packet_id,
                properties=packet.properties,
            )
        case PubAck():  # and PubRec, PubRel, PubComp
            return _encode_pub_ack(packet)
        case Connect():
            return _encode_connect(packet)
        case ConnAck():
            flags = bytes((packet.session_present, packet.reason_code))
            return _packet(CONNACK << 4, flags, encode_properties(packet.properties))
        case Subscribe():
            return _encode_subscribe(packet)
        case SubAck():
            props = encode_properties(packet.properties)
            return _packet(SUBACK << 4, _u16(packet.packet_id), props, bytes(packet.reason_codes))
        case Unsubscribe():
            return _encode_unsubscribe(packet)
        case UnsubAck():
            props = encode_properties(packet.properties)
            return _packet(UNSUBACK << 4, _u16(packet.packet_id), props, bytes(packet.reason_codes))
        case PingReq():
            return b"\xc0\x00"
        case PingResp():
            return b"\xd0\x00"
        case Disconnect():
            return _encode_reason(DISCONNECT << 4, packet.reason_code, packet.properties)
        case Auth():
            return _encode_reason(AUTH << 4, packet.reason_code, packet.properties)
    raise TypeError(f"not an MQTT packet: {packet!r}")
