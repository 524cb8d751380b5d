"""Read and check rule files: every problem in every file in one pass, like a compiler."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hub.actuators.config import DEFAULT_COMMANDS
from hub.config.paths import collect_files
from hub.config.problems import ConfigError, Problem, describe, did_you_mean, display_path
from hub.config.yaml_source import parse_yaml
from hub.inventory import Inventory
from hub.rules.model import IncidentCondition, Rule, RuleSet, leaves
from hub.rules.parse import parse_rule
from hub.rules.schema import Ctx, mapping

if TYPE_CHECKING:
    from hub.config import HubConfig

RULE_SUFFIXES = (".yaml", ".yml")
# The commands each kind of actuator takes, by kind (hub.yaml's `actuators.commands`).
Commands = Mapping[str, Sequence[str]]


@dataclasses.dataclass(slots=True)
class _Entry:
    """A rule as written: its id (if it has one), the parsed rule (if it parsed), its place."""

    id: str | None
    rule: Rule | None
    ctx: Ctx


def _read_file(
    path: Path, inventory: Inventory | None, commands: Commands
) -> tuple[list[_Entry], list[Problem]]:
    file = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [Problem(file, 0, 0, f"not UTF-8 text (bad byte at offset {exc.start})")]
    except OSError as exc:
        return [], [Problem(file, 0, 0, f"cannot read this file: {exc.strerror}")]
    return _read_text(text, file, inventory, commands)


def _read_text(
    text: str, file: str, inventory: Inventory | None, commands: Commands
) -> tuple[list[_Entry], list[Problem]]:
    try:
        data, where, problems = parse_yaml(text, file)
    except ConfigError as exc:
        return [], exc.problems
    ctx = Ctx(file, where, inventory, problems=list(problems), commands=commands)
    if data is None:
        return [], ctx.problems
    top = mapping(ctx, (), data, ("rules",), "rules: [...]")
    if top is None:
        return [], ctx.problems
    items = top.get("rules")
    if "rules" not in top:
        if not top:  # unknown keys were reported already
            ctx.error((), "rules: is missing; a rule file holds rules: [...]")
        return [], ctx.problems
    if not isinstance(items, list):
        ctx.error(("rules",), f"expected a list of rules, got {describe(items)}")
        return [], ctx.problems
    entries: list[_Entry] = []
    for i, item in enumerate(items):
        rule_ctx = dataclasses.replace(ctx, base=("rules", i))  # shares the problem list
        rule = parse_rule(rule_ctx, item)
        raw_id = item.get("id") if isinstance(item, dict) else None
        entries.append(_Entry(raw_id if isinstance(raw_id, str) else None, rule, rule_ctx))
    return entries, ctx.problems


def _cycles(entries: list[_Entry]) -> None:
    """Report each cycle of incident conditions once, at its first rule in file order."""
    where: dict[str, _Entry] = {}
    for e in entries:  # a duplicate id is reported on its own; the first one counts here
        if e.rule is not None:
            where.setdefault(e.rule.id, e)
    graph = {rid: sorted(e.rule.depends_on()) for rid, e in where.items() if e.rule}
    reported: set[frozenset[str]] = set()
    for start in graph:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    cycle = frozenset(trail)
                    if cycle not in reported:
                        reported.add(cycle)
                        loop = " -> ".join([*trail, start])
                        where[start].ctx.error(
                            ("id",),
                            f"rule {start} depends on its own incidents through {loop}; "
                            "incident conditions cannot form a cycle",
                        )
                elif nxt not in trail and nxt in graph:
                    stack.append((nxt, [*trail, nxt]))


def _cross_checks(entries: list[_Entry]) -> None:
    first: dict[str, _Entry] = {}
    for entry in entries:
        if entry.id is None:
            continue
        if entry.id in first:
            other = first[entry.id].ctx.position(("id",))
            entry.ctx.error(("id",), f"duplicate rule id {entry.id!r}; it is already at {other}")
        else:
            first[entry.id] = entry
    for entry in entries:
        rule = entry.rule
        if rule is None:
            continue
        for tree in (rule.trigger, rule.clear):
            for leaf in leaves(tree) if tree is not None else []:
                if isinstance(leaf, IncidentCondition) and leaf.rule not in first:
                    hint = did_you_mean(leaf.rule, first)
                    entry.ctx.error(leaf.path, f"unknown rule {leaf.rule!r}{hint}")
    _cycles(entries)


def rule_files(paths: Iterable[Path]) -> tuple[list[Path], list[Problem]]:
    """The rule files named by `paths` (folders expanded), and problems with the paths."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem(display_path(path), 0, 0, "no such file or folder"))
        files.extend(collect_files([path], RULE_SUFFIXES))
    return files, problems


def check_rules(
    paths: Iterable[Path], inventory: Inventory | None, commands: Commands | None = None
) -> tuple[RuleSet | None, list[Problem]]:
    """Read every rule file; return the rules, or None and every problem, sorted.

    Without an inventory (when it has problems of its own), the checks that need it
    (sensor ids, sites, regions, units of selected sensors, empty selections, the kinds of
    the actuators an action finds) are skipped. `commands` are the commands each actuator
    kind takes (hub.yaml's `actuators.commands`; by default its defaults): an `actuate`
    action with any other is a problem. The rules are meant for an Engine on the inventory
    they were checked against: check them again when the inventory changes.
    """
    files, problems = rule_files(paths)
    taken = DEFAULT_COMMANDS if commands is None else commands
    return _check([_read_file(file, inventory, taken) for file in files], problems)


def check_text(
    text: str, file: str, inventory: Inventory | None, commands: Commands | None = None
) -> tuple[RuleSet | None, list[Problem]]:
    """Like check_rules, for one file's text (an editor's buffer, a test)."""
    taken = DEFAULT_COMMANDS if commands is None else commands
    return _check([_read_text(text, file, inventory, taken)], [])


def _check(
    sources: list[tuple[list[_Entry], list[Problem]]], problems: list[Problem]
) -> tuple[RuleSet | None, list[Problem]]:
    entries: list[_Entry] = []
    for found, file_problems in sources:
        entries += found
        problems += file_problems
    # Every file's Ctx shares its problem list; cross-file checks append to the same lists.
    shared: list[Problem] = []
    for entry in entries:
        entry.ctx = dataclasses.replace(entry.ctx, problems=shared)
    _cross_checks(entries)
    problems = sorted(set(problems) | set(shared))
    return (None, problems) if problems else (_ruleset(entries), [])


def _ruleset(entries: list[_Entry]) -> RuleSet:
    return RuleSet(tuple(e.rule for e in entries if e.rule is not None))


def rules_checker(config: HubConfig, inventory: Inventory | None) -> list[Problem]:
    """For `hub check`: the problems of the rule files that the configuration names."""
    # Paths that do not exist are reported by the configuration's own check.
    return check_rules(config.rule_files(), inventory, config.actuators.commands)[1]
