"""An incident's timeline: its history in order, built from what the hub records already.

Two sources, nothing kept for the timeline alone:

- the incident as the engine holds it (until it is archived): `opened_at`, `acked_at` /
  `acked_by`, `cleared_at`, each action's latest status and time, and the detection results
  in its evidence;
- the audit trail (the store's `audit` space): the entries that carry the incident's id
  (acknowledgements with their notes, notes, commands asked for, notifications per channel
  and status, detections asked for, escalations, the archiving), and the entries of the
  commands these name (their status changes, confirmations, the actuators' acknowledgements).

The engine forgets an archived incident; an operator's archiving keeps the incident's times
in its audit entry, so the timeline of an incident archived from the API starts at its
opening still. One archived by the clock has its times read from InfluxDB's `incident`
history instead (`hub.api.export.from_history`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub.audit import AuditEntry
from hub.rules.service import rfc3339

# At one time, an opening goes first and an archiving last.
_RANK = {"opened": 0, "cleared": 2, "archived": 3}


def _entry(ts: int, kind: str, text: str, by: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": ts, "kind": kind}
    if by:
        out["by"] = by
    out["text"] = text
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _from_incident(
    incident: Mapping[str, Any], acked_in_audit: bool, archived_in_audit: bool
) -> list[dict[str, Any]]:
    """The entries the incident's own fields give (`to_dict` form, times in ns)."""
    out = [
        _entry(
            int(incident["opened_at"]),
            "opened",
            f"opened: {incident.get('title') or incident.get('rule')}",
            severity=incident.get("severity"),
        )
    ]
    if incident.get("acked_at") is not None and not acked_in_audit:
        out.append(
            _entry(int(incident["acked_at"]), "acknowledged", "acknowledged", incident["acked_by"])
        )
    for action in incident.get("actions", ()):
        if action.get("at") is None:
            continue
        text = f"{action['kind']} ({action['step']}): {action['status']}"
        if action.get("detail"):
            text += f" - {action['detail']}"
        out.append(
            _entry(
                int(action["at"]),
                "action",
                text,
                action_id=action["id"],
                status=action["status"],
            )
        )
    for item in incident.get("evidence", ()):
        if item.get("kind") != "detection" or item.get("ts") is None:
            continue
        counts = ", ".join(f"{n} {c}" for c, n in item.get("counts", {}).items()) or "nothing"
        out.append(
            _entry(
                int(item["ts"]),
                "detection",
                f"{item.get('camera')}: {counts}",
                camera=item.get("camera"),
                job_id=item.get("job_id"),
            )
        )
    if incident.get("cleared_at") is not None:
        out.append(_entry(int(incident["cleared_at"]), "cleared", "cleared"))
    if incident.get("archived_at") is not None and not archived_in_audit:
        out.append(_entry(int(incident["archived_at"]), "archived", "archived by the clock"))
    return out


# Audit kinds that become a timeline entry of their own kind, with the entry's words as text.
_PLAIN = {
    "note": "note",
    "archive": "archived",
    "detect": "detection",
    "escalation": "escalation",
    "override": "override",
}


def _from_audit(entry: AuditEntry, incident_id: str) -> dict[str, Any]:
    """One audit entry as a timeline entry."""
    f = entry.fields
    ours = f.get("incident_id") == incident_id
    if entry.kind == "ack" and ours:
        return _entry(entry.ts_ns, "acknowledged", entry.detail, entry.actor, note=f.get("note"))
    if entry.kind in _PLAIN:
        return _entry(entry.ts_ns, _PLAIN[entry.kind], entry.detail, entry.actor)
    if entry.kind == "notification":
        return _entry(
            entry.ts_ns,
            "notification",
            entry.detail,
            entry.actor,
            channel=f.get("channel"),
            status=f.get("status"),
        )
    # Commands: asked for (with the incident's id), then their status changes,
    # confirmations and the actuators' acknowledgements (with the command's id).
    return _entry(
        entry.ts_ns,
        "command",
        entry.detail,
        entry.actor,
        command_id=f.get("command_id"),
        status=f.get("status"),
    )


def timeline(
    incident_id: str, incident: Mapping[str, Any] | None, audit: Iterable[AuditEntry]
) -> list[dict[str, Any]] | None:
    """The timeline, oldest first, with RFC 3339 times; None when neither the engine (the
    incident, `to_dict` form) nor the audit trail (`AuditLog.about`) knows the incident."""
    entries = list(audit)
    if incident is None:
        archived = [e for e in entries if e.kind == "archive"]
        if archived:  # the incident's times, as its archiving kept them
            incident = {k: v for k, v in archived[-1].fields.items() if k != "incident_id"}
            if "opened_at" not in incident:
                incident = None
        elif not entries:
            return None
    acked_in_audit = any(
        e.kind == "ack" and e.fields.get("incident_id") == incident_id for e in entries
    )
    archived_in_audit = any(e.kind == "archive" for e in entries)
    out = (
        _from_incident(incident, acked_in_audit, archived_in_audit) if incident is not None else []
    )
    out += [_from_audit(e, incident_id) for e in entries]
    out.sort(key=lambda e: (e["ts"], _RANK.get(e["kind"], 1)))
    return [{**e, "ts": rfc3339(e["ts"])} for e in out]
