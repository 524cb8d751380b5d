"""Exceptions of the MQTT client."""

from __future__ import annotations


class MqttError(Exception):
    """Base class of everything the MQTT client raises."""


class MqttProtocolError(MqttError):
    """The peer sent bytes that are not valid MQTT 5.0 (the connection cannot go on)."""


# What CONNACK's failure codes mean, for the log (MQTT 5.0, section 3.2.2.2).
CONNECT_REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}


# What SUBACK's failure codes mean (MQTT 5.0, section 3.9.3).
SUBSCRIBE_REASONS = {
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x8F: "topic filter invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


def subscribe_reason(reason_code: int) -> str:
    """A SUBACK failure code in words, e.g. "0x87 not authorized"."""
    meaning = SUBSCRIBE_REASONS.get(reason_code, "unknown reason code")
    return f"0x{reason_code:02X} {meaning}"


class MqttConnectError(MqttError):
    """The broker refused the connection (CONNACK with a failure reason code)."""

    def __init__(self, reason_code: int, reason: str = "") -> None:
        self.reason_code = reason_code
        meaning = CONNECT_REASONS.get(reason_code, "refused")
        detail = f": {reason}" if reason else ""
        super().__init__(f"connection refused (0x{reason_code:02X} {meaning}){detail}")


class MqttPublishError(MqttError):
    """The broker refused a QoS 1 message (PUBACK with a failure reason code)."""

    def __init__(self, topic: str, reason_code: int) -> None:
        self.topic = topic
        self.reason_code = reason_code
        super().__init__(f"broker refused message on {topic!r}: reason code 0x{reason_code:02X}")


class MqttExpiredError(MqttError):
    """A QoS 1 message's expiry interval ran out before it was sent (or sent again): it was
    not sent, and will not be."""

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        super().__init__(f"message on {topic!r} expired {detail}")
