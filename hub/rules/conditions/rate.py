"""`rate`: a rise or fall of at least an amount within a time window."""

from __future__ import annotations

from typing import Any, Literal

from hub.config.problems import KeyPath
from hub.rules.conditions.base import SENSOR_KEYS, ConditionKind, Scope, common, register, where
from hub.rules.conditions.threshold import single_kind
from hub.rules.model import Condition, Rate
from hub.rules.schema import Ctx, duration, fits, mapping, quantity

_EXAMPLE = "{rise: 0.5 deg, within: 1h}"


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    base = common(ctx, path, data, scope)
    rpath = (*path, "rate")
    spec = mapping(ctx, rpath, data["rate"], ("rise", "fall", "within"), _EXAMPLE)
    if spec is None or base is None:
        return None
    directions = [key for key in ("rise", "fall") if key in spec]
    if len(directions) != 1:
        ctx.error(rpath, f"say either rise: or fall:, for example {_EXAMPLE}")
        return None
    direction: Literal["rise", "fall"] = "rise" if directions[0] == "rise" else "fall"
    amount = quantity(ctx, (*rpath, direction), spec[direction])
    if amount is not None and amount.number <= 0:
        ctx.error((*rpath, direction), f"must be more than zero, got {amount.text}")
        amount = None
    if "within" not in spec:
        ctx.error(rpath, f"say within how long, for example {_EXAMPLE}")
        return None
    within = duration(ctx, (*rpath, "within"), spec["within"])
    if amount is None or within is None:
        return None
    kind = single_kind(ctx, path, base.kinds)
    if base.kinds is not None and kind is None:
        return None
    if kind is not None and not fits(ctx, (*rpath, direction), amount, {kind}):
        return None
    return Rate(
        where(path),
        base.own,
        base.match,
        base.hold_s,
        direction=direction,
        amount=amount,
        within_s=within,
    )


register(
    ConditionKind(
        keys=("rate",),
        allowed=("rate", *SENSOR_KEYS),
        parse=_parse,
        example=f"{{rate: {_EXAMPLE}}}",
    )
)
