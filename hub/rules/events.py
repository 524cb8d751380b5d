"""What the engine says: incidents' lifecycle and the actions it asks for.

Times are nanoseconds since the epoch, as in readings; the I/O layer formats them. Every
event carries the incident's whole state, so that a consumer never has to merge updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

INCIDENT_FIELDS = (
    "id",
    "rule",
    "title",
    "severity",
    "region",
    "site",
    "subject",
    "opened_at",
    "state",
    "acked_by",
    "acked_at",
    "cleared_at",
    "archived_at",
    "actions",
    "evidence",
)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action an incident asked for, with its status as last reported."""

    id: str  # "<incident id>.<n>"
    kind: str  # detect | actuate | notify
    step: str  # open | retrigger | escalate[i] | clear
    params: Mapping[str, Any]
    at: int
    status: str = "requested"
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "kind": self.kind,
            "step": self.step,
            "params": dict(self.params),
            "at": self.at,
            "status": self.status,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionRecord:
        """The inverse of to_dict."""
        return cls(
            str(data["id"]),
            str(data["kind"]),
            str(data["step"]),
            dict(data["params"]),
            int(data["at"]),
            str(data["status"]),
            data.get("detail"),
        )


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident's state at one moment (the contract's fields)."""

    id: str
    rule: str
    title: str
    severity: str
    region: str
    site: str | None
    subject: str
    opened_at: int
    state: str  # active | acknowledged | cleared | archived
    acked_by: str | None
    acked_at: int | None
    cleared_at: int | None
    archived_at: int | None
    actions: tuple[ActionRecord, ...]
    evidence: tuple[Mapping[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, in the contract's field order."""
        out: dict[str, Any] = {name: getattr(self, name) for name in INCIDENT_FIELDS}
        out["actions"] = [a.to_dict() for a in self.actions]
        out["evidence"] = [dict(e) for e in self.evidence]
        return out


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """A trigger was entered and no incident was open for the rule and subject."""

    name: ClassVar[str] = "opened"
    at: int
    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentAcknowledged:
    """An operator acknowledged the incident."""

    name: ClassVar[str] = "acknowledged"
    at: int
    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentUpdated:
    """The incident changed without changing state: why is in `reason`.

    Reasons: `retrigger`, `escalate[i]`, `evidence` (a detection result), `action` (an
    action's status).
    """

    name: ClassVar[str] = "updated"
    at: int
    incident: Incident
    reason: str


@dataclass(frozen=True, slots=True)
class IncidentCleared:
    """The clear condition held (or the incident's rule was removed)."""

    name: ClassVar[str] = "cleared"
    at: int
    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentArchived:
    """A cleared incident was archived; the engine forgets it."""

    name: ClassVar[str] = "archived"
    at: int
    incident: Incident


@dataclass(frozen=True, slots=True)
class ActionRequested:
    """The engine asks for an action; `params` are resolved (camera and actuator ids)."""

    name: ClassVar[str] = "action"
    at: int
    action_id: str
    kind: str
    step: str
    params: Mapping[str, Any]
    incident_id: str
    rule: str
    subject: str
    region: str
    site: str | None
    severity: str


IncidentEvent: TypeAlias = (
    IncidentOpened | IncidentAcknowledged | IncidentUpdated | IncidentCleared | IncidentArchived
)
Event: TypeAlias = IncidentEvent | ActionRequested


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready form of any event, with its `event` name."""
    if isinstance(event, ActionRequested):
        return {
            "event": event.name,
            "at": event.at,
            "action_id": event.action_id,
            "kind": event.kind,
            "step": event.step,
            "params": dict(event.params),
            "incident_id": event.incident_id,
            "rule": event.rule,
            "subject": event.subject,
            "region": event.region,
            "site": event.site,
            "severity": event.severity,
        }
    out: dict[str, Any] = {"event": event.name, "at": event.at}
    if isinstance(event, IncidentUpdated):
        out["reason"] = event.reason
    out["incident"] = event.incident.to_dict()
    return out


class IncidentNotFoundError(LookupError):
    """No incident (open or cleared) has this id; it may have been archived."""


class IncidentStateError(ValueError):
    """The incident's state does not allow this, e.g. archiving an incident still open."""
