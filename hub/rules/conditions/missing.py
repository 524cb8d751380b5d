"""`missing`: no reading for a while, measured on the clock rather than on arrivals."""

from __future__ import annotations

from typing import Any

from hub.config.problems import KeyPath
from hub.rules.conditions.base import ConditionKind, Scope, common, register, where
from hub.rules.model import Condition, Missing
from hub.rules.schema import Ctx, duration


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    base = common(ctx, path, data, scope)
    after = duration(ctx, (*path, "missing"), data["missing"])
    if base is None or after is None:
        return None
    return Missing(where(path), base.own, base.match, 0.0, after_s=after)


register(
    ConditionKind(
        keys=("missing",),
        allowed=("missing", "sensors", "match"),
        parse=_parse,
        example="{missing: 5m}",
        no_for="for: does not go with missing:, which already waits; "
        "write the whole time as missing:, e.g. missing: 10m instead of missing: 5m, for: 5m",
    )
)
