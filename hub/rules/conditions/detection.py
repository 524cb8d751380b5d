"""`detection`: a camera saw at least so many objects of some classes, recently enough."""

from __future__ import annotations

from typing import Any

from hub.config.problems import KeyPath
from hub.rules.conditions.base import ConditionKind, Scope, register, where
from hub.rules.model import Condition, DetectionCondition
from hub.rules.schema import Ctx, duration, fraction, integer, known_names, mapping, names

_EXAMPLE = "{classes: [person, car], min_count: 1, within: 2m}"
_KEYS = ("classes", "min_count", "min_score", "within", "cameras")


def _cameras(ctx: Ctx, path: KeyPath, value: object, scope: Scope) -> str | tuple[str, ...] | None:
    if value in ("site", "region"):
        if value == "site" and scope.per == "region":
            ctx.error(path, "a region has no site; write cameras: region or list camera ids")
            return None
        return str(value)
    inv = ctx.inventory
    return known_names(ctx, path, value, inv.cameras if inv else None, "camera")


def _parse(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    dpath = (*path, "detection")
    spec = mapping(ctx, dpath, data["detection"], _KEYS, _EXAMPLE)
    if spec is None:
        return None
    ok = True
    for key in ("classes", "within"):
        if key not in spec:
            ctx.error(dpath, f"{key}: is missing; for example {_EXAMPLE}")
            ok = False
    classes = names(ctx, (*dpath, "classes"), spec["classes"], "class") if "classes" in spec else ()
    within = duration(ctx, (*dpath, "within"), spec["within"]) if "within" in spec else 0.0
    min_count: int | None = 1
    if "min_count" in spec:
        min_count = integer(ctx, (*dpath, "min_count"), spec["min_count"], 1)
    min_score: float | None = 0.5
    if "min_score" in spec:
        min_score = fraction(ctx, (*dpath, "min_score"), spec["min_score"])
    cameras: str | tuple[str, ...] | None = "region" if scope.per == "region" else "site"
    if "cameras" in spec:
        cameras = _cameras(ctx, (*dpath, "cameras"), spec["cameras"], scope)
    if not ok or not classes or not within or not min_count or min_score is None or not cameras:
        return None
    return DetectionCondition(where(path), classes, min_count, min_score, within, cameras)


register(
    ConditionKind(
        keys=("detection",),
        allowed=("detection",),
        parse=_parse,
        example=f"{{detection: {_EXAMPLE}}}",
        no_for="for: does not go with detection:; say how recent the detection must be "
        "with within:",
    )
)


# -- camera_event: what the stream workers saw (docs/streams.md) ---------------------------------

EVENT_KINDS = (
    "entered",
    "left",
    "loitering",
    "crossed",
    "crowd",
    "fall",
    "fire",
    "smoke",
    "plate",
    "stream_down",
    "stream_up",
)
_EVENT_EXAMPLE = "{kinds: [entered], classes: [person], zones: [underpass], within: 1m}"
_EVENT_KEYS = ("kinds", "classes", "zones", "min_count", "min_score", "within", "cameras")


def _parse_event(ctx: Ctx, path: KeyPath, data: dict[str, Any], scope: Scope) -> Condition | None:
    epath = (*path, "camera_event")
    spec = mapping(ctx, epath, data["camera_event"], _EVENT_KEYS, _EVENT_EXAMPLE)
    if spec is None:
        return None
    ok = True
    for key in ("kinds", "within"):
        if key not in spec:
            ctx.error(epath, f"{key}: is missing; for example {_EVENT_EXAMPLE}")
            ok = False
    kinds = (
        known_names(ctx, (*epath, "kinds"), spec["kinds"], EVENT_KINDS, "event kind")
        if "kinds" in spec
        else None
    )
    classes: tuple[str, ...] | None = ()  # any class
    if "classes" in spec:
        classes = names(ctx, (*epath, "classes"), spec["classes"], "class")
    zones: tuple[str, ...] | None = ()  # anywhere in the picture
    if "zones" in spec:
        zones = names(ctx, (*epath, "zones"), spec["zones"], "zone or line")
    within = duration(ctx, (*epath, "within"), spec["within"]) if "within" in spec else 0.0
    min_count: int | None = 1
    if "min_count" in spec:
        min_count = integer(ctx, (*epath, "min_count"), spec["min_count"], 1)
    min_score: float | None = 0.0  # the worker's own threshold already applied
    if "min_score" in spec:
        min_score = fraction(ctx, (*epath, "min_score"), spec["min_score"])
    cameras: str | tuple[str, ...] | None = "region" if scope.per == "region" else "site"
    if "cameras" in spec:
        cameras = _cameras(ctx, (*epath, "cameras"), spec["cameras"], scope)
    if (
        not ok
        or not kinds
        or classes is None
        or zones is None
        or not within
        or not min_count
        or min_score is None
        or not cameras
    ):
        return None
    return DetectionCondition(
        where(path), classes, min_count, min_score, within, cameras, events=kinds, zones=zones
    )


register(
    ConditionKind(
        keys=("camera_event",),
        allowed=("camera_event",),
        parse=_parse_event,
        example=f"{{camera_event: {_EVENT_EXAMPLE}}}",
        no_for="for: does not go with camera_event:; say how recent the event must be with within:",
    )
)
