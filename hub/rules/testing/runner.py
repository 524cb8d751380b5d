"""Run rule test files through the engine and compare the events with the expected ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config.problems import ConfigError, Problem, describe, display_path
from hub.config.yaml_source import parse_yaml
from hub.ingest.validate import Reading
from hub.inventory import Inventory, load_inventory
from hub.rules.check import check_rules
from hub.rules.engine import Engine
from hub.rules.events import ActionRequested, Event, IncidentUpdated
from hub.rules.model import RuleSet
from hub.rules.schema import Ctx, mapping
from hub.rules.testing.spec import NS, Case, Expect, Step, parse_case, paths
from hub.units import UnitError, converter


@dataclass(slots=True)
class CaseResult:
    """How one test went: `lines` explain a failure."""

    case: Case
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FileResult:
    """How one test file went: problems stop it from running at all."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)


class StepError(Exception):
    """A step that cannot be carried out, such as acknowledging an incident that is not open."""


def relative(ns: int) -> str:
    """A time after the start as tests write it: 0s, 30s, 10m30s, 1h, 250ms."""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns % NS:
        return f"{sign}{ns / 1e6:g}ms"
    seconds = ns // NS
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + ("".join(parts) or "0s")


def _fields(event: Event) -> dict[str, Any]:
    if isinstance(event, ActionRequested):
        out: dict[str, Any] = {
            "kind": event.kind,
            "rule": event.rule,
            "subject": event.subject,
            "step": event.step,
        }
        for key in ("command", "actuators", "cameras", "channels", "classes", "message", "text"):
            if key in event.params:
                out[key] = event.params[key]
        return out
    inc = event.incident
    out = {"rule": inc.rule, "subject": inc.subject, "severity": inc.severity, "state": inc.state}
    out.update(title=inc.title, site=inc.site, region=inc.region, by=inc.acked_by)
    if isinstance(event, IncidentUpdated):
        out["reason"] = event.reason
    return out


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(actual, list) and not isinstance(expected, list):
        return actual == [expected]
    return bool(expected == actual)


def matches(expect: Expect, event: Event, start: int) -> bool:
    """Whether an event is the expected one: same time, kind, and every field given."""
    if event.at - start != expect.at or event.name != expect.event:
        return False
    found = _fields(event)
    return all(_same(v, found.get(k)) for k, v in expect.fields.items())


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def render_event(event: Event, start: int) -> str:
    """One line for an actual event."""
    f = _fields(event)
    head = f"{relative(event.at - start):>9}  {event.name}"
    if isinstance(event, ActionRequested):
        rest = [f"{k}={_text(f[k])}" for k in f if k not in ("kind", "rule", "subject")]
        return f"{head} {f['kind']} {f['rule']} {f['subject']} " + " ".join(rest)
    extra = f" severity={f['severity']}"
    if f.get("reason"):
        extra += f" reason={f['reason']}"
    if event.name == "acknowledged":
        extra += f" by={f['by']}"
    return f"{head} {f['rule']} {f['subject']}{extra}"


def render_expect(expect: Expect) -> str:
    """One line for an expected event, with only the fields the test gives."""
    f = dict(expect.fields)
    first = f.pop("kind" if expect.event == "action" else "rule")
    subject = f.pop("subject", None)
    rule = f.pop("rule", None) if expect.event == "action" else None
    words = [str(w) for w in (first, rule, subject) if w is not None]
    words += [f"{k}={_text(v)}" for k, v in f.items()]
    return f"{relative(expect.at):>9}  {expect.event} " + " ".join(words)


def diff(expected: list[Expect], actual: list[Event], start: int) -> list[str]:
    """Expected (-) and actual (+) events aligned on what matches (longest common run)."""
    n, m = len(expected), len(actual)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if matches(expected[i], actual[j], start):
                best[i][j] = best[i + 1][j + 1] + 1
            else:
                best[i][j] = max(best[i + 1][j], best[i][j + 1])
    lines: list[str] = []
    i = j = 0
    while i < n or j < m:
        if i < n and j < m and matches(expected[i], actual[j], start):
            lines.append("  " + render_event(actual[j], start))
            i, j = i + 1, j + 1
        elif i < n and (j == m or best[i + 1][j] >= best[i][j + 1]):
            lines.append(f"- {render_expect(expected[i])}    (line {expected[i].line})")
            i += 1
        else:
            lines.append("+ " + render_event(actual[j], start))
            j += 1
    return lines


def _reading(inventory: Inventory, step: Step, start: int) -> Reading:
    sensor = inventory.sensors.get(step.sensor)
    if sensor is None:
        raise StepError(f"line {step.line}: unknown sensor {step.sensor!r}")
    try:
        value = converter(sensor.kind, step.unit or sensor.unit)(float(step.value))
    except UnitError as exc:
        raise StepError(f"line {step.line}: {exc}") from None
    return Reading(sensor, value, start + (step.ts if step.ts is not None else step.at))


def _do(engine: Engine, inventory: Inventory, step: Step, start: int) -> list[Event]:
    now = start + step.at
    events = engine.tick(now)  # the clock runs on its own, as it does live
    if step.kind == "reading":
        return events + engine.on_readings([_reading(inventory, step, start)])
    if step.kind == "detection":
        camera = inventory.cameras.get(step.camera)
        site = camera.site if camera else None
        return events + engine.on_detection(step.camera, site, now, step.detections)
    if step.kind == "camera_event":
        return events + engine.on_camera_event(step.camera, now, step.event)
    if step.kind == "ack":
        inc = engine.open_incident(step.rule, step.subject)
        if inc is None:
            raise StepError(
                f"line {step.line}: no open incident of {step.rule} for {step.subject} "
                "to acknowledge"
            )
        return events + engine.acknowledge(inc.id, step.by, now)
    if step.kind == "archive":
        cleared = [
            i
            for i in engine.incidents()
            if i.rule == step.rule and i.subject == step.subject and i.state == "cleared"
        ]
        if not cleared:
            raise StepError(
                f"line {step.line}: no cleared incident of {step.rule} for {step.subject} "
                "to archive"
            )
        return events + engine.archive(cleared[-1].id, now)
    return events


def _about(event: Event, subjects: tuple[str, ...] | None) -> bool:
    if subjects is None:
        return True
    subject = event.subject if isinstance(event, ActionRequested) else event.incident.subject
    return subject in subjects


def run_case(case: Case, rules: RuleSet, inventory: Inventory) -> CaseResult:
    """Run one test; a failure explains itself in `lines`."""
    if case.rules is not None:
        unknown = [r for r in case.rules if rules.get(r) is None]
        if unknown:
            return CaseResult(case, False, [f"unknown rules: {', '.join(unknown)}"])
        rules = RuleSet(tuple(r for r in rules.rules if r.id in case.rules))
    engine = Engine(rules, inventory)
    events = engine.tick(case.start)
    try:
        for step in case.steps:
            events += _do(engine, inventory, step, case.start)
        if case.until is not None:
            events += engine.tick(case.start + case.until)
    except StepError as exc:
        return CaseResult(case, False, [str(exc)])
    actual = [e for e in events if e.name not in case.ignore and _about(e, case.subjects)]
    ok = len(actual) == len(case.expect) and all(
        matches(x, e, case.start) for x, e in zip(case.expect, actual, strict=True)
    )
    return CaseResult(case, ok, [] if ok else diff(case.expect, actual, case.start))


def run_file(
    path: Path,
    *,
    rules: list[Path] | None = None,
    inventory: list[Path] | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
) -> FileResult:
    """Read a test file and run its tests; `rules` and `inventory` are used when the file
    names none of its own; `commands` are what each actuator kind takes (hub.yaml's
    `actuators.commands`, by default its defaults), which the rules are checked against."""
    result = FileResult(path)
    file = display_path(path)
    try:
        data, where, problems = parse_yaml(path.read_text(encoding="utf-8"), file)
    except ConfigError as exc:
        result.problems = exc.problems
        return result
    except (OSError, UnicodeDecodeError) as exc:
        result.problems = [Problem(file, 0, 0, f"cannot read this file: {exc}")]
        return result
    ctx = Ctx(file, where, None, problems=list(problems))
    top = mapping(ctx, (), data, ("rules", "inventory", "tests"), "tests: [...]")
    if top is None:
        result.problems = ctx.problems
        return result
    base = path.parent
    rule_paths = paths(ctx, "rules", top["rules"], base) if "rules" in top else rules
    inv_paths = paths(ctx, "inventory", top["inventory"], base) if "inventory" in top else inventory
    for what, found in (("rules", rule_paths), ("inventory", inv_paths)):
        if not found and what not in top:
            ctx.error((), f"no {what}: name them here with {what}: [...], or on the command line")
    if ctx.problems or not rule_paths or not inv_paths:
        result.problems = ctx.problems
        return result
    try:
        ctx.inventory = load_inventory(inv_paths)
    except ConfigError as exc:
        result.problems = ctx.problems + exc.problems
        return result
    ruleset, rule_problems = check_rules(rule_paths, ctx.inventory, commands)
    cases: list[Case] = []
    items = top.get("tests")
    if not isinstance(items, list) or not items:
        ctx.error(
            ("tests",) if "tests" in top else (), f"expected a list of tests, got {describe(items)}"
        )
    else:
        for i, item in enumerate(items):
            case = parse_case(ctx, ("tests", i), item)
            if case is not None:
                cases.append(case)
    result.problems = sorted(ctx.problems + rule_problems)
    if result.problems or ruleset is None:
        return result
    result.results = [run_case(case, ruleset, ctx.inventory) for case in cases]
    return result
