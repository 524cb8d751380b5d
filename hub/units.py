"""Sensor kinds, their canonical units, and fast converters built once with pint."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeAlias

import pint

# Canonical unit of each sensor kind (the contract's table). Readings are stored in these.
CANONICAL: dict[str, str] = {
    "water_level": "m",
    "flood_switch": "",
    "rain_rate": "mm/h",
    "rain_total": "mm",
    "tilt": "deg",
    "displacement": "mm",
    "soil_moisture": "%",
    "battery": "V",
}

# How people write "no unit" for a switch, and spellings pint does not know.
_SWITCH_UNITS = frozenset({"", "0/1", "bool", "boolean", "switch", "state"})
# pint counts angles and percentages as dimensionless, so it would happily turn a "%" into
# degrees; for these kinds only the units of the right quantity are accepted.
_DIMENSIONLESS_KINDS = {
    "tilt": frozenset(
        {
            "deg",
            "degree",
            "rad",
            "radian",
            "mrad",
            "milliradian",
            "grad",
            "gon",
            "arcmin",
            "arcminute",
            "arcsec",
            "arcsecond",
        }
    ),
    "soil_moisture": frozenset({"%", "percent"}),
}
_ALIASES = {"°": "deg", "degrees": "deg", "mm/hr": "mm/h", "in/hr": "in/h", "pct": "%"}


class UnitError(ValueError):
    """A unit that does not exist or does not fit the sensor's kind."""


Converter: TypeAlias = Callable[[float], float]


@functools.cache
def _registry() -> Any:
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def _identity(value: float) -> float:
    return value


@functools.cache
def converter(kind: str, unit: str | None) -> Converter:
    """Return a function that turns a value in `unit` into the kind's canonical unit.

    pint is consulted once per (kind, unit) pair; the result is a plain affine function,
    so converting a reading costs a multiply and an add on the hot path.
    """
    if kind not in CANONICAL:
        raise UnitError(f"unknown sensor kind {kind!r}; known kinds: {', '.join(CANONICAL)}")
    target = CANONICAL[kind]
    if unit is None:
        return _identity
    text = _ALIASES.get(unit.strip(), unit.strip())
    if kind == "flood_switch":
        if text in _SWITCH_UNITS:
            return _identity
        raise UnitError(f"unit {unit!r} does not fit a flood_switch, which takes 0/1 and no unit")
    if text == target:
        return _identity
    allowed = _DIMENSIONLESS_KINDS.get(kind)
    if allowed is not None and text not in allowed:
        raise UnitError(
            f"unit {unit!r} does not fit a {kind} sensor, whose readings are in {target}"
        )
    ureg = _registry()
    try:
        source = ureg.Unit(text)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError) as exc:
        raise UnitError(f"unknown unit {unit!r}") from exc
    except Exception as exc:  # pint raises a variety of parser errors for garbage input
        raise UnitError(f"unknown unit {unit!r}") from exc
    try:
        zero = float(ureg.Quantity(0.0, source).to(target).magnitude)
        one = float(ureg.Quantity(1.0, source).to(target).magnitude)
    except pint.errors.DimensionalityError as exc:
        raise UnitError(
            f"unit {unit!r} does not fit a {kind} sensor, whose readings are in {target}"
        ) from exc
    scale = one - zero
    if zero == 0.0:
        if scale == 1.0:
            return _identity
        return functools.partial(float.__mul__, scale)
    return lambda value: value * scale + zero


def check_unit(kind: str, unit: str | None) -> str | None:
    """Return None if `unit` fits `kind`, or a sentence that says why not."""
    try:
        converter(kind, unit)
    except UnitError as exc:
        return str(exc)
    return None
