"""The engine's mutable incident record, its id, and its JSON form for snapshots."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from hub.rules.events import ActionRecord, Incident

# Detection results kept as evidence per incident; older ones give way to newer ones.
MAX_DETECTION_EVIDENCE = 20
# Evidence kept in all; beyond it, the oldest after the first few (what opened the incident)
# give way, so that a long incident re-triggered again and again stays small.
MAX_EVIDENCE = 60
KEEP_FIRST = 10


def incident_id(rule: str, subject: str, opened_at: int) -> str:
    """A short id that live runs, replays and rule tests all derive alike."""
    key = f"{rule}\x00{subject}\x00{opened_at}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


class IncidentRecord:
    """An incident as the engine keeps it; `view()` gives the frozen form events carry.

    Its snapshot form is kept until it changes: the state is saved several times a second,
    while an incident changes a few times in its life. Any attribute set, and the methods that
    change its lists, forget the kept form.
    """

    __slots__ = (
        "_encoded",
        "_json",
        "acked_at",
        "acked_by",
        "actions",
        "archived_at",
        "cleared_at",
        "esc_base",
        "esc_done",
        "evidence",
        "id",
        "opened_at",
        "order",
        "region",
        "rule",
        "severity",
        "site",
        "state",
        "subject",
        "title",
    )
    id: str
    rule: str
    title: str
    severity: str
    region: str
    site: str | None
    subject: str
    opened_at: int
    state: str
    acked_by: str | None
    acked_at: int | None
    cleared_at: int | None
    archived_at: int | None
    actions: list[ActionRecord]
    evidence: list[dict[str, Any]]
    esc_base: int
    esc_done: int
    order: tuple[int, ...]
    _json: dict[str, Any] | None
    _encoded: orjson.Fragment | None

    def __init__(
        self,
        *,
        id: str,
        rule: str,
        title: str,
        severity: str,
        region: str,
        site: str | None,
        subject: str,
        opened_at: int,
    ) -> None:
        # A new record has no kept form to forget: its fields are set past __setattr__, which
        # would forget it at each of them (a third of the engine's time to open an incident).
        fields: dict[str, Any] = {
            "id": id,
            "rule": rule,
            "title": title,
            "severity": severity,
            "region": region,
            "site": site,
            "subject": subject,
            "opened_at": opened_at,
            "state": "active",
            "acked_by": None,
            "acked_at": None,
            "cleared_at": None,
            "archived_at": None,
            "actions": [],
            "evidence": [],
            # Escalation steps count from esc_base (the opening, or a restart); esc_done has
            # a bit per step already run or skipped.
            "esc_base": opened_at,
            "esc_done": 0,
            "order": (),
            "_json": None,
            "_encoded": None,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name not in ("_json", "_encoded"):
            object.__setattr__(self, "_json", None)
            object.__setattr__(self, "_encoded", None)

    @property
    def is_open(self) -> bool:
        """Active or acknowledged: the incident still stands."""
        return self.state in ("active", "acknowledged")

    def view(self) -> Incident:
        """The incident's state now, frozen."""
        return Incident(
            id=self.id,
            rule=self.rule,
            title=self.title,
            severity=self.severity,
            region=self.region,
            site=self.site,
            subject=self.subject,
            opened_at=self.opened_at,
            state=self.state,
            acked_by=self.acked_by,
            acked_at=self.acked_at,
            cleared_at=self.cleared_at,
            archived_at=self.archived_at,
            actions=tuple(self.actions),
            evidence=tuple(dict(e) for e in self.evidence),
        )

    def on_timer(self, eng: Any, deadline: int, token: Any) -> None:
        """An escalation step or the automatic archiving fell due; the engine decides."""
        eng.incident_timer(self, deadline, token)

    def add_action(self, action: ActionRecord) -> None:
        """Record an action the incident asks for."""
        self.actions.append(action)
        self._json = self._encoded = None

    def set_action(self, index: int, action: ActionRecord) -> None:
        """Replace an action's record (its status changed)."""
        self.actions[index] = action
        self._json = self._encoded = None

    def add_evidence(self, item: dict[str, Any]) -> None:
        """Keep a piece of evidence, dropping the oldest detection beyond the limit."""
        self._json = self._encoded = None
        self.evidence.append(item)
        detections = [i for i, e in enumerate(self.evidence) if e.get("kind") == "detection"]
        if len(detections) > MAX_DETECTION_EVIDENCE:
            del self.evidence[detections[0]]
        if len(self.evidence) > MAX_EVIDENCE:
            del self.evidence[KEEP_FIRST]

    def to_json(self) -> dict[str, Any]:
        """Everything, for a snapshot (kept until the incident changes: do not modify it)."""
        if self._json is None:
            out = self.view().to_dict()
            out["esc_base"] = self.esc_base
            out["esc_done"] = self.esc_done
            self._json = out
        return self._json

    def encoded(self) -> orjson.Fragment:
        """`to_json()` already encoded, for orjson (kept until the incident changes)."""
        if self._encoded is None:
            self._encoded = orjson.Fragment(orjson.dumps(self.to_json()))
        return self._encoded

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentRecord:
        """The inverse of to_json."""
        rec = cls(
            id=str(data["id"]),
            rule=str(data["rule"]),
            title=str(data["title"]),
            severity=str(data["severity"]),
            region=str(data["region"]),
            site=data.get("site"),
            subject=str(data["subject"]),
            opened_at=int(data["opened_at"]),
        )
        rec.state = str(data["state"])
        rec.acked_by = data.get("acked_by")
        rec.acked_at = data.get("acked_at")
        rec.cleared_at = data.get("cleared_at")
        rec.archived_at = data.get("archived_at")
        rec.actions = [ActionRecord.from_dict(a) for a in data.get("actions", [])]
        rec.evidence = [dict(e) for e in data.get("evidence", [])]
        rec.esc_base = int(data.get("esc_base", rec.opened_at))
        rec.esc_done = int(data.get("esc_done", 0))
        return rec
