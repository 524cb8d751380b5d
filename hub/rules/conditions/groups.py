"""`all`, `any`, `at_least` + `of`, and `not`: conditions made of conditions."""

from __future__ import annotations

from typing import Any

from hub.config.problems import KeyPath, describe
from hub.rules.conditions.base import ConditionKind, Scope, parse_condition, register, where
from hub.rules.model import Condition, Group
from hub.rules.schema import Ctx, integer

GROUP_KEYS = ("all", "any", "at_least", "of", "not")


def _children(ctx: Ctx, path: KeyPath, value: object, scope: Scope) -> list[Condition] | None:
    if not isinstance(value, list) or not value:
        ctx.error(path, f"expected a list of conditions, got {describe(value)}")
        return None
    found = [parse_condition(ctx, (*path, i), item, scope) for i, item in enumerate(value)]
    kept = [c for c in found if c is not None]
    return kept if len(kept) == len(found) else None


def parse_group(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Group | None:
    """A group condition, from a condition's or a rule's `all`/`any`/`at_least`+`of` keys."""
    ops = [key for key in ("all", "any", "at_least", "not") if key in data]
    if len(ops) > 1:
        ctx.error(
            path,
            f"{' and '.join(ops)} cannot go together; nest one inside the other, e.g. "
            "all: [{any: [...]}, ...]",
        )
        return None
    if not ops:
        ctx.error((*path, "of"), "of: needs at_least: N before it", key=True)
        return None
    op = ops[0]
    if op == "not":
        if "of" in data:
            ctx.error((*path, "of"), "of: goes with at_least:, not with not:", key=True)
            return None
        child = parse_condition(ctx, (*path, "not"), data["not"], scope)
        return None if child is None else Group(where(path), "not", 0, (child,))
    if op != "at_least":
        if "of" in data:
            ctx.error((*path, "of"), f"of: goes with at_least:, not with {op}:", key=True)
            return None
        children = _children(ctx, (*path, op), data[op], scope)
        if children is None:
            return None
        return Group(where(path), "all" if op == "all" else "any", 0, tuple(children))
    n = integer(ctx, (*path, "at_least"), data["at_least"], 1)
    if "of" not in data:
        ctx.error((*path, "at_least"), "at_least: needs of: with the list of conditions", key=True)
        return None
    children = _children(ctx, (*path, "of"), data["of"], scope)
    if n is None or children is None:
        return None
    if n > len(children):
        ctx.error(
            (*path, "at_least"),
            f"at_least: {n} but of: has only {len(children)} conditions, so it can never hold",
        )
        return None
    return Group(where(path), "at_least", n, tuple(children))


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    return parse_group(ctx, path, data, scope)


register(
    ConditionKind(
        keys=GROUP_KEYS,
        allowed=GROUP_KEYS,
        parse=_parse,
        example="{any: [{above: 15 cm}, {rate: {rise: 5 cm, within: 5m}}]}",
        no_for="for: goes on each sensor condition inside all:, any: or at_least:, "
        "not on the group",
    )
)
