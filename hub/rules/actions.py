"""Actions (`detect`, `actuate`, `notify`), registered by name, and escalation steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from hub.actuators.config import refusal
from hub.config.problems import KeyPath, describe, did_you_mean
from hub.inventory import ACTUATOR_KINDS
from hub.rules.model import (
    SEVERITIES,
    Action,
    Actuate,
    Detect,
    EscalationStep,
    Notify,
    Targets,
    as_severity,
)
from hub.rules.schema import (
    Ctx,
    Registry,
    choice,
    distance,
    duration,
    fraction,
    integer,
    known_names,
    mapping,
    names,
    text,
)
from hub.rules.text import MESSAGE_FIELDS, template

ActionParser: TypeAlias = Callable[[Ctx, KeyPath, Any], Action | None]
ACTIONS: Registry[ActionParser] = Registry("action")

_TARGET_KEYS = ("count", "within")


def _targets(
    ctx: Ctx, path: KeyPath, data: dict[str, Any], key: str, *, pool: object, what: str
) -> Targets | None:
    value = data.get(key, "site")
    kpath = (*path, key)
    count, within = 3, 500.0
    if "count" in data:
        count = integer(ctx, (*path, "count"), data["count"], 1) or 0
    if "within" in data:
        within = distance(ctx, (*path, "within"), data["within"]) or 0.0
    if value == "nearest":
        if not count or not within:
            return None
        return Targets("nearest", count=count, within_m=within)
    for extra in _TARGET_KEYS:
        if extra in data:
            ctx.error((*path, extra), f"{extra}: goes with {key}: nearest", key=True)
            return None
    if value in ("site", "region"):
        return Targets("site" if value == "site" else "region")
    if isinstance(value, str | list):
        ids = known_names(ctx, kpath, value, pool if isinstance(pool, dict) else None, what)
        return None if ids is None else Targets("ids", ids=ids)
    ctx.error(
        kpath, f"expected nearest, site, region or a list of {what} ids, got {describe(value)}"
    )
    return None


@ACTIONS.register("detect")
def _detect(ctx: Ctx, path: KeyPath, value: Any) -> Action | None:
    keys = ("cameras", "classes", "min_score", *_TARGET_KEYS)
    data = mapping(ctx, path, value, keys, "{cameras: nearest, count: 3, classes: [person, car]}")
    if data is None:
        return None
    inv = ctx.inventory
    pool = inv.cameras if inv else None
    cameras = _targets(ctx, path, data, "cameras", pool=pool, what="camera")
    # Without classes, the detectors look for their configured `detection.classes`.
    classes = names(ctx, (*path, "classes"), data["classes"], "class") if "classes" in data else ()
    score = fraction(ctx, (*path, "min_score"), data["min_score"]) if "min_score" in data else None
    if cameras is None or classes is None or ("min_score" in data and score is None):
        return None
    return Detect(cameras, classes, score)


MAX_SIGN_TEXT = 200  # characters a command's `text` may carry (a sign's message)


@ACTIONS.register("actuate")
def _actuate(ctx: Ctx, path: KeyPath, value: Any) -> Action | None:
    keys = ("actuators", "kind", "command", "on_clear", "expires", "text", *_TARGET_KEYS)
    data = mapping(ctx, path, value, keys, "{actuators: site, command: close, on_clear: open}")
    if data is None:
        return None
    inv = ctx.inventory
    pool = inv.actuators if inv else None
    targets = _targets(ctx, path, data, "actuators", pool=pool, what="actuator")
    kinds: tuple[str, ...] | None = ()
    if "kind" in data:
        kinds = known_names(ctx, (*path, "kind"), data["kind"], ACTUATOR_KINDS, "actuator kind")
    if "command" not in data:
        ctx.error(path, "command: is missing: say what to do, e.g. command: close")
        return None
    command = text(ctx, (*path, "command"), data["command"], "a command such as close")
    on_clear = None
    if "on_clear" in data:
        on_clear = text(ctx, (*path, "on_clear"), data["on_clear"], "a command such as open")
    expires = duration(ctx, (*path, "expires"), data["expires"]) if "expires" in data else None
    shown = None
    if "text" in data:
        shown = text(ctx, (*path, "text"), data["text"], "what a sign shows, e.g. DO NOT ENTER")
        if shown is not None and len(shown) > MAX_SIGN_TEXT:
            ctx.error((*path, "text"), f"at most {MAX_SIGN_TEXT} characters, got {len(shown)}")
            return None
        if shown is None:
            return None
    if targets is None or kinds is None or command is None:
        return None
    if ("on_clear" in data and on_clear is None) or ("expires" in data and expires is None):
        return None
    if targets.how != "ids" and kinds:
        targets = Targets(targets.how, (), targets.count, targets.within_m, kinds)
    for key, word in (("command", command), ("on_clear", on_clear)):
        if word is not None:
            for why in _not_taken(ctx, targets, kinds, word):
                ctx.error((*path, key), why)
    return Actuate(targets, command, on_clear, expires, shown)


def _not_taken(ctx: Ctx, targets: Targets, kinds: tuple[str, ...], command: str) -> list[str]:
    """Why `command` cannot go to the actuators named by id (their kinds, from the inventory)
    or to the `kind` the action names. An action that names neither is held to the kinds of
    the actuators it finds for the rule's subjects, once they are known (parse.py)."""
    if ctx.commands is None:
        return []
    inv = ctx.inventory
    if targets.how == "ids" and inv is not None:
        by_kind: dict[str, list[str]] = {}
        for ident in targets.ids:
            actuator = inv.actuators.get(ident)
            if actuator is not None:
                by_kind.setdefault(actuator.kind, []).append(ident)
        found = [
            refusal(ctx.commands, k, command, f"{k} {', '.join(i)}") for k, i in by_kind.items()
        ]
    else:
        found = [refusal(ctx.commands, kind, command, kind) for kind in kinds]
    return [why for why in found if why is not None]


@ACTIONS.register("notify")
def _notify(ctx: Ctx, path: KeyPath, value: Any) -> Action | None:
    keys = ("channels", "region_contacts", "message")
    data = mapping(ctx, path, value, keys, "{channels: [situation-room]}")
    if data is None:
        return None
    channels: tuple[str, ...] | None = ()
    if "channels" in data:
        channels = names(ctx, (*path, "channels"), data["channels"], "channel")
    contacts = data.get("region_contacts", False)
    if not isinstance(contacts, bool):
        ctx.error((*path, "region_contacts"), f"expected true or false, got {describe(contacts)}")
        return None
    if not channels and not contacts and channels is not None:
        ctx.error(path, "say who to notify: channels: [...] or region_contacts: true")
        return None
    message = None
    if "message" in data:
        message = template(ctx, (*path, "message"), data["message"], MESSAGE_FIELDS)
        if message is None:
            return None
    return None if channels is None else Notify(channels, contacts, message)


def parse_action(ctx: Ctx, path: KeyPath, value: object) -> Action | None:
    """One list item such as `{notify: {channels: [situation-room]}}`."""
    kinds = ACTIONS.names()
    if not isinstance(value, dict) or len(value) != 1:
        ctx.error(
            path,
            f"expected one action such as {{notify: {{channels: [situation-room]}}}}, "
            f"got {describe(value)}",
        )
        return None
    ((name, body),) = value.items()
    parser = ACTIONS.get(str(name))
    if parser is None:
        hint = did_you_mean(name, kinds) or f"; actions are {', '.join(kinds)}"
        ctx.error((*path, str(name)), f"unknown action {str(name)!r}{hint}", key=True)
        return None
    return parser(ctx, (*path, str(name)), body)


def parse_actions(ctx: Ctx, path: KeyPath, value: object) -> tuple[Action, ...] | None:
    """A list of actions."""
    if not isinstance(value, list):
        ctx.error(path, f"expected a list of actions, got {describe(value)}")
        return None
    found = [parse_action(ctx, (*path, i), item) for i, item in enumerate(value)]
    kept = tuple(a for a in found if a is not None)
    return kept if len(kept) == len(found) else None


_STEP_KEYS = ("after", "unless", "severity", "actions", *ACTIONS.names())


def parse_step(ctx: Ctx, path: KeyPath, value: object) -> EscalationStep | None:
    """One escalation step: `{after: 10m, unless: acknowledged, notify: {...}}`."""
    data = mapping(ctx, path, value, _STEP_KEYS, "{after: 10m, unless: acknowledged, notify: ...}")
    if data is None:
        return None
    if "after" not in data:
        ctx.error(path, "after: is missing: say how long after the incident opened, e.g. 10m")
        return None
    after = duration(ctx, (*path, "after"), data["after"])
    unless = None
    if "unless" in data:
        unless = choice(ctx, (*path, "unless"), data["unless"], ("acknowledged",), "condition")
    severity = None
    if "severity" in data:
        severity = choice(ctx, (*path, "severity"), data["severity"], SEVERITIES, "severity")
    actions: list[Action] = []
    ok = after is not None and ("unless" not in data or unless is not None)
    ok = ok and ("severity" not in data or severity is not None)
    for name in ACTIONS.names():
        if name in data:
            found = parse_action(ctx, path, {name: data[name]})
            ok = ok and found is not None
            actions += [found] if found is not None else []
    if "actions" in data:
        listed = parse_actions(ctx, (*path, "actions"), data["actions"])
        ok = ok and listed is not None
        actions += listed or ()
    if ok and not actions and severity is None:
        ctx.error(path, "this step does nothing: give it actions (notify:, ...) or a severity:")
        return None
    if not ok or after is None:
        return None
    level = as_severity(severity) if severity is not None else None
    return EscalationStep(after, unless is not None, tuple(actions), level)
