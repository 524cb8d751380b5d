"""`above`, `below` and `equals`: a reading compared with a level, in any unit that fits."""

from __future__ import annotations

from typing import Any

from hub.config.problems import KeyPath
from hub.rules.conditions.base import SENSOR_KEYS, ConditionKind, Scope, common, register, where
from hub.rules.model import Condition, Quantity, Threshold
from hub.rules.schema import Ctx, fits, quantity

KEYS = ("above", "below", "equals")


def single_kind(ctx: Ctx, path: KeyPath, kinds: set[str] | None) -> str | None:
    """The one kind a condition compares, or None (reported when there are several)."""
    if kinds is None:
        return None
    if len(kinds) > 1:
        ctx.error(
            path,
            f"compares readings of {' and '.join(sorted(kinds))} sensors, whose units differ; "
            "narrow sensors: with kind:",
        )
        return None
    return next(iter(kinds))


def _level(q: Quantity, kind: str | None) -> float:
    return q.canonical(kind) if kind is not None else q.number


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    base = common(ctx, path, data, scope)
    levels: dict[str, Quantity] = {}
    ok = base is not None
    for key in KEYS:
        if key in data:
            found = quantity(ctx, (*path, key), data[key])
            ok = ok and found is not None
            if found is not None:
                levels[key] = found
    if "equals" in levels and len(levels) > 1:
        ctx.error((*path, "equals"), "equals: cannot go with above: or below:", key=True)
        return None
    if not ok or base is None:
        return None
    kind = single_kind(ctx, path, base.kinds)
    if base.kinds is not None and kind is None:
        return None
    if kind is not None and not all(fits(ctx, (*path, k), q, {kind}) for k, q in levels.items()):
        return None
    above, below = levels.get("above"), levels.get("below")
    if above is not None and below is not None and _level(above, kind) >= _level(below, kind):
        ctx.error(
            path,
            f"a value can never be above {above.text} and below {below.text} at the same time; "
            "you probably want two conditions under any:",
        )
        return None
    return Threshold(
        where(path),
        base.own,
        base.match,
        base.hold_s,
        above=above,
        below=below,
        equals=levels.get("equals"),
    )


register(
    ConditionKind(
        keys=KEYS,
        allowed=(*KEYS, *SENSOR_KEYS),
        parse=_parse,
        example="{above: 15 cm, for: 30s}",
    )
)
