"""Rules: the language of `rules/*.yaml`, its validation, and the pure engine that runs it."""

from hub.rules.check import check_rules, check_text, rules_checker
from hub.rules.engine import Engine, SnapshotError
from hub.rules.events import (
    ActionRecord,
    ActionRequested,
    Event,
    Incident,
    IncidentAcknowledged,
    IncidentArchived,
    IncidentCleared,
    IncidentNotFoundError,
    IncidentOpened,
    IncidentStateError,
    IncidentUpdated,
    event_to_dict,
)
from hub.rules.model import Rule, RuleSet

__all__ = [
    "ActionRecord",
    "ActionRequested",
    "Engine",
    "Event",
    "Incident",
    "IncidentAcknowledged",
    "IncidentArchived",
    "IncidentCleared",
    "IncidentNotFoundError",
    "IncidentOpened",
    "IncidentStateError",
    "IncidentUpdated",
    "Rule",
    "RuleSet",
    "SnapshotError",
    "check_rules",
    "check_text",
    "event_to_dict",
    "rules_checker",
]
