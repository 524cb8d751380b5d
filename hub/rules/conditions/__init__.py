"""Condition kinds, one module each, registered in `CONDITIONS` when imported here."""

from hub.rules.conditions import detection, groups, incident, missing, rate, threshold
from hub.rules.conditions.base import CONDITIONS, ConditionKind, Scope, parse_condition
from hub.rules.conditions.groups import GROUP_KEYS, parse_group

__all__ = [
    "CONDITIONS",
    "GROUP_KEYS",
    "ConditionKind",
    "Scope",
    "detection",
    "groups",
    "incident",
    "missing",
    "parse_condition",
    "parse_group",
    "rate",
    "threshold",
]
