"""One rule: its keys, its conditions and actions, and the checks that span several keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hub.actuators.config import refusal
from hub.config.problems import KeyPath
from hub.inventory import Actuator
from hub.rules.actions import parse_actions, parse_step
from hub.rules.conditions import GROUP_KEYS, Scope, parse_condition, parse_group
from hub.rules.model import (
    GROUPINGS,
    MODES,
    SEVERITIES,
    Action,
    Actuate,
    Condition,
    Detect,
    EscalationStep,
    Per,
    Rule,
    Selector,
    Threshold,
    as_severity,
    select,
)
from hub.rules.schema import Ctx, choice, duration, mapping
from hub.rules.selectors import describe_chain, kinds_of, parse_selector, selected
from hub.rules.subjects import plan_subjects
from hub.rules.targets import Place, Placed, resolve
from hub.rules.text import TITLE_FIELDS, template

RULE_KEYS = (
    "id",
    "title",
    "description",
    "severity",
    "mode",
    "per",
    "sensors",
    "trigger",
    *GROUP_KEYS,
    "clear",
    "actions",
    "on_clear",
    "escalate",
    "stale_after",
    "archive_after",
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_EXAMPLE = "{id: underpass-flooding, severity: severe, sensors: {...}, trigger: {...}}"


def _per(value: str | None) -> Per:
    return "site" if value == "site" else "region" if value == "region" else "sensor"


def _trigger(ctx: Ctx, data: dict[str, Any], scope: Scope) -> Condition | None:
    inline = [key for key in GROUP_KEYS if key in data]
    if "trigger" in data and inline:
        ctx.error(
            (inline[0],),
            "write the condition either under trigger: or as all:/any:/at_least: on the rule, "
            "not both",
            key=True,
        )
        return None
    if "trigger" in data:
        return parse_condition(ctx, ("trigger",), data["trigger"], scope)
    if inline:
        return parse_group(ctx, (), {k: data[k] for k in inline}, scope)
    ctx.error((), "a rule needs a trigger: (or all:, any: or at_least: with of:)")
    return None


def _id(ctx: Ctx, data: dict[str, Any]) -> str | None:
    rule_id = data.get("id")
    if "id" not in data:
        ctx.error((), "id: is missing; every rule needs an id such as underpass-flooding")
        return None
    if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
        ctx.error(("id",), f"{rule_id!r} is not a rule id: use letters, digits, '-', '_', '.'")
        return None
    return rule_id


def _sensors(ctx: Ctx, data: dict[str, Any], per: str | None) -> tuple[Selector, ...] | None:
    if "sensors" not in data:
        if per in ("sensor", None):
            ctx.error((), "sensors: is missing: say which sensors this rule watches")
            return None
        return ()
    selector = parse_selector(ctx, ("sensors",), data["sensors"])
    if selector is None:
        return None
    selected(ctx, ("sensors",), (selector,))
    return (selector,)


def _extras(ctx: Ctx, data: dict[str, Any]) -> dict[str, Any] | None:
    """Title, description and the durations that tune a rule."""
    ok = True
    out: dict[str, Any] = {"title": None, "description": data.get("description", "")}
    if "title" in data:
        out["title"] = template(ctx, ("title",), data["title"], TITLE_FIELDS)
        ok = out["title"] is not None
    if not isinstance(out["description"], str):
        ctx.error(("description",), "expected text")
        ok = False
    for key in ("stale_after", "archive_after"):
        out[key] = None
        if key in data:
            out[key] = duration(ctx, (key,), data[key])
            ok = ok and out[key] is not None
    return out if ok else None


def parse_rule(ctx: Ctx, value: object) -> Rule | None:
    """One item of a file's `rules:` list; ctx.base points at it."""
    data = mapping(ctx, (), value, RULE_KEYS, _EXAMPLE)
    if data is None:
        return None
    rule_id = _id(ctx, data)
    severity = None
    if "severity" not in data:
        ctx.error((), f"severity: is missing; one of {', '.join(SEVERITIES)}")
    else:
        severity = choice(ctx, ("severity",), data["severity"], SEVERITIES, "severity")
    mode = choice(ctx, ("mode",), data.get("mode", "single"), MODES, "mode")
    per_text = choice(ctx, ("per",), data.get("per", "sensor"), GROUPINGS, "grouping")
    per = _per(per_text)
    chain = _sensors(ctx, data, per_text)
    trigger = clear = None
    if chain is not None or per != "sensor":
        trigger = _trigger(ctx, data, Scope(per, False, chain or (), str(rule_id)))
        if "clear" in data:
            clear_scope = Scope(per, True, chain or (), str(rule_id))
            clear = parse_condition(ctx, ("clear",), data["clear"], clear_scope)
    actions = _actions(ctx, data, "actions")
    on_clear = _actions(ctx, data, "on_clear")
    escalate = _escalate(ctx, data.get("escalate", []))
    extras = _extras(ctx, data)
    if (
        rule_id is None
        or severity is None
        or mode is None
        or per_text is None
        or chain is None
        or trigger is None
        or ("clear" in data and clear is None)
        or actions is None
        or on_clear is None
        or escalate is None
        or extras is None
    ):
        return None
    pos = ctx.where.nearest(ctx.base)
    rule = Rule(
        id=rule_id,
        title=extras["title"] or rule_id,
        severity=as_severity(severity),
        mode="update" if mode == "update" else "restart" if mode == "restart" else "single",
        per=per,
        sensors=chain[0] if chain else None,
        trigger=trigger,
        clear=clear,
        actions=actions,
        on_clear=on_clear,
        escalate=escalate,
        stale_after_s=extras["stale_after"],
        archive_after_s=extras["archive_after"] or 86400.0,
        description=extras["description"],
        source=f"{ctx.file}:{pos.line}" if pos else ctx.file,
    )
    _check_levels(ctx, rule)
    _check_targets(ctx, rule)
    return rule


def _actions(ctx: Ctx, data: dict[str, Any], key: str) -> tuple[Action, ...] | None:
    return parse_actions(ctx, (key,), data[key]) if key in data else ()


def _escalate(ctx: Ctx, value: object) -> tuple[EscalationStep, ...] | None:
    if not isinstance(value, list):
        ctx.error(("escalate",), "expected a list of steps such as {after: 10m, notify: ...}")
        return None
    found = [parse_step(ctx, ("escalate", i), item) for i, item in enumerate(value)]
    kept = tuple(s for s in found if s is not None)
    return kept if len(kept) == len(found) else None


def _kind(ctx: Ctx, rule: Rule, leaf: Threshold) -> str | None:
    chain = tuple(s for s in (rule.sensors, leaf.sensors) if s is not None)
    inv = ctx.inventory
    kinds = kinds_of(chain, select(inv.sensors, chain) if inv else None)
    return next(iter(kinds)) if kinds is not None and len(kinds) == 1 else None


def _check_levels(ctx: Ctx, rule: Rule) -> None:
    """A clear level on the wrong side of the trigger level undoes the hysteresis."""
    t, c = rule.trigger, rule.clear
    if not isinstance(t, Threshold) or not isinstance(c, Threshold) or t.equals or c.equals:
        return
    kind, ckind = _kind(ctx, rule, t), _kind(ctx, rule, c)
    if kind is None or kind != ckind or (t.above and t.below) or (c.above and c.below):
        return
    tpath: KeyPath = ("trigger",) if t.where == "trigger" else ()
    tname = ".".join(str(p) for p in tpath)
    trig = f"{tname}." if tname else ""
    if t.above and c.below and c.below.canonical(kind) > t.above.canonical(kind):
        ctx.error(
            ("clear", "below"),
            f"{c.below.text} is above {trig}above {t.above.text}: the incident would clear "
            "while still triggered; put the clear level below the trigger level",
        )
    elif t.below and c.above and c.above.canonical(kind) < t.below.canonical(kind):
        ctx.error(
            ("clear", "above"),
            f"{c.above.text} is below {trig}below {t.below.text}: the incident would clear "
            "while still triggered; put the clear level above the trigger level",
        )
    elif t.above and c.above:
        ctx.error(
            ("clear", "above"),
            f"the trigger is above {t.above.text}, so clearing above {c.above.text} would "
            "clear the incident while the value is still high; did you mean clear.below?",
        )
    elif t.below and c.below:
        ctx.error(
            ("clear", "below"),
            f"the trigger is below {t.below.text}, so clearing below {c.below.text} would "
            "clear the incident while the value is still low; did you mean clear.above?",
        )


def _check_targets(ctx: Ctx, rule: Rule) -> None:
    """An action that finds no camera or actuator for any subject is surely a mistake."""
    inv = ctx.inventory
    if inv is None:
        return
    places = [p.place for p in plan_subjects(rule, inv).values()]
    if not places:
        return
    lists: list[tuple[KeyPath, tuple[Action, ...]]] = [
        (("actions",), rule.actions),
        (("on_clear",), rule.on_clear),
    ]
    lists += [(("escalate", i), step.actions) for i, step in enumerate(rule.escalate)]
    for path, actions in lists:
        for i, action in enumerate(actions):
            pool: Mapping[str, Placed]
            if isinstance(action, Detect):
                targets, pool, what = action.cameras, inv.cameras, "camera"
            elif isinstance(action, Actuate):
                targets, pool, what = action.actuators, inv.actuators, "actuator"
            else:
                continue
            name = "actuate" if isinstance(action, Actuate) else "detect"
            step_path = path if path[0] == "escalate" else (*path, i)
            if isinstance(action, Actuate) and targets.how != "ids" and not targets.kinds:
                _check_found_kinds(ctx, (*step_path, name), action, places, inv.actuators)
            if targets.how == "ids" or any(resolve(targets, p, pool) for p in places):
                continue
            kinds = f"{'/'.join(targets.kinds)} " if targets.kinds else ""
            where = _WHERE[targets.how].format(within=targets.within_m)
            ctx.error(
                (*step_path, name),
                f"finds no {kinds}{what} {where} any of this rule's subjects "
                f"({describe_chain(tuple(s for s in (rule.sensors,) if s))})",
            )


_WHERE = {
    "site": "at the site of",
    "region": "in the region of",
    "nearest": "within {within:g} m of",
}


def _check_found_kinds(
    ctx: Ctx,
    path: KeyPath,
    action: Actuate,
    places: list[Place],
    pool: Mapping[str, Actuator],
) -> None:
    """An `actuate` that names no kind goes to every actuator it finds: each one's kind must
    take its commands (a `close` sent to a siren at the site is surely a mistake)."""
    if ctx.commands is None:
        return
    found: dict[str, dict[str, None]] = {}  # kind -> actuator ids, in the order found
    for place in places:
        for ident in resolve(action.actuators, place, pool):
            found.setdefault(pool[ident].kind, {})[ident] = None
    where = _WHERE[action.actuators.how].format(within=action.actuators.within_m)
    for key, command in (("command", action.command), ("on_clear", action.on_clear)):
        if command is None:
            continue
        takers = [k for k in found if refusal(ctx.commands, k, command, k) is None]
        hint = f"kind: {takers[0]}" if takers else "kind: with the actuators' kind"
        for kind, idents in found.items():
            ids = list(idents)
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            why = refusal(ctx.commands, kind, command, f"{kind} {shown}")
            if why is not None:
                them = "it" if len(ids) == 1 else "them"
                ctx.error(
                    (*path, key),
                    f"{why} (this action names no kind, and finds {them} {where} a subject "
                    f"of this rule: add {hint})",
                )
