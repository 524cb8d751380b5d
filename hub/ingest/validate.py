"""Turn MQTT messages into validated readings in canonical units, or into reasons for refusal.

Pure code: no I/O, the clock is passed in. The hot path (a known sensor, a number, an optional
timestamp) costs one JSON parse, a few dict look-ups and one multiply.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from hub.inventory import Inventory, Sensor
from hub.units import CANONICAL, Converter, UnitError, converter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NS_PER_S = 1_000_000_000
# Epoch seconds past this are far more likely milliseconds than the year 5138.
_MS_EPOCH_SUSPECT = 1e11


class Reading(NamedTuple):
    """One accepted reading: the sensor, its value in the kind's canonical unit, and its time.

    A named tuple rather than a frozen dataclass: one is built per reading on the hot path.
    """

    sensor: Sensor
    value: float
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Rejection:
    """Why a message, or one reading in it, was refused. `reason` is a short metric label."""

    reason: str
    error: str


class _Bad(Exception):
    """Internal control flow for one refused reading; never escapes this module."""

    def __init__(self, reason: str, error: str) -> None:
        self.reason = reason
        self.error = error


def _decode(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # Say the actual problem in the cases people hit: not UTF-8, or NaN/Infinity literals,
        # which JSON forbids but some firmware writes.
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise _Bad(
                "not_utf8", f"payload is not UTF-8 text (bad byte at offset {uexc.start})"
            ) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise _Bad("bad_json", f"payload is not valid JSON: {exc}") from None


def _number(raw: object, kind: str, where: str) -> float:
    if isinstance(raw, bool):
        if kind == "flood_switch":
            return 1.0 if raw else 0.0
        raise _Bad("bad_value", f"{where}value must be a number, got {str(raw).lower()}")
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:
            raise _Bad("bad_value", f"{where}value is too large to be a reading") from None
        if not math.isfinite(value):
            raise _Bad("bad_value", f"{where}value is {raw}; readings must be finite numbers")
        return value
    if raw is None:
        raise _Bad("bad_value", f"{where}value is missing or null")
    shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:40] + "..."
    raise _Bad("bad_value", f"{where}value must be a number, got {type(raw).__name__} {shown}")


class Validator:
    """Validates readings against the inventory; one instance per inventory version."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        max_payload_bytes: int = 65536,
        max_future_s: float = 300.0,
        max_age_s: float = 30 * 86400.0,
        max_gateway_readings: int = 10000,
    ) -> None:
        self.inventory = inventory
        self.max_payload_bytes = max_payload_bytes
        self.max_future_ns = int(max_future_s * _NS_PER_S)
        self.max_age_ns = int(max_age_s * _NS_PER_S)
        self.max_gateway_readings = max_gateway_readings
        self._converters: dict[tuple[str, str | None], Converter] = {}
        # The last arrival stamp of each sensor: readings without `ts` are stamped strictly
        # increasing per sensor, so that a burst never collapses onto one point. Hand it on
        # to the validator of the next inventory version (`Ingest.set_validator`).
        self.stamps: dict[str, int] = {}
        self.stamped = 0  # readings stamped on arrival so far

    # -- messages -----------------------------------------------------------------------------

    def sensor_message(
        self, region: str, sensor_id: str, payload: bytes, now_ns: int
    ) -> tuple[list[Reading], list[Rejection]]:
        """A message on `{prefix}/sensors/{region}/{sensor_id}`: one reading."""
        try:
            self._check_size(payload)
            body = _decode(payload)
            if not isinstance(body, dict):
                raise _Bad(
                    "bad_schema",
                    f'payload must be a JSON object like {{"value": 0.42}}, '
                    f"got {type(body).__name__}",
                )
            return [self._reading(region, sensor_id, body, now_ns, "")], []
        except _Bad as bad:
            return [], [Rejection(bad.reason, bad.error)]

    def gateway_message(
        self, region: str, gateway_id: str, payload: bytes, now_ns: int
    ) -> tuple[list[Reading], list[Rejection]]:
        """A message on `{prefix}/gateways/{region}/{gateway_id}`: a batch of readings.

        Each reading stands or falls alone: one bad reading does not cost the others.
        """
        try:
            self._check_size(payload, self.max_payload_bytes * 16)
            body = _decode(payload)
            batch = body.get("readings") if isinstance(body, dict) else None
            if not isinstance(batch, list):
                raise _Bad(
                    "bad_schema",
                    f'gateway {gateway_id}: payload must be {{"readings": [...]}} with a list',
                )
            if len(batch) > self.max_gateway_readings:
                raise _Bad(
                    "too_many_readings",
                    f"gateway {gateway_id}: {len(batch)} readings in one message, "
                    f"more than ingest.max_gateway_readings ({self.max_gateway_readings})",
                )
        except _Bad as bad:
            return [], [Rejection(bad.reason, bad.error)]
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        for index, item in enumerate(batch):
            where = f"readings[{index}]: "
            try:
                if not isinstance(item, dict):
                    raise _Bad("bad_schema", f"{where}must be an object, got {type(item).__name__}")
                sensor_id = item.get("sensor")
                if not isinstance(sensor_id, str) or not sensor_id:
                    raise _Bad("bad_schema", f"{where}'sensor' (the sensor id) is missing")
                readings.append(self._reading(region, sensor_id, item, now_ns, where))
            except _Bad as bad:
                rejections.append(Rejection(bad.reason, bad.error))
        return readings, rejections

    # -- one reading --------------------------------------------------------------------------

    def _check_size(self, payload: bytes, limit: int | None = None) -> None:
        limit = limit or self.max_payload_bytes
        if len(payload) > limit:
            raise _Bad(
                "payload_too_large",
                f"payload is {len(payload)} bytes, more than the limit of {limit} "
                "(ingest.max_payload_bytes)",
            )

    def _reading(
        self, region: str, sensor_id: str, body: dict[str, Any], now_ns: int, where: str
    ) -> Reading:
        sensor = self.inventory.sensors.get(sensor_id)
        if sensor is None:
            raise _Bad("unknown_sensor", f"{where}sensor {sensor_id!r} is not in the inventory")
        if sensor.region != region:
            raise _Bad(
                "wrong_region",
                f"{where}sensor {sensor_id!r} belongs to region {sensor.region!r}, "
                f"not {region!r}; publish it under that region's topic",
            )
        value = _number(body.get("value"), sensor.kind, where)
        unit = body.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise _Bad("bad_unit", f"{where}unit must be a string, got {unit!r}")
        value = self._convert(sensor, unit if unit is not None else sensor.unit, where)(value)
        if not math.isfinite(value):  # finite as sent, but not in the canonical unit
            raise _Bad("bad_value", f"{where}value is too large to be a reading")
        if sensor.kind == "flood_switch" and value not in (0.0, 1.0):
            raise _Bad("bad_value", f"{where}a flood switch reads 0 or 1, got {value:g}")
        if sensor.min is not None and value < sensor.min:
            raise _Bad("out_of_range", self._range_error(sensor, value, where))
        if sensor.max is not None and value > sensor.max:
            raise _Bad("out_of_range", self._range_error(sensor, value, where))
        raw_ts = body.get("ts")
        if raw_ts is not None:
            return Reading(sensor, value, self._timestamp(raw_ts, now_ns, where))
        last = self.stamps.get(sensor.id, 0)
        ts_ns = now_ns if now_ns > last else last + 1
        self.stamps[sensor.id] = ts_ns
        self.stamped += 1
        return Reading(sensor, value, ts_ns)

    def _convert(self, sensor: Sensor, unit: str | None, where: str) -> Converter:
        key = (sensor.kind, unit)
        conv = self._converters.get(key)
        if conv is None:
            try:
                conv = converter(sensor.kind, unit)
            except UnitError as exc:
                raise _Bad("bad_unit", f"{where}{exc}") from None
            self._converters[key] = conv
        return conv

    @staticmethod
    def _range_error(sensor: Sensor, value: float, where: str) -> str:
        unit = CANONICAL[sensor.kind]
        return (
            f"{where}value {value:g} {unit} is outside sensor {sensor.id}'s range "
            f"[{sensor.min:g}, {sensor.max:g}] {unit} (min/max in the inventory)"
        )

    def _timestamp(self, raw: object, now_ns: int, where: str) -> int:
        if isinstance(raw, bool):
            raise _Bad("bad_timestamp", f"{where}ts must be RFC 3339 text or epoch seconds")
        if isinstance(raw, int | float):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise _Bad("bad_timestamp", f"{where}ts is {raw}, not a time")
            if raw < 0:
                raise _Bad("bad_timestamp", f"{where}ts {raw} is before 1970")
            if raw > _MS_EPOCH_SUSPECT:
                raise _Bad(
                    "bad_timestamp",
                    f"{where}ts {raw} looks like milliseconds; send epoch seconds or RFC 3339",
                )
            ts_ns = round(raw * 1_000_000) * 1000
        elif isinstance(raw, str):
            try:
                stamp = datetime.fromisoformat(raw)
            except ValueError:
                raise _Bad(
                    "bad_timestamp",
                    f"{where}ts {raw[:40]!r} is not RFC 3339 (e.g. 2026-07-14T03:12:00Z)",
                ) from None
            if stamp.tzinfo is None:
                raise _Bad(
                    "bad_timestamp",
                    f"{where}ts {raw!r} has no time zone; add Z or an offset such as +09:00",
                )
            ts_ns = ((stamp - _EPOCH) // _US) * 1000
        else:
            raise _Bad("bad_timestamp", f"{where}ts must be RFC 3339 text or epoch seconds")
        if ts_ns > now_ns + self.max_future_ns:
            ahead = (ts_ns - now_ns) / _NS_PER_S
            raise _Bad(
                "future_timestamp",
                f"{where}ts is {ahead:.0f}s in the future (limit ingest.max_future "
                f"{self.max_future_ns / _NS_PER_S:.0f}s); check the sensor's clock",
            )
        if ts_ns < now_ns - self.max_age_ns:
            age = (now_ns - ts_ns) / _NS_PER_S / 86400
            raise _Bad(
                "stale_timestamp",
                f"{where}ts is {age:.1f} days old (limit ingest.max_age "
                f"{self.max_age_ns / _NS_PER_S / 86400:g} days); check the sensor's clock",
            )
        return ts_ns
