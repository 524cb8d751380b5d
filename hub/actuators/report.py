"""What a command's changes tell the rest of the hub: the audit trail, the `command`
measurement, the status of the rule's action, and the hub's own incident for a failing
actuator. Called only once the change is committed to the store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from hub.actuators.config import ActuatorsConfig
from hub.actuators.inbound import Inbound
from hub.actuators.jobs import TROUBLE, CommandJob
from hub.audit import AuditLog
from hub.rules.events import Incident
from hub.rules.service import RuleService
from hub.storage.line import point_line

SYSTEM_RULE = "actuator-command"
_PROGRESS = ("awaiting_confirmation", "queued", "sent", "accepted", "done")
# The states a rule's incident shows for its action: each update is an incident event that is
# persisted and published, so the steps in between (queued, accepted) are left to the API.
_SHOWN = frozenset(
    {"awaiting_confirmation", "sent", "done", "failed", "rejected", "timed_out", "expired"}
)


class Sink(Protocol):
    def submit(self, lines: bytes, count: int, token: object | None = None) -> None: ...


def action_status(siblings: list[CommandJob]) -> tuple[str, str]:
    """One status for an action's commands (the worst of them), and each one's in words."""
    detail = "; ".join(f"{j.actuator} {j.state}" for j in siblings)
    trouble = [j.state for j in siblings if j.state in TROUBLE]
    if trouble:
        return trouble[0], detail
    return min((j.state for j in siblings), key=_PROGRESS.index, default="requested"), detail


def _superseded(job: CommandJob) -> bool:
    return job.state == "expired" and (job.detail or "").startswith("superseded")


class Reporter:
    """Audit, storage and incidents for command jobs."""

    def __init__(
        self,
        config: ActuatorsConfig,
        rules: RuleService,
        audit: AuditLog,
        sink: Sink,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.rules = rules
        self.audit = audit
        self.sink = sink
        self.clock = clock
        self._last_ns = 0

    def created(self, job: CommandJob) -> None:
        """A new command (and the override that let it past the interlocks)."""
        self.audit.record(
            "command",
            job.actor,
            f"{job.action} {job.actuator}: {job.reason}",
            command_id=job.command_id,
            actuator=job.actuator,
            incident_id=job.incident_id,
        )
        if job.override:
            self.audit.record(
                "override",
                job.actor,
                f"{job.action} {job.actuator} past interlocks and the rate limit: {job.reason}",
                command_id=job.command_id,
                actuator=job.actuator,
                incident_id=job.incident_id,
            )

    def confirmation(self, job: CommandJob, actor: str, approve: bool) -> None:
        """An operator let a held command go, or refused it."""
        what = "confirmed" if approve else "refused"
        self.audit.record(
            "confirmation",
            actor,
            f"{what} {job.action} {job.actuator}",
            command_id=job.command_id,
            actuator=job.actuator,
        )

    def inbound(self, item: Inbound, job: CommandJob | None) -> None:
        """Every ack and state report, as the actuator sent it."""
        if item.kind == "state":
            detail = f"{item.actuator} reports state {item.state}"
        else:
            known = "" if job is not None else " (no such command)"
            detail = f"{item.actuator} acknowledged {item.command_id}: {item.status}{known}"
            if item.detail:
                detail += f" - {item.detail}"
        self.audit.record(
            item.kind if item.kind == "state" else "ack",
            item.actuator,
            detail,
            actuator=item.actuator,
            command_id=item.command_id,
            status=item.status,
            state=item.state,
        )

    def changed(self, job: CommandJob, actor: str, siblings: list[CommandJob]) -> None:
        """The job changed state: store it, audit it, and tell the incidents."""
        ts = max(self.clock(), self._last_ns + 1)  # equal tags and time would overwrite
        self._last_ns = ts
        fields: dict[str, str | int | float | bool] = {
            "command_id": job.command_id,
            "status": job.state,
            "actor": job.actor,
            "sends": job.sends,
        }
        for key in ("detail", "incident_id", "action_id"):
            value = getattr(job, key)
            if value:
                fields[key] = value
        tags = {"actuator": job.actuator, "action": job.action, "region": job.region}
        self.sink.submit(point_line("command", tags, fields, ts), 1)
        self.audit.record(
            "command",
            actor,
            f"{job.action} {job.actuator}: {job.state}"
            + (f" ({job.detail})" if job.detail else ""),
            command_id=job.command_id,
            actuator=job.actuator,
            status=job.state,
        )
        if job.action_id and job.state in _SHOWN:
            self.action_status(job, siblings)
        self.incident(job)

    def action_status(
        self, job: CommandJob, siblings: list[CommandJob], *, only_if_changed: bool = False
    ) -> None:
        """The rule's action shows the status of its commands (`siblings`, oldest first)."""
        assert job.action_id is not None
        status, detail = action_status(siblings)
        if only_if_changed:
            incident = self.rules.engine.incident(job.action_id.rpartition(".")[0])
            recorded = next(
                (a for a in (incident.actions if incident else ()) if a.id == job.action_id), None
            )
            if recorded is None or (recorded.status, recorded.detail) == (status, detail):
                return
        # The commands in the store make this call again after a restart (reconcile), so the
        # rules need not save their whole state before telling others of it.
        self.rules.update_action(job.action_id, status, detail, restored=True)

    def incident(self, job: CommandJob, *, only_if_changed: bool = False) -> None:
        """Open (or add to) the actuator's incident on trouble; clear it once a command is done."""
        open_now = self.rules.engine.system_incident(SYSTEM_RULE, job.actuator) is not None
        refused_here = job.state == "rejected" and not job.acked and job.action_id is None
        if job.state in TROUBLE and not _superseded(job) and not refused_here:
            if only_if_changed and open_now:
                return
            self.rules.raise_system(
                SYSTEM_RULE,
                job.actuator,
                region=job.region,
                site=job.site,
                title=f"Command {job.action} to {job.actuator}: {job.state}",
                severity=self.config.incident_severity,
                evidence={
                    "kind": "command",
                    "command_id": job.command_id,
                    "action": job.action,
                    "status": job.state,
                    "detail": job.detail,
                },
                restored=True,
            )
        elif job.state == "done" and open_now:
            self.rules.clear_system(
                SYSTEM_RULE,
                job.actuator,
                f"command {job.command_id} ({job.action}) done",
                restored=True,
            )

    def escalate(self, incident: Incident, severity: str) -> None:
        """Nobody acknowledged the actuator's incident in time: it rises in severity."""
        self.rules.raise_system(
            SYSTEM_RULE,
            incident.subject,
            region=incident.region,
            site=incident.site,
            title=incident.title,
            severity=severity,
            evidence={"kind": "note", "text": f"escalated to {severity}: not acknowledged"},
        )
        self.audit.record(
            "escalation",
            "hub",
            f"incident {incident.id} escalated to {severity}",
            incident_id=incident.id,
        )
