"""What a rule is about: its subjects (sensors, sites or regions) and the sensors of each."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.inventory import Inventory, Sensor
from hub.rules.model import Per, Rule, Selector, SensorCondition, leaves, select
from hub.rules.targets import Place


@dataclass(slots=True)
class SubjectPlan:
    """One subject of a rule: where it is, and every sensor of it that the rule reads."""

    id: str
    place: Place
    sensors: list[Sensor] = field(default_factory=list)


def subject_of(per: Per, sensor: Sensor) -> str | None:
    """The subject a sensor belongs to under `per`; None for a sensor with no site."""
    if per == "sensor":
        return sensor.id
    if per == "site":
        return sensor.site
    return sensor.region


def leaf_chain(rule: Rule, leaf: SensorCondition) -> tuple[Selector, ...]:
    """Every selector that a sensor condition's sensors must match: the rule's, then its own."""
    chain = (rule.sensors,) if rule.sensors is not None else ()
    return chain + ((leaf.sensors,) if leaf.sensors is not None else ())


def sensor_leaves(rule: Rule) -> list[SensorCondition]:
    """The sensor conditions of the trigger, then of the clear condition."""
    trees = [rule.trigger] + ([rule.clear] if rule.clear is not None else [])
    return [c for tree in trees for c in leaves(tree) if isinstance(c, SensorCondition)]


def plan_subjects(rule: Rule, inventory: Inventory) -> dict[str, SubjectPlan]:
    """The rule's subjects by id, sorted, each with the sensors that its conditions read."""
    chains = [leaf_chain(rule, leaf) for leaf in sensor_leaves(rule)]
    if not chains and rule.sensors is not None:
        chains = [(rule.sensors,)]
    found: dict[str, list[Sensor]] = {}
    for chain in chains:
        for sensor in select(inventory.sensors, chain):
            key = subject_of(rule.per, sensor)
            if key is not None:
                group = found.setdefault(key, [])
                if sensor not in group:
                    group.append(sensor)
    plans: dict[str, SubjectPlan] = {}
    for key in sorted(found):
        sensors = sorted(found[key], key=lambda s: s.id)
        plans[key] = SubjectPlan(key, _place(rule.per, key, sensors, inventory), sensors)
    return plans


def _place(per: Per, key: str, sensors: list[Sensor], inventory: Inventory) -> Place:
    first = sensors[0]
    if per == "sensor":
        return Place(first.site, first.region, first.lon, first.lat)
    if per == "site":
        site = inventory.sites.get(key)
        if site is not None:
            return Place(site.id, site.region, site.lon, site.lat)
        return Place(key, first.region, first.lon, first.lat)
    lon = sum(s.lon for s in sensors) / len(sensors)
    lat = sum(s.lat for s in sensors) / len(sensors)
    return Place(None, key, lon, lat)
