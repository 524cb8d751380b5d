"""The MQTT 5.0 codec: every packet survives encoding and parsing, however the stream is cut."""

from __future__ import annotations

from itertools import pairwise
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mqtt import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Message,
    MqttProtocolError,
    Packet,
    Parser,
    PingReq,
    PingResp,
    Properties,
    Property,
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
    encode,
    encode_publish,
)
from hub.mqtt.codec import PROPERTY_KINDS, REPEATABLE, encode_varint

# -- strategies ------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=20)
packet_ids = st.integers(1, 0xFFFF)
reason_codes = st.integers(0, 255)
_VALUES = (
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 268_435_455),
    texts,
    st.binary(max_size=20),
    st.tuples(texts, texts),
)


def _value(ident: int) -> st.SearchStrategy[object]:
    one = _VALUES[PROPERTY_KINDS[ident]]
    return st.lists(one, min_size=1, max_size=3).map(tuple) if ident in REPEATABLE else one


properties = cast(
    st.SearchStrategy[Properties],
    st.lists(st.sampled_from(sorted(PROPERTY_KINDS)), unique=True, max_size=4).flatmap(
        lambda ids: st.fixed_dictionaries({i: _value(i) for i in ids})
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    qos = draw(st.integers(0, 2))
    return Message(
        topic=draw(texts),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids) if qos else 0,
        properties=draw(properties),
    )


wills = st.builds(Will, texts, st.binary(max_size=20), st.integers(0, 2), st.booleans(), properties)
subscriptions = st.builds(
    Subscription, texts, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2)
)
acks = st.sampled_from([PubAck, PubRec, PubRel, PubComp])

packets: st.SearchStrategy[Packet] = st.one_of(
    messages(),
    st.builds(
        Connect,
        texts,
        st.booleans(),
        st.integers(0, 0xFFFF),
        st.none() | texts,
        st.none() | st.binary(max_size=20),
        st.none() | wills,
        properties,
    ),
    st.builds(ConnAck, st.booleans(), reason_codes, properties),
    acks.flatmap(lambda cls: st.builds(cls, packet_ids, reason_codes, properties)),
    st.builds(Subscribe, packet_ids, st.lists(subscriptions, min_size=1).map(tuple), properties),
    st.builds(SubAck, packet_ids, st.lists(reason_codes).map(tuple), properties),
    st.builds(Unsubscribe, packet_ids, st.lists(texts, min_size=1).map(tuple), properties),
    st.builds(UnsubAck, packet_ids, st.lists(reason_codes).map(tuple), properties),
    st.just(PingReq()),
    st.just(PingResp()),
    st.builds(Disconnect, reason_codes, properties),
    st.builds(Auth, reason_codes, properties),
)

# -- properties of the codec ------------------------------------------------------------------


@settings(deadline=None)  # the machine is shared: a slow example is not a failure
@given(packets)
def test_every_packet_survives_a_round_trip(packet: Packet) -> None:
    assert Parser().feed(encode(packet)) == [packet]


@settings(deadline=None)
@given(st.lists(packets, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_a_stream_cut_anywhere_gives_the_same_packets(
    stream: list[Packet], cuts: list[int]
) -> None:
    data = b"".join(encode(p) for p in stream)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    parser = Parser()
    parsed = [p for a, b in pairwise(bounds) for p in parser.feed(data[a:b])]
    assert parsed == stream
    assert parser.buffered == 0


@settings(deadline=None)
@given(st.integers(0, 268_435_455))
def test_variable_byte_integers_round_trip(value: int) -> None:
    packet = Disconnect(0, {Property.SUBSCRIPTION_IDENTIFIER: (value,)})
    assert Parser().feed(encode(packet)) == [packet]
    assert len(encode_varint(value)) == 1 + (value > 127) + (value > 16383) + (value > 2097151)


def test_messages_keep_payload_bytes_and_get_the_parsers_generation() -> None:
    data = encode_publish("hub/sensors/r/s", b'{"value": 1}', qos=1, packet_id=7)
    (message,) = Parser(generation=3).feed(bytearray(data))
    assert message == Message("hub/sensors/r/s", b'{"value": 1}', 1, packet_id=7, generation=3)
    assert type(message.payload) is bytes


def test_a_1_mb_payload_is_accepted_in_pieces() -> None:
    payload = bytes(range(256)) * 4096
    data = encode_publish("big", payload, qos=1, packet_id=1)
    parser = Parser()
    out = [p for i in range(0, len(data), 65536) for p in parser.feed(data[i : i + 65536])]
    assert out == [Message("big", payload, 1, packet_id=1)]


# -- protocol errors ---------------------------------------------------------------------------


def test_a_packet_over_the_maximum_is_refused_from_its_header() -> None:
    data = encode_publish("t", b"x" * 2000)
    with pytest.raises(MqttProtocolError, match="larger than the maximum of 1000"):
        Parser(max_packet_size=1000).feed(data[:4])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "remaining length"),
        (b"\x36\x05\x00\x01t\x00\x01", "QoS 3"),
        (b"\x30\x05\x00\x02\xff\xfe\x00", "not UTF-8"),
        (b"\x30\x03\x00\x09t", "overrun"),
        (b"\x80\x06\x00\x01\x00\x00\x01t", "fixed header flags"),
        (b"\x00\x00", "reserved"),
        (b"\x20\x01\x00", "needs 1 more bytes"),
        (b"\xe0\x03\x00\x05\x21", "overruns the packet"),
        (b"\xc0\x01\x00", "unexpected bytes"),
        (b"\x10\x07\x00\x04MQTT\x04", "protocol level 4"),
    ],
)
def test_malformed_packets_raise_protocol_errors(data: bytes, error: str) -> None:
    with pytest.raises(MqttProtocolError, match=error):
        Parser().feed(data)


def test_an_unknown_property_skips_the_rest_of_its_block_only() -> None:
    # CONNACK: flags, reason, then properties: Receive Maximum 20, an unknown 0x7F and junk.
    connack = b"\x20\x0a\x00\x00\x07\x21\x00\x14\x7f\xde\xad\xbe"
    assert Parser().feed(connack + b"\xd0\x00") == [ConnAck(False, 0, {0x21: 20}), PingResp()]
