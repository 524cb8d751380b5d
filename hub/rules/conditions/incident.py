"""`incident`: another rule has an incident, in a given state, for a related subject.

Which rules exist is known only once every file is read, so unknown rule ids and cycles are
checked later, in `hub.rules.check`.
"""

from __future__ import annotations

from typing import Any

from hub.config.problems import KeyPath
from hub.rules.conditions.base import ConditionKind, Scope, register, where
from hub.rules.model import INCIDENT_STATES, Condition, IncidentCondition
from hub.rules.schema import Ctx, choice, mapping, text

_EXAMPLE = "{rule: heavy-rain, state: active}"


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    ipath = (*path, "incident")
    value = data["incident"]
    if isinstance(value, str):
        value = {"rule": value}
    spec = mapping(ctx, ipath, value, ("rule", "state"), _EXAMPLE)
    if spec is None:
        return None
    if "rule" not in spec:
        ctx.error(ipath, f"say which rule's incidents, for example {_EXAMPLE}")
        return None
    rule = text(ctx, (*ipath, "rule"), spec["rule"], "a rule id")
    state: str | None = "open"
    if "state" in spec:
        state = choice(ctx, (*ipath, "state"), spec["state"], INCIDENT_STATES, "incident state")
    if rule is None or state is None:
        return None
    states = ("active", "acknowledged") if state == "open" else (state,)
    return IncidentCondition(where(path), rule, states, (*ipath, "rule"))


register(
    ConditionKind(
        keys=("incident",),
        allowed=("incident",),
        parse=_parse,
        example=f"{{incident: {_EXAMPLE}}}",
        no_for="for: does not go with incident:; an incident already stands for a condition "
        "that held, so put the for: on that rule's trigger",
    )
)
