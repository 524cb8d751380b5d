"""A command to an actuator as a job, and how acks, reported states and the clock move it on.

Pure: no I/O and no wall clock; every time is passed in (nanoseconds since the epoch). Each
function returns whether the job changed, so that the caller persists exactly those changes
before it acts on them.

States: awaiting_confirmation -> queued -> sent -> accepted -> done, or failed, rejected,
timed_out, expired. `timed_out` is not final: an acknowledgement or state that comes late
still moves the job on, and an unacknowledged job is resent until it expires.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

FINAL = frozenset({"done", "failed", "rejected", "expired"})
TROUBLE = frozenset({"failed", "rejected", "timed_out", "expired"})
# An action's commands are named after it, so that the same action handed over twice (the
# rules' outbox is at least once) makes the same command, never a second one.
_NAMESPACE = uuid.UUID("6f1d3c2a-8a55-4c1e-9a0e-5b7f0d2e4a11")
S = 1_000_000_000


class CommandError(Exception):
    """A command that cannot be made or confirmed; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def command_id_for(action_id: str, actuator: str) -> str:
    """The command id of one actuator's command for a rule's action (stable across restarts)."""
    return str(uuid.uuid5(_NAMESPACE, f"{action_id}/{actuator}"))


@dataclass(slots=True, eq=False)  # identity: a job is one thing that changes
class CommandJob:
    """One command to one actuator, from its creation to its end; persisted on every change."""

    command_id: str
    actuator: str
    region: str
    site: str | None
    action: str  # the command: close, open, on, ...
    expect: str | None  # the state that confirms it, if the command has one
    actor: str  # an operator's token name, or the rule id
    reason: str
    issued_at: int
    expires_at: int
    state: str = "queued"
    detail: str | None = None
    action_id: str | None = None
    incident_id: str | None = None
    override: bool = False
    text: str | None = None  # what a sign is to show, sent with the command
    auto_at: int | None = None  # go-ahead without an operator (awaiting_confirmation)
    first_sent: int | None = None
    last_sent: int | None = None
    sends: int = 0
    acked: bool = False  # any acknowledgement came
    acked_done: bool = False
    accepted_at: int | None = None
    updated_at: int = 0

    @property
    def final(self) -> bool:
        """Whether nothing can change the job any more."""
        return self.state in FINAL

    @property
    def wants_send(self) -> bool:
        """Whether the command still has to reach the actuator (no ack yet, not final)."""
        return not self.final and not self.acked and self.state in ("queued", "sent", "timed_out")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the store and the API (every field is a scalar, so not
        dataclasses.asdict, whose deep copy costs over ten times as much on a barrier's way out)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandJob:
        """The inverse of to_dict; unknown keys (a newer hub's) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_FIELDS = tuple(f.name for f in dataclasses.fields(CommandJob))


def move(job: CommandJob, state: str, now: int, detail: str | None = None) -> bool:
    """Put the job in `state`; False (and no change) if it is final or already there."""
    if job.final or (job.state == state and job.detail == detail):
        return False
    job.state, job.detail, job.updated_at = state, detail, now
    return True


def on_sent(job: CommandJob, now: int) -> bool:
    """The broker took the command (PUBACK)."""
    job.sends += 1
    job.last_sent = now
    if job.first_sent is None:
        job.first_sent = now
    if job.state == "queued":
        return move(job, "sent", now)
    return True  # the send counters changed


def on_ack(job: CommandJob, status: str, state: str | None, detail: str | None, now: int) -> bool:
    """An acknowledgement from the actuator; `state` is the state it says it is in."""
    if job.final:
        return False
    job.acked = True
    if status == "accepted":
        if job.state in ("queued", "sent", "timed_out") and not job.acked_done:
            job.accepted_at = now
            return move(job, "accepted", now, detail)
        return True
    if status in ("failed", "rejected"):
        return move(job, status, now, detail or f"the actuator {status} the command")
    # done
    job.acked_done = True
    if job.accepted_at is None:
        job.accepted_at = now
    if job.expect is None:
        return move(job, "done", now, detail)
    if state is not None and state != job.expect:
        return move(
            job, "failed", now, f"acknowledged done, but in state {state!r}, not {job.expect!r}"
        )
    if job.state != "timed_out":
        move(job, "accepted", now, "done acknowledged; waiting for the reported state")
    return True


def on_state(job: CommandJob, state: str, transitional: tuple[str, ...], now: int) -> bool:
    """The actuator reported its state (retained `.../state`) after the command was sent.

    An acknowledgement proves the command arrived even when the broker's PUBACK has not been
    handled yet: the actuator's answers can overtake it."""
    if job.final or job.expect is None or (job.first_sent is None and not job.acked):
        return False
    if state == job.expect:
        return move(job, "done", now, f"state {state} confirmed")
    if state in transitional or not job.acked_done:
        return False  # moving, or the state from before the command
    return move(job, "failed", now, f"acknowledged done, but reports state {state!r}")


def confirmed_by_known(job: CommandJob, known: str | None, now: int) -> bool:
    """After a `done` ack: the state reported already (e.g. it was closed before) confirms it."""
    if job.final or not job.acked_done or known is None or known != job.expect:
        return False
    return move(job, "done", now, f"state {known} confirmed")


def due(
    job: CommandJob, now: int, *, ack_timeout: int, resend_every: int, done_timeout: int
) -> tuple[bool, bool]:
    """The clock: (changed, send now) for the job at `now`."""
    if job.final:
        return False, False
    if now >= job.expires_at:
        what = "expired before it was confirmed" if job.first_sent else "expired unsent"
        return move(job, "expired", now, what), False
    if job.state == "awaiting_confirmation":
        if job.auto_at is not None and now >= job.auto_at:
            return move(job, "queued", now, "no operator answered: going ahead"), True
        return False, False
    changed = False
    if (
        not job.acked
        and job.state == "sent"
        and job.first_sent is not None
        and now >= job.first_sent + ack_timeout
    ):
        changed = move(job, "timed_out", now, f"no acknowledgement in {ack_timeout / S:g}s")
    if (
        job.acked
        and job.state == "accepted"
        and job.accepted_at is not None
        and now >= job.accepted_at + done_timeout
    ):
        what = f"accepted, but no state confirmed {job.expect!r} in {done_timeout / S:g}s"
        changed = move(job, "timed_out", now, what)
    send = job.wants_send and (job.last_sent is None or now >= job.last_sent + resend_every)
    return changed, send


def next_due(job: CommandJob, *, ack_timeout: int, resend_every: int, done_timeout: int) -> int:
    """When the clock next has something to do for the job (a bound, not exact)."""
    times = [job.expires_at]
    if job.auto_at is not None and job.state == "awaiting_confirmation":
        times.append(job.auto_at)
    if job.wants_send:
        times.append((job.last_sent or 0) + resend_every)
        if job.first_sent is not None and job.state == "sent":
            times.append(job.first_sent + ack_timeout)
    if job.state == "accepted" and job.accepted_at is not None:
        times.append(job.accepted_at + done_timeout)
    return min(times)
