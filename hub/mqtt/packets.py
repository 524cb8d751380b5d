"""MQTT 5.0 control packets as immutable values, and the names of their properties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import TypeAlias


class Property(IntEnum):
    """Property identifiers of MQTT 5.0 (section 2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


# Repeatable properties (user properties, subscription identifiers) hold a tuple of values.
PropertyValue: TypeAlias = int | str | bytes | tuple[int, ...] | tuple[tuple[str, str], ...]
Properties: TypeAlias = Mapping[int, PropertyValue]

NO_PROPERTIES: Properties = MappingProxyType({})


def _no_properties() -> Properties:
    return NO_PROPERTIES


@dataclass(slots=True, frozen=True)
class Message:
    """An application message: a PUBLISH packet as received or to be sent.

    `packet_id` is 0 at QoS 0. `generation` numbers the connection the message arrived on, so
    that an acknowledgement meant for an earlier connection is not sent on a later one.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    generation: int = 0
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class Will:
    """The message the broker publishes for us when we vanish without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class Connect:
    """CONNECT; `password` is binary data in MQTT 5.0."""

    client_id: str
    clean_start: bool = True
    keepalive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class ConnAck:
    """CONNACK."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class PubAck:
    """PUBACK; the base of the other acknowledgements of PUBLISH, which look the same."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class PubRec(PubAck):
    """PUBREC (QoS 2, step 1)."""


@dataclass(slots=True, frozen=True)
class PubRel(PubAck):
    """PUBREL (QoS 2, step 2)."""


@dataclass(slots=True, frozen=True)
class PubComp(PubAck):
    """PUBCOMP (QoS 2, step 3)."""


@dataclass(slots=True, frozen=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True, frozen=True)
class Subscribe:
    """SUBSCRIBE."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class SubAck:
    """SUBACK: one reason code per subscription (the granted QoS, or >= 0x80 on failure)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class Unsubscribe:
    """UNSUBSCRIBE."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class UnsubAck:
    """UNSUBACK."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class PingReq:
    """PINGREQ."""


@dataclass(slots=True, frozen=True)
class PingResp:
    """PINGRESP."""


@dataclass(slots=True, frozen=True)
class Disconnect:
    """DISCONNECT, sent by either side."""

    reason_code: int = 0
    properties: Properties = field(default_factory=_no_properties, hash=False)


@dataclass(slots=True, frozen=True)
class Auth:
    """AUTH (enhanced authentication)."""

    reason_code: int = 0
    properties: Properties = field(default_factory=_no_properties, hash=False)


Packet: TypeAlias = (
    Message
    | Connect
    | ConnAck
    | PubAck
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
