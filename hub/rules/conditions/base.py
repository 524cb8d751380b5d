"""The condition registry, the dispatcher, and what every sensor condition shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.config.problems import KeyPath, describe, did_you_mean, format_path
from hub.inventory import Sensor
from hub.rules.model import Condition, Match, Per, Selector, select
from hub.rules.schema import Ctx, Registry, duration, integer, mapping
from hub.rules.selectors import kinds_of, parse_selector, selected


@dataclass(frozen=True, slots=True)
class Scope:
    """What a condition needs to know about where it is written."""

    per: Per
    in_clear: bool
    rule_chain: tuple[Selector, ...]  # the rule's own `sensors:`, if any
    rule_id: str


Parser = Callable[[Ctx, KeyPath, dict[str, Any], Scope], Condition | None]


@dataclass(frozen=True, slots=True)
class ConditionKind:
    """A kind of condition: the keys that announce it, every key it takes, its parser."""

    keys: tuple[str, ...]
    allowed: tuple[str, ...]
    parse: Parser
    example: str
    # Why `for:` cannot go on this kind, said so that people know what to write instead.
    no_for: str | None = None


CONDITIONS: Registry[ConditionKind] = Registry("condition")


def register(kind: ConditionKind) -> ConditionKind:
    """Register a condition kind under each of its announcing keys."""
    return CONDITIONS.register(*kind.keys)(kind)


def where(path: KeyPath) -> str:
    """A condition's path as evidence and messages show it."""
    return format_path(path)


def _kinds() -> list[ConditionKind]:
    found: list[ConditionKind] = []
    for name in CONDITIONS.names():
        kind = CONDITIONS.get(name)
        if kind is not None and kind not in found:
            found.append(kind)
    return found


_ORDER = (
    *("above", "below", "equals", "rate", "missing", "incident", "detection", "camera_event"),
    *("all", "any"),
)


def _preference(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def parse_condition(ctx: Ctx, path: KeyPath, value: object, scope: Scope) -> Condition | None:
    """Any condition: its kind is told by its keys (`above`, `rate`, `all`, ...)."""
    example = "{above: 15 cm, for: 30s}"
    if not isinstance(value, dict):
        ctx.error(path, f"expected a condition such as {example}, got {describe(value)}")
        return None
    kinds: list[ConditionKind] = []
    for key in value:
        kind = CONDITIONS.get(str(key))
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    if not kinds:
        announcing = sorted((n for n in CONDITIONS.names() if n != "of"), key=_preference)
        every = sorted({k for kind in _kinds() for k in kind.allowed})
        unknown = [k for k in value if k not in every]
        for key in unknown:
            hint = did_you_mean(key, every)
            ctx.error((*path, str(key)), f"unknown key {str(key)!r}{hint}", key=True)
        if not unknown:
            ctx.error(path, f"a condition needs one of {', '.join(announcing)}")
        return None
    if len(kinds) > 1:
        found = [str(k) for k in value if CONDITIONS.get(str(k)) is not None]
        ctx.error(
            path,
            f"a condition tests one thing, and {' and '.join(found)} are different tests; "
            "write them as separate conditions under all: or any:",
        )
        return None
    kind = kinds[0]
    if "for" in value and kind.no_for is not None:
        ctx.error((*path, "for"), kind.no_for, key=True)
        return None
    data = mapping(ctx, path, value, kind.allowed, kind.example)
    if data is None:
        return None
    return kind.parse(ctx, path, data, scope)


SENSOR_KEYS = ("sensors", "match", "for")


@dataclass(frozen=True, slots=True)
class Common:
    """The parts of a sensor condition that every kind of them has."""

    chain: tuple[Selector, ...]
    own: Selector | None
    match: Match
    hold_s: float
    sensors: list[Sensor] | None  # None without an inventory
    kinds: set[str] | None  # None when not knowable


def _match(ctx: Ctx, path: KeyPath, value: object) -> Match | None:
    if value in ("any", "all"):
        return "any" if value == "any" else "all"
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(ctx, path, value, 1)
    ctx.error(path, f"expected any, all or a number of sensors, got {describe(value)}")
    return None


def common(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Common | None:
    """Parse `sensors`, `match` and `for` of a sensor condition."""
    ok = True
    own: Selector | None = None
    grouped = scope.per != "sensor"
    if "sensors" in data:
        if not grouped:
            ctx.error(
                (*path, "sensors"),
                "a condition's own sensors: needs per: site or per: region; with per: sensor "
                "each incident is about one of the rule's sensors",
                key=True,
            )
            ok = False
        else:
            own = parse_selector(ctx, (*path, "sensors"), data["sensors"])
            ok = ok and own is not None
    match: Match | None = "all" if scope.in_clear and grouped else "any"
    if "match" in data:
        if not grouped:
            ctx.error(
                (*path, "match"),
                "match: counts the sensors of a site or region; it needs per: site or per: region",
                key=True,
            )
            ok = False
        else:
            match = _match(ctx, (*path, "match"), data["match"])
    hold = 0.0
    if "for" in data:
        found = duration(ctx, (*path, "for"), data["for"])
        ok = ok and found is not None
        hold = found or 0.0
    chain = scope.rule_chain + ((own,) if own is not None else ())
    if ok and not chain:
        ctx.error(path, "say which sensors this condition reads: add sensors: here or on the rule")
        return None
    if not ok or match is None:
        return None
    if own is None:
        # The rule's own `sensors:` was checked, and an empty selection reported, there.
        sensors = None if ctx.inventory is None else select(ctx.inventory.sensors, chain)
    else:
        sensors = selected(ctx, (*path, "sensors"), chain)
    if sensors is not None and not sensors:
        return None
    return Common(chain, own, match, hold, sensors, kinds_of(chain, sensors))
