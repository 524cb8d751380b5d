"""The pure reading validator: every kind of bad input refused with a reason, never an
exception, and good readings converted to canonical units."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.validate import Validator
from hub.inventory import Inventory, load_inventory
from tests.helpers import write_site

NOW = 1_780_000_000 * 10**9  # 2026-05-28, in ns


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    return load_inventory([write_site(tmp_path_factory.mktemp("site"))])


@pytest.fixture(scope="module")
def validator(inventory: Inventory) -> Validator:
    return Validator(inventory, max_payload_bytes=4096, max_gateway_readings=50)


def one(validator: Validator, body: object, sensor: str = "wl-1", region: str = "suwon"):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return validator.sensor_message(region, sensor, payload, NOW)


def test_reading_is_converted_to_the_canonical_unit(validator: Validator) -> None:
    readings, rejections = one(validator, {"value": 42, "unit": "cm", "ts": "2026-05-28T00:00:00Z"})
    assert rejections == []
    assert readings[0].value == pytest.approx(0.42)
    assert readings[0].sensor.id == "wl-1"
    assert readings[0].ts_ns == 1_779_926_400 * 10**9


def test_sensor_unit_applies_when_the_reading_has_none(validator: Validator) -> None:
    readings, _ = one(validator, {"value": 42})  # wl-1 is declared in cm
    assert readings[0].value == pytest.approx(0.42)
    # No ts: the time it arrived (a nanosecond on if an earlier test stamped wl-1 then).
    assert NOW <= readings[0].ts_ns < NOW + 1000


def test_readings_without_ts_are_stamped_strictly_increasing_per_sensor(
    inventory: Inventory,
) -> None:
    """A burst arriving in one batch (one clock reading) keeps every reading apart."""
    validator = Validator(inventory)
    stamps = [one(validator, {"value": i})[0][0].ts_ns for i in range(10)]
    assert stamps == [NOW + i for i in range(10)]
    other = one(validator, {"value": 1}, sensor="rain-1")[0][0]
    assert other.ts_ns == NOW, "each sensor has its own sequence"
    gateway = validator.gateway_message(
        "suwon",
        "gw-1",
        json.dumps({"readings": [{"sensor": "wl-100", "value": v} for v in range(3)]}).encode(),
        NOW,
    )[0]
    assert [r.ts_ns for r in gateway] == [NOW, NOW + 1, NOW + 2]
    later = validator.sensor_message("suwon", "wl-1", b'{"value": 1}', NOW + 10**9)[0][0]
    assert later.ts_ns == NOW + 10**9, "a later arrival keeps its own time"
    behind = validator.sensor_message("suwon", "wl-1", b'{"value": 1}', NOW)[0][0]
    assert behind.ts_ns == NOW + 10**9 + 1, "a clock stepped back does not reuse a stamp"
    given_ts = one(validator, {"value": 1, "ts": NOW / 1e9})[0][0]
    assert given_ts.ts_ns == NOW, "a reading's own ts is kept as sent"


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        (1_779_999_000, 1_779_999_000 * 10**9),
        (1_779_999_000.25, 1_779_999_000_250_000_000),
        ("2026-05-28T09:00:00+09:00", 1_779_926_400 * 10**9),
        ("2026-05-28T00:00:00.5Z", 1_779_926_400_500_000_000),
    ],
)
def test_timestamps_in_rfc3339_or_epoch_seconds(validator: Validator, ts: object, ns: int) -> None:
    readings, rejections = one(validator, {"value": 1, "ts": ts})
    assert rejections == []
    assert readings[0].ts_ns == ns


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        (b'{"value": 1.2', "bad_json", "not valid JSON"),
        (b"\xff\xfe{}", "not_utf8", "not UTF-8"),
        (b"[1, 2]", "bad_schema", "JSON object"),
        (b'{"value": NaN}', "bad_value", "finite"),
        (b'{"value": Infinity}', "bad_value", "finite"),
        (b'{"value": "1.2"}', "bad_value", "must be a number, got str '1.2'"),
        (b'{"value": true}', "bad_value", "must be a number"),
        (b'{"unit": "cm"}', "bad_value", "missing"),
        (b'{"value": 1, "unit": "mm/h"}', "bad_unit", "does not fit a water_level"),
        (b'{"value": 1, "unit": "furlongs/fortnightz"}', "bad_unit", "unknown unit"),
        (b'{"value": 1, "unit": 7}', "bad_unit", "must be a string"),
        (b'{"value": 501, "unit": "m"}', "out_of_range", "outside sensor wl-1's range [0, 5] m"),
        (b'{"value": -1}', "out_of_range", "outside"),
        (b'{"value": 1, "ts": "yesterday"}', "bad_timestamp", "not RFC 3339"),
        (b'{"value": 1, "ts": "2026-05-28T00:00:00"}', "bad_timestamp", "no time zone"),
        (b'{"value": 1, "ts": 1779999000000}', "bad_timestamp", "milliseconds"),
        (b'{"value": 1, "ts": 1790000000}', "future_timestamp", "in the future"),
        (b'{"value": 1, "ts": 1000000000}', "stale_timestamp", "days old"),
        (
            b'{"value": 1, "pad": "' + b"x" * 5000 + b'"}',
            "payload_too_large",
            "5023 bytes, more than the limit of 4096",
        ),
    ],
)
def test_bad_readings_get_a_reason(
    validator: Validator, payload: bytes, reason: str, words: str
) -> None:
    readings, rejections = one(validator, payload)
    assert readings == []
    assert [r.reason for r in rejections] == [reason]
    assert words in rejections[0].error


def test_unknown_sensor_and_wrong_region(validator: Validator) -> None:
    _, rej = one(validator, {"value": 1}, sensor="nope")
    assert rej[0].reason == "unknown_sensor"
    assert "'nope' is not in the inventory" in rej[0].error
    _, rej = one(validator, {"value": 1}, region="goyang")
    assert rej[0].reason == "wrong_region"
    assert "belongs to region 'suwon', not 'goyang'" in rej[0].error


def test_flood_switch_reads_zero_or_one(validator: Validator) -> None:
    ok, _ = one(validator, {"value": True}, sensor="sw-1", region="goyang")
    assert ok[0].value == 1.0
    _, rej = one(validator, {"value": 0.5}, sensor="sw-1", region="goyang")
    assert rej[0].reason == "bad_value"


def test_gateway_readings_stand_or_fall_alone(validator: Validator) -> None:
    body = {
        "readings": [
            {"sensor": "wl-100", "value": 1.5},
            {"sensor": "wl-101", "value": "x"},
            {"value": 3},
            "junk",
            {"sensor": "wl-102", "value": 150, "unit": "cm", "ts": 1_779_999_999},
        ]
    }
    readings, rejections = validator.gateway_message("suwon", "gw", json.dumps(body).encode(), NOW)
    assert [(r.sensor.id, r.value) for r in readings] == [("wl-100", 1.5), ("wl-102", 1.5)]
    assert [r.error.split(":")[0] for r in rejections] == [
        "readings[1]",
        "readings[2]",
        "readings[3]",
    ]


def test_gateway_batch_limits(validator: Validator) -> None:
    big = {"readings": [{"sensor": "wl-100", "value": 1}] * 51}
    _, rej = validator.gateway_message("suwon", "gw", json.dumps(big).encode(), NOW)
    assert rej[0].reason == "too_many_readings"
    _, rej = validator.gateway_message("suwon", "gw", b'{"readings": 3}', NOW)
    assert rej[0].reason == "bad_schema"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["value", "unit", "ts", "x"]), json_values))
def test_any_object_gives_a_reading_or_a_reason(
    validator: Validator, body: dict[str, object]
) -> None:
    payload = json.dumps(body).encode()  # json writes NaN/Infinity, which we must refuse too
    readings, rejections = one(validator, payload)
    assert len(readings) + len(rejections) == 1
    for reading in readings:
        assert math.isfinite(reading.value)
        assert 0.0 <= reading.value <= 5.0
    for rejection in rejections:
        assert rejection.error


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=200))
def test_any_bytes_give_a_reading_or_a_reason(validator: Validator, payload: bytes) -> None:
    readings, rejections = validator.sensor_message("suwon", "wl-1", payload, NOW)
    assert len(readings) + len(rejections) == 1
    readings, rejections = validator.gateway_message("suwon", "gw", payload, NOW)
    assert all(r.error for r in rejections)


def test_a_value_that_overflows_in_the_canonical_unit_is_refused(validator: Validator) -> None:
    readings, rejections = one(validator, {"value": 1e308, "unit": "km"})
    assert readings == []
    assert rejections[0].reason == "bad_value"
    assert "too large" in rejections[0].error
