"""Compile a rule against the inventory: its subjects, a binding per (leaf, sensor), and
its condition trees as functions of a bit set."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import orjson

from hub.inventory import Inventory, Sensor
from hub.rules.engine.leaves import (
    UNLIMITED,
    DetectionBinding,
    EqualsBinding,
    HeldBinding,
    IncidentBinding,
    MissingBinding,
    RateBinding,
    ThresholdBinding,
)
from hub.rules.engine.subject import SubjectState, Tree
from hub.rules.model import (
    Condition,
    DetectionCondition,
    Group,
    IncidentCondition,
    Match,
    Missing,
    Per,
    Rate,
    Rule,
    SensorCondition,
    Threshold,
    leaves,
    select,
)
from hub.rules.subjects import leaf_chain, plan_subjects, subject_of
from hub.rules.targets import Place

LEVELS: dict[str, int] = {"sensor": 0, "site": 1, "region": 2}
NS = 1_000_000_000


class RuleRuntime:
    """A compiled rule: its subjects and everything the engine indexes by sensor or camera."""

    __slots__ = (
        "cameras",
        "clear",
        "fingerprint",
        "incident_bindings",
        "missing",
        "n_trigger",
        "pos",
        "rule",
        "saved",
        "since",
        "subjects",
        "touched",
        "trigger",
        "wheres",
    )

    def __init__(self, rule: Rule, pos: int) -> None:
        self.rule = rule
        self.pos = pos
        self.fingerprint = rule.fingerprint
        all_leaves = leaves(rule.trigger) + (leaves(rule.clear) if rule.clear else [])
        self.n_trigger = len(leaves(rule.trigger))
        self.wheres = [leaf.where for leaf in all_leaves]
        self.trigger: Tree = _tree(rule.trigger, iter(range(len(all_leaves))))[0]
        clear_bits = iter(range(self.n_trigger, len(all_leaves)))
        self.clear: Tree | None = _tree(rule.clear, clear_bits)[0] if rule.clear else None
        self.subjects: dict[str, SubjectState] = {}
        self.missing: list[MissingBinding] = []
        self.cameras: list[tuple[tuple[str, ...], DetectionBinding]] = []
        self.incident_bindings: list[IncidentBinding] = []
        self.since: int | None = None  # when `missing` conditions began watching
        # The subjects' saved forms (only those not in their initial state), already encoded,
        # and the subjects changed since they were last encoded: see SubjectState.touch.
        self.saved: dict[str, orjson.Fragment] = {}
        self.touched: list[SubjectState] = []


def _tree(cond: Condition, bits: Iterator[int]) -> tuple[Tree, int | None]:
    """A function of the bit set, and the leaf's mask for a leaf; leaves are numbered depth
    first, as `leaves()` lists them."""
    if not isinstance(cond, Group):
        mask = 1 << next(bits)
        return (lambda b: b & mask != 0), mask
    kids = [_tree(child, bits) for child in cond.children]
    masks = [m for _, m in kids]
    if cond.op == "not":
        inner = kids[0][0]
        return (lambda b: not inner(b)), None
    if cond.op in ("all", "any") and all(m is not None for m in masks):
        # A group of leaves is one mask test.
        both = 0
        for m in masks:
            both |= m or 0
        if cond.op == "all":
            return (lambda b: b & both == both), None
        return (lambda b: b & both != 0), None
    fns = [f for f, _ in kids]
    if cond.op == "all":
        return (lambda b: all(f(b) for f in fns)), None
    if cond.op == "any":
        return (lambda b: any(f(b) for f in fns)), None
    n = cond.n
    return (lambda b: sum(1 for f in fns if f(b)) >= n), None


def _need(match: Match, n: int) -> int:
    if match == "any":
        return 1
    if match == "all":
        return max(1, n)
    return match


def _stale(rule: Rule, sensor: Sensor) -> int:
    if rule.stale_after_s is not None:
        return int(rule.stale_after_s * NS)
    if sensor.expected_interval:
        return int(3 * sensor.expected_interval * NS)
    return UNLIMITED


def _sensor_binding(
    rule: Rule, leaf: SensorCondition, subj: SubjectState, bit: int, at: tuple[Sensor, int]
) -> HeldBinding | MissingBinding:
    sensor, k = at
    order = (*subj.order, 0, bit, k)
    if isinstance(leaf, Missing):
        return MissingBinding(subj, bit, sensor.id, order, int(leaf.after_s * NS))
    args = (subj, bit, sensor.id, order)
    hold, stale = int(leaf.hold_s * NS), _stale(rule, sensor)
    if isinstance(leaf, Rate):
        rate = RateBinding(*args, hold=hold, stale=stale)
        amount = leaf.amount.canonical_delta(sensor.kind)
        rate.setup(leaf.direction == "rise", amount, int(leaf.within_s * NS))
        return rate
    assert isinstance(leaf, Threshold)
    if leaf.equals is not None:
        eq = EqualsBinding(*args, hold=hold, stale=stale)
        eq.value = leaf.equals.canonical(sensor.kind)
        return eq
    th = ThresholdBinding(*args, hold=hold, stale=stale)
    th.lo = leaf.above.canonical(sensor.kind) if leaf.above else -math.inf
    th.hi = leaf.below.canonical(sensor.kind) if leaf.below else math.inf
    return th


def _cameras(leaf: DetectionCondition, place: Place, inventory: Inventory) -> tuple[str, ...]:
    if isinstance(leaf.cameras, tuple):
        return tuple(c for c in leaf.cameras if c in inventory.cameras)
    if leaf.cameras == "site":
        if place.site is None:
            return ()
        return tuple(sorted(c.id for c in inventory.cameras.values() if c.site == place.site))
    return tuple(sorted(c.id for c in inventory.cameras.values() if c.region == place.region))


def compile_rule(
    rule: Rule, pos: int, inventory: Inventory, pers: Mapping[str, Per]
) -> RuleRuntime:
    """Compile `rule` (the `pos`-th of its set); `pers` gives every rule's grouping."""
    rt = RuleRuntime(rule, pos)
    all_leaves = leaves(rule.trigger) + (leaves(rule.clear) if rule.clear else [])
    n = len(all_leaves)
    for index, (sid, plan) in enumerate(plan_subjects(rule, inventory).items()):
        rt.subjects[sid] = SubjectState(rt, sid, plan.place, (pos, index), n)
    for bit, leaf in enumerate(all_leaves):
        if isinstance(leaf, SensorCondition):
            groups: dict[str, list[Sensor]] = {}
            for sensor in select(inventory.sensors, leaf_chain(rule, leaf)):
                key = subject_of(rule.per, sensor)
                if key is not None:
                    groups.setdefault(key, []).append(sensor)
            for sid, subj in rt.subjects.items():
                group = groups.get(sid, [])
                subj.need[bit] = _need(leaf.match, len(group))
                for k, sensor in enumerate(group):
                    binding = _sensor_binding(rule, leaf, subj, bit, (sensor, k))
                    subj.bindings.append(binding)
                    if isinstance(binding, MissingBinding):
                        rt.missing.append(binding)
        elif isinstance(leaf, DetectionCondition):
            for subj in rt.subjects.values():
                det = DetectionBinding(
                    subj,
                    bit,
                    (*subj.order, 0, bit, 0),
                    classes=frozenset(leaf.classes),
                    min_count=leaf.min_count,
                    min_score=leaf.min_score,
                    within=int(leaf.within_s * NS),
                    events=frozenset(leaf.events) if leaf.events is not None else None,
                    zones=frozenset(leaf.zones),
                )
                subj.bindings.append(det)
                rt.cameras.append((_cameras(leaf, subj.place, inventory), det))
        else:
            assert isinstance(leaf, IncidentCondition)
            level = max(LEVELS[rule.per], LEVELS[pers.get(leaf.rule, "sensor")])
            for subj in rt.subjects.values():
                key = (subj.id, subj.place.site, subj.place.region)[level]
                inc = IncidentBinding(
                    subj, bit, rule=leaf.rule, states=frozenset(leaf.states), level=level, key=key
                )
                subj.bindings.append(inc)
                rt.incident_bindings.append(inc)
    return rt
