"""What a rule file says, once validated: plain frozen data, no behaviour.

Sets of names are kept as sorted tuples, so that `repr` is the same in every process and a
rule's fingerprint (which decides what survives a hot reload or a restart) is stable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from hub.inventory import Sensor
from hub.rules.index import sensor_index
from hub.units import converter

SEVERITIES = ("minor", "moderate", "severe", "extreme")
MODES = ("single", "update", "restart")
GROUPINGS = ("sensor", "site", "region")
INCIDENT_STATES = ("open", "active", "acknowledged", "cleared")

Severity: TypeAlias = Literal["minor", "moderate", "severe", "extreme"]
Mode: TypeAlias = Literal["single", "update", "restart"]
Per: TypeAlias = Literal["sensor", "site", "region"]
# How many of a subject's sensors must satisfy a condition: "any", "all", or at least N.
Match: TypeAlias = Literal["any", "all"] | int


@dataclass(frozen=True, slots=True)
class Selector:
    """Which sensors: every non-empty field must match (a field lists alternatives)."""

    ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    site_types: tuple[str, ...] = ()

    def matches(self, sensor: Sensor) -> bool:
        """Whether `sensor` is one of the sensors this selector picks."""
        return (
            (not self.ids or sensor.id in self.ids)
            and (not self.kinds or sensor.kind in self.kinds)
            and (not self.regions or sensor.region in self.regions)
            and (not self.sites or sensor.site in self.sites)
            and (not self.site_types or sensor.site_type in self.site_types)
        )


def as_severity(value: str) -> Severity:
    """`value` as a Severity; it must be one of SEVERITIES."""
    for level in ("minor", "moderate", "severe", "extreme"):
        if value == level:
            return level
    raise ValueError(f"unknown severity {value!r}")


def select(sensors: dict[str, Sensor], chain: tuple[Selector, ...]) -> list[Sensor]:
    """The sensors that every selector of `chain` picks, sorted by id."""
    return sensor_index(sensors).select(chain)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with the unit it was written in (None: the kind's canonical unit)."""

    number: float
    unit: str | None
    text: str

    def canonical(self, kind: str) -> float:
        """The value in `kind`'s canonical unit."""
        return converter(kind, self.unit)(self.number)

    def canonical_delta(self, kind: str) -> float:
        """A difference (a rise or a fall) in `kind`'s canonical unit: no offset."""
        conv = converter(kind, self.unit)
        return conv(self.number) - conv(0.0)


# -- conditions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SensorCondition:
    """Common part of the conditions that look at sensors' readings."""

    where: str  # the condition's path in the rule, e.g. "trigger.all[0]"; used in evidence
    sensors: Selector | None
    match: Match
    hold_s: float  # `for`; 0 when absent


@dataclass(frozen=True, slots=True)
class Threshold(SensorCondition):
    """`above`, `below` (a band when both) or `equals`; strict comparisons."""

    above: Quantity | None = None
    below: Quantity | None = None
    equals: Quantity | None = None


@dataclass(frozen=True, slots=True)
class Rate(SensorCondition):
    """A rise (or fall) of at least `amount` within `within_s` seconds."""

    direction: Literal["rise", "fall"] = "rise"
    amount: Quantity = Quantity(0.0, None, "0")
    within_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Missing(SensorCondition):
    """No reading for `after_s` seconds, measured on the clock."""

    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class IncidentCondition:
    """Another rule has an incident in one of `states` for a related subject."""

    where: str
    rule: str
    states: tuple[str, ...]
    # Where `rule:` was written, relative to the rule, for the check that the rule exists.
    path: tuple[str | int, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DetectionCondition:
    """A detection result with at least `min_count` objects of `classes`, `within_s` old; or,
    with `events`, a camera event of one of those kinds (`camera_event`), in one of `zones`
    (any zone, or none, when empty), about at least `min_count` objects of `classes`."""

    where: str
    classes: tuple[str, ...]
    min_count: int
    min_score: float
    within_s: float
    cameras: str | tuple[str, ...]  # "site", "region", or camera ids
    events: tuple[str, ...] | None = None  # None: detection results; else camera event kinds
    zones: tuple[str, ...] = ()  # camera events in these zones or on these lines only


@dataclass(frozen=True, slots=True)
class Group:
    """`all`, `any`, or `at_least: n` of the child conditions; or `not` of its one child."""

    where: str
    op: Literal["all", "any", "at_least", "not"]
    n: int
    children: tuple[Condition, ...]


Leaf: TypeAlias = Threshold | Rate | Missing | IncidentCondition | DetectionCondition
Condition: TypeAlias = Leaf | Group


def leaves(condition: Condition) -> list[Leaf]:
    """The leaf conditions of a tree, depth first, left to right."""
    if isinstance(condition, Group):
        return [leaf for child in condition.children for leaf in leaves(child)]
    return [condition]


# -- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Targets:
    """Which cameras or actuators: those of the subject's `site` or `region`, the `nearest`
    (up to `count` within `within_m`), or listed `ids`; `kinds` filters actuators."""

    how: Literal["site", "region", "nearest", "ids"]
    ids: tuple[str, ...] = ()
    count: int = 0
    within_m: float = 0.0
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Detect:
    """Ask the detectors to look through cameras for these classes."""

    cameras: Targets
    classes: tuple[str, ...]
    min_score: float | None = None


@dataclass(frozen=True, slots=True)
class Actuate:
    """Command actuators; `on_clear` is the command sent when the incident clears."""

    actuators: Targets
    command: str
    on_clear: str | None = None
    expires_s: float | None = None
    text: str | None = None  # what a sign shows (the command's `text`)


@dataclass(frozen=True, slots=True)
class Notify:
    """Send a message to channels (and to the region's contacts if asked)."""

    channels: tuple[str, ...]
    region_contacts: bool = False
    message: str | None = None


Action: TypeAlias = Detect | Actuate | Notify


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """After `after_s` on the clock, unless acknowledged: run actions, maybe raise severity."""

    after_s: float
    unless_acknowledged: bool
    actions: tuple[Action, ...]
    severity: Severity | None = None


# -- rules --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule."""

    id: str
    title: str
    severity: Severity
    mode: Mode
    per: Per
    sensors: Selector | None
    trigger: Condition
    clear: Condition | None
    actions: tuple[Action, ...] = ()
    on_clear: tuple[Action, ...] = ()
    escalate: tuple[EscalationStep, ...] = ()
    stale_after_s: float | None = None
    archive_after_s: float = 86400.0
    description: str = ""
    source: str = field(default="", compare=False)  # "file:line", for messages

    @property
    def fingerprint(self) -> str:
        """A digest of everything that decides when the rule triggers and clears.

        Rules with the same fingerprint can keep each other's evaluation state; titles,
        actions and escalation may change without losing it.
        """
        key = repr((self.per, self.sensors, self.trigger, self.clear, self.stale_after_s))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def depends_on(self) -> set[str]:
        """The ids of the rules whose incidents this rule's conditions look at."""
        found = set()
        for tree in (self.trigger, self.clear):
            if tree is not None:
                found |= {c.rule for c in leaves(tree) if isinstance(c, IncidentCondition)}
        return found


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Validated rules, in file order; dependencies may come in any order."""

    rules: tuple[Rule, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, if any."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    @property
    def ids(self) -> list[str]:
        """The rule ids, in order."""
        return [rule.id for rule in self.rules]
