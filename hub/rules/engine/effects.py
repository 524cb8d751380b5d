"""What incidents do beyond their state: the actions they ask for, resolved for their subject,
and the evidence they gather (readings that triggered them, detection results)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hub.rules.engine.incidents import IncidentRecord
from hub.rules.engine.leaves import (
    CameraEventFacts,
    DetectionBinding,
    MissingBinding,
    SensorBinding,
)
from hub.rules.engine.subject import SubjectState
from hub.rules.events import ActionRecord, ActionRequested, IncidentUpdated
from hub.rules.model import Action, Actuate, Detect, Notify
from hub.rules.targets import Place, resolve
from hub.rules.text import render
from hub.units import CANONICAL

if TYPE_CHECKING:
    from hub.rules.engine.world import World

MAX_READING_EVIDENCE = 10


def template_values(w: World, rec: IncidentRecord) -> dict[str, str | None]:
    """The values of the placeholders in titles and messages, for this incident."""
    site = w.inventory.sites.get(rec.site or "")
    region = w.inventory.regions.get(rec.region)
    return {
        "rule": rec.rule,
        "subject": rec.subject,
        "site": rec.site,
        "site_name": site.name if site else rec.site,
        "region": rec.region,
        "region_name": region.name if region else rec.region,
        "severity": rec.severity,
        "title": rec.title,
        "state": rec.state,
    }


def evidence(w: World, subj: SubjectState) -> list[dict[str, Any]]:
    """What made the trigger hold: the readings of the sensors whose conditions hold."""
    rt = subj.rt
    found: list[dict[str, Any]] = []
    for b in subj.bindings:
        if b.bit >= rt.n_trigger or not b.held or len(found) >= MAX_READING_EVIDENCE:
            continue
        where = rt.wheres[b.bit]
        if isinstance(b, MissingBinding):
            last = w.seen.get(b.sensor)
            found.append({"kind": "missing", "sensor": b.sensor, "last_seen": last})
        elif isinstance(b, SensorBinding):
            sensor = w.inventory.sensors.get(b.sensor)
            found.append(
                {
                    "kind": "reading",
                    "sensor": b.sensor,
                    "value": w.values.get(b.sensor),
                    "unit": CANONICAL.get(sensor.kind, "") if sensor else "",
                    "ts": w.seen.get(b.sensor),
                    "condition": where,
                }
            )
        elif isinstance(b, DetectionBinding) and b.item is not None:
            found.append({**b.item, "kind": "camera_event", "condition": where})
        else:
            found.append({"kind": "condition", "condition": where})
    return found


def record(
    w: World, rec: IncidentRecord, kind: str, *, step: str, params: dict[str, Any], t: int
) -> ActionRequested:
    """Add an action to the incident and make the event that asks for it."""
    action_id = f"{rec.id}.{len(rec.actions)}"
    rec.add_action(ActionRecord(action_id, kind, step, params, t))
    if kind == "detect":
        for camera in params["cameras"]:
            w.watching.setdefault(camera, {})[rec.id] = None
    return ActionRequested(
        t, action_id, kind, step, params, rec.id, rec.rule, rec.subject, rec.region,
        rec.site, rec.severity,
    )  # fmt: skip


def request(
    w: World, rec: IncidentRecord, place: Place, actions: tuple[Action, ...], *, step: str, t: int
) -> list[ActionRequested]:
    """Resolve each action for the subject at `place` and record it; an action that
    finds no camera or actuator for this subject is left out."""
    out: list[ActionRequested] = []
    inv = w.inventory
    for action in actions:
        params: dict[str, Any]
        if isinstance(action, Detect):
            cameras = resolve(action.cameras, place, inv.cameras)
            if not cameras:
                continue
            params = {"cameras": list(cameras), "classes": list(action.classes)}
            if action.min_score is not None:
                params["min_score"] = action.min_score
            out.append(record(w, rec, "detect", step=step, params=params, t=t))
        elif isinstance(action, Actuate):
            actuators = resolve(action.actuators, place, inv.actuators)
            if not actuators:
                continue
            params = {"actuators": list(actuators), "command": action.command}
            if action.on_clear is not None:
                params["on_clear"] = action.on_clear
            if action.expires_s is not None:
                params["expires_s"] = action.expires_s
            if action.text is not None:
                params["text"] = render(action.text, template_values(w, rec))
            out.append(record(w, rec, "actuate", step=step, params=params, t=t))
        elif isinstance(action, Notify):
            out.append(record(w, rec, "notify", step=step, params=_notify(w, rec, action), t=t))
    return out


def _notify(w: World, rec: IncidentRecord, action: Notify) -> dict[str, Any]:
    channels = list(action.channels)
    region = w.inventory.regions.get(rec.region)
    if action.region_contacts and region is not None:
        channels += [c for c in region.contacts if c not in channels]
    values = template_values(w, rec)
    if action.message is not None:
        message = render(action.message, values)
    else:
        message = f"{rec.title} ({rec.severity}, {rec.state})"
    return {"channels": channels, "message": message, "title": rec.title}


def unwatch(w: World, rec: IncidentRecord) -> None:
    """The incident no longer takes detection results as evidence."""
    for action in rec.actions:
        if action.kind == "detect":
            for camera in action.params["cameras"]:
                w.watching.get(camera, {}).pop(rec.id, None)


def camera_event(
    w: World, camera: str, ts: int, facts: CameraEventFacts, item: dict[str, Any]
) -> None:
    """A camera event: camera_event conditions, then evidence for the incidents whose detect
    actions watch the camera."""
    for b in w.by_camera.get(camera, ()):
        b.observe_event(w, ts, facts, {"camera": camera, "ts": ts, **item})
    waiting = w.watching.get(camera)
    if not waiting:
        return
    evidence = {**item, "kind": "camera_event", "camera": camera, "ts": ts}
    for iid in sorted(waiting, key=lambda i: (getattr(w.incidents.get(i), "opened_at", 0), i)):
        rec = w.incidents.get(iid)
        if rec is not None and rec.is_open and ts >= rec.opened_at:
            rec.add_evidence(dict(evidence))
            w.out.append(IncidentUpdated(max(ts, w.clock), rec.view(), "evidence"))


def detection(
    w: World, camera: str, ts: int, labels: list[tuple[str, float]], extra: dict[str, Any]
) -> None:
    """A detection result: detection conditions, then evidence for incidents that asked."""
    for b in w.by_camera.get(camera, ()):
        b.observe(w, ts, labels)
    waiting = w.watching.get(camera)
    if not waiting:
        return
    counts = Counter(cls for cls, _ in labels)
    item = {
        "kind": "detection",
        "camera": camera,
        "ts": ts,
        "counts": dict(sorted(counts.items())),
        "max_score": max((score for _, score in labels), default=0.0),
        **extra,
    }
    for iid in sorted(waiting, key=lambda i: (getattr(w.incidents.get(i), "opened_at", 0), i)):
        rec = w.incidents.get(iid)
        if rec is not None and rec.is_open and ts >= rec.opened_at:
            rec.add_evidence(dict(item))
            w.out.append(IncidentUpdated(max(ts, w.clock), rec.view(), "evidence"))
