"""Small validators for rule files: each reports what is wrong where it was written, and
returns None so that checking goes on and every problem is found in one pass."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hub.config.problems import KeyPath, Problem, describe, did_you_mean, format_path
from hub.config.yaml_source import SourceMap
from hub.durations import DurationError, parse_duration
from hub.inventory import Inventory
from hub.rules.model import Quantity
from hub.units import CANONICAL, UnitError, converter

T = TypeVar("T")

_QUANTITY = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*")
_DISTANCE = {"m": 1.0, "km": 1000.0}

# Counts in rules (sensors matched, targets, detections) count things in the inventory or in
# a frame: a million is more than any province holds, and a small int wherever it goes.
MAX_COUNT = 1_000_000
# Thresholds and amounts: no reading of any sensor kind comes near a trillion in any unit,
# and a number this size stays finite through every unit conversion.
MAX_MAGNITUDE = 1e12
# Distances on Earth: no two places are farther apart than half its circumference.
MAX_DISTANCE_M = 20_000_000.0


@dataclass
class Ctx:
    """Where problems go while one rule file is checked; paths are relative to `base`."""

    file: str
    where: SourceMap
    inventory: Inventory | None
    base: KeyPath = ()
    problems: list[Problem] = field(default_factory=list)
    # The commands each kind of actuator takes (hub.yaml's `actuators.commands`), which
    # `actuate` actions are held to; None: not checked.
    commands: Mapping[str, Sequence[str]] | None = None

    def error(self, path: KeyPath, message: str, *, key: bool = False) -> None:
        """Report `message` about the value (or with key=True, the key) at `path`."""
        pos = self.where.nearest(self.base + path, key=key)
        line, col = (pos.line, pos.col) if pos else (0, 0)
        label = format_path(path)
        self.problems.append(
            Problem(self.file, line, col, f"{label}: {message}" if label else message)
        )

    def position(self, path: KeyPath) -> str:
        """`file:line` of the value at `path`, for messages that point at another place."""
        pos = self.where.nearest(self.base + path)
        return f"{self.file}:{pos.line}" if pos else self.file


class Registry(Generic[T]):
    """Named plugins (condition kinds, action kinds), registered by decorator."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Register the decorated object under each of `names`."""

        def add(item: T) -> T:
            for name in names:
                if name in self._items:
                    raise ValueError(f"{self.what} {name!r} is registered twice")
                self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T | None:
        """The plugin registered as `name`, if any."""
        return self._items.get(name)

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def mapping(
    ctx: Ctx, path: KeyPath, value: object, known: Sequence[str], example: str
) -> dict[str, Any] | None:
    """A mapping whose keys are all in `known`; unknown keys get "did you mean"."""
    if not isinstance(value, dict):
        ctx.error(path, f"expected a mapping such as {example}, got {describe(value)}")
        return None
    for key in value:
        if key not in known:
            hint = did_you_mean(key, known) or f"; expected one of {', '.join(known)}"
            ctx.error((*path, str(key)), f"unknown key {str(key)!r}{hint}", key=True)
    return value


def choice(ctx: Ctx, path: KeyPath, value: object, choices: Sequence[str], what: str) -> str | None:
    """One of `choices`, with "did you mean" for near misses."""
    if isinstance(value, str) and value in choices:
        return value
    hint = did_you_mean(value, choices) or f"; expected one of {', '.join(choices)}"
    ctx.error(path, f"unknown {what} {describe(value)}{hint}")
    return None


def text(ctx: Ctx, path: KeyPath, value: object, what: str = "text") -> str | None:
    """A non-empty string."""
    if isinstance(value, str) and value.strip():
        return value
    ctx.error(path, f"expected {what}, got {describe(value)}")
    return None


def names(ctx: Ctx, path: KeyPath, value: object, what: str) -> tuple[str, ...] | None:
    """One name or a list of names, as a tuple without repeats (order kept)."""
    items = [value] if isinstance(value, str) else value
    if items == []:
        ctx.error(path, f"expected at least one {what}, got an empty list")
        return None
    if not isinstance(items, list):
        ctx.error(path, f"expected a {what} or a list of them, got {describe(value)}")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(items):
        where = path if isinstance(value, str) else (*path, i)
        if not isinstance(item, str) or not item.strip():
            ctx.error(where, f"expected a {what}, got {describe(item)}")
            ok = False
        elif item not in out:
            out.append(item)
    return tuple(out) if ok else None


def known_names(
    ctx: Ctx, path: KeyPath, value: object, choices: Iterable[str] | None, what: str
) -> tuple[str, ...] | None:
    """Like `names`, and each must be one of `choices` (unless None: not knowable here)."""
    found = names(ctx, path, value, what)
    if found is None or choices is None:
        return found
    pool = sorted(set(choices))
    ok = True
    for i, name in enumerate(found):
        if name not in pool:
            where = path if isinstance(value, str) else (*path, i)
            hint = did_you_mean(name, pool)
            ctx.error(where, f"unknown {what} {name!r}{hint}")
            ok = False
    return found if ok else None


def duration(ctx: Ctx, path: KeyPath, value: object) -> float | None:
    """A positive duration such as 30s, 5m or 1h30m, in seconds."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        ctx.error(path, f"expected a duration such as 30s or 5m, got {describe(value)}")
        return None
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        ctx.error(path, str(exc))
        return None
    if seconds <= 0:
        ctx.error(path, f"a duration here must be longer than zero, got {value!r}")
        return None
    return seconds


def integer(
    ctx: Ctx, path: KeyPath, value: object, minimum: int, maximum: int = MAX_COUNT
) -> int | None:
    """A whole number from `minimum` to `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.error(path, f"expected a whole number, got {describe(value)}")
        return None
    if value < minimum:
        ctx.error(path, f"must be at least {minimum}, got {_number(value)}")
        return None
    if value > maximum:
        ctx.error(path, f"must be at most {maximum}, got {_number(value)}")
        return None
    return value


def _number(value: int | float) -> str:
    """A number in a message: as written, unless it runs to hundreds of digits."""
    if isinstance(value, int) and value.bit_length() > 64:
        return describe(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _finite(ctx: Ctx, path: KeyPath, number: float, shown: object) -> bool:
    """Whether `number` is finite and at most MAX_MAGNITUDE either side of zero."""
    if math.isfinite(number) and abs(number) <= MAX_MAGNITUDE:
        return True
    ctx.error(
        path,
        f"a number here is from {-MAX_MAGNITUDE:g} to {MAX_MAGNITUDE:g} "
        f"(not NaN or infinity), got {shown}",
    )
    return False


def fraction(ctx: Ctx, path: KeyPath, value: object) -> float | None:
    """A number from 0 to 1, such as a detection score."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        ctx.error(path, f"expected a number from 0 to 1, got {describe(value)}")
        return None
    return float(value)


def quantity(ctx: Ctx, path: KeyPath, value: object) -> Quantity | None:
    """A number with an optional unit: `15 cm`, `0.5 deg`, `30 mm/h`, or a bare number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        ctx.error(path, f"expected a number with a unit such as 15 cm, got {describe(value)}")
        return None
    if isinstance(value, int | float):
        number = float(value) if abs(value) <= MAX_MAGNITUDE else math.inf
        if not _finite(ctx, path, number, _number(value)):
            return None
        return Quantity(number, None, f"{value:g}")
    match = _QUANTITY.fullmatch(value)
    if match is None:
        ctx.error(path, f"cannot read {value!r} as a number with a unit, such as 15 cm")
        return None
    if not _finite(ctx, path, float(match.group(1)), repr(value.strip())):
        return None
    unit = match.group(2) or None
    if unit is not None and not any(_fits(kind, unit) for kind in CANONICAL):
        ctx.error(path, f"unknown unit {unit!r} in {value!r}")
        return None
    return Quantity(float(match.group(1)), unit, value.strip())


def distance(ctx: Ctx, path: KeyPath, value: object) -> float | None:
    """A distance such as `300 m` or `1.5 km`, in metres, up to MAX_DISTANCE_M."""
    metres: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        metres = float(value) if value <= MAX_DISTANCE_M else math.inf
    elif isinstance(value, str):
        match = _QUANTITY.fullmatch(value)
        if match is not None and match.group(2) in _DISTANCE and float(match.group(1)) > 0:
            metres = float(match.group(1)) * _DISTANCE[match.group(2)]
    if metres is None:
        ctx.error(path, f"expected a distance such as 300 m or 1.5 km, got {describe(value)}")
        return None
    if metres > MAX_DISTANCE_M:  # infinity too; NaN is not above zero, so refused above
        limit = f"{MAX_DISTANCE_M / 1000:g} km"
        ctx.error(path, f"a distance here is at most {limit}, got {describe(value)}")
        return None
    return metres


def _fits(kind: str, unit: str | None) -> bool:
    try:
        converter(kind, unit)
    except UnitError:
        return False
    return True


def fits(ctx: Ctx, path: KeyPath, amount: Quantity, kinds: Iterable[str]) -> bool:
    """Whether `amount`'s unit fits every kind in `kinds`; reports the first that it does not."""
    for kind in sorted(kinds):
        try:
            converter(kind, amount.unit)
        except UnitError:
            unit = CANONICAL[kind] or "no unit (0/1)"
            ctx.error(
                path,
                f"{amount.text} does not fit the selected {kind} sensors, "
                f"whose readings are in {unit}",
            )
            return False
    return True
