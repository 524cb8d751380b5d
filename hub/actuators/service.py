"""Commands to actuators as persisted jobs: sent, resent with the same id, confirmed, timed out.

Every change to a job is committed to the store (space `actuators.jobs`, by command id)
before anything acts on it: before the command is published, before an actuator's
acknowledgement is acknowledged to the broker, before the audit trail, InfluxDB or the
incidents hear of it. The last state each actuator reported is kept beside them
(`actuators.states`, by actuator id). After a crash the hub loads both and resends what was
not acknowledged, with the same command id, so an actuator that deduplicates by id (the
contract asks it to) executes each command once.

An operator's command is durable (synced) before it goes out. A rule's command is only
committed, which survives the process being killed; the rules' state save syncs the store
before the reading that caused the command is acknowledged to the broker, and that sync
covers this commit too. A power loss in between loses the command and keeps the reading, so
the rule, deterministic, asks again for the command with the same id. That keeps the fsync
off the way from a rising river to a closing barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from hub.actuators import jobs as J
from hub.actuators.api import add_routes
from hub.actuators.config import ActuatorsConfig, refusal
from hub.actuators.inbound import Inbound, parse
from hub.actuators.policy import confirmation, interlock, rate_limited
from hub.actuators.report import SYSTEM_RULE, Reporter
from hub.config.model import ApiToken
from hub.inventory import Actuator, Inventory
from hub.mqtt import Message, MqttError
from hub.rules.events import ActionRequested, Incident
from hub.rules.service import RuleService, rfc3339
from hub.scheduler import Job
from hub.store import Changes, Store, StoreError
from hub.store.legacy import adopt, read_json_lines

log = logging.getLogger("hub.actuators")
PUBLISH_TIMEOUT = 2.0
JOBS = "actuators.jobs"  # command id -> CommandJob.to_dict()
STATES = "actuators.states"  # actuator id -> {"state", "ts", "at"}, the last it reported


class Mqtt(Protocol):
    def publish_nowait(
        self, topic: str, payload: bytes, retain: bool = False, *, expiry: float | None = None
    ) -> asyncio.Future[None]: ...
    def ack(self, messages: list[Message]) -> int: ...


class ActuatorService:
    """The actuators component and the executor of `actuate` actions."""

    name = "actuators"

    def __init__(
        self,
        config: ActuatorsConfig,
        inventory: Inventory,
        *,
        rules: RuleService,
        mqtt: Mqtt,
        reporter: Reporter,
        store: Store,
        legacy_dir: Path | None = None,
        prefix: str = "hub",
        tokens: Sequence[ApiToken] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.rules = rules
        self.mqtt = mqtt
        self.report = reporter
        self.prefix = prefix.rstrip("/")
        self.tokens = tuple(tokens)
        self.clock = clock
        self.topic_prefix: str | None = f"{self.prefix}/actuators/"
        self.subscriptions: Sequence[tuple[str, int]] = [
            (f"{self.prefix}/actuators/+/+/ack", 1),
            (f"{self.prefix}/actuators/+/+/state", 1),
        ]
        self.commands: dict[str, J.CommandJob] = {}
        # The same jobs by actuator and by rule action, oldest first: a new command looks at
        # its actuator's jobs, not at every job kept.
        self._by_actuator: dict[str, list[J.CommandJob]] = {}
        self._by_action: dict[str, list[J.CommandJob]] = {}
        self.states: dict[str, dict[str, Any]] = {}  # actuator -> {"state", "ts", "at"}
        self.store = store
        self._inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=10_000)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._sending: dict[str, asyncio.Task[None]] = {}  # command id -> waiting for PUBACK
        self._ns = {
            "ack_timeout": int(config.ack_timeout * J.S),
            "resend_every": int(config.resend_every * J.S),
            "done_timeout": int(config.done_timeout * J.S),
        }
        # Finished jobs are pruned once this many are kept (see `_on_clock`).
        self._prune_above = config.compact_after
        if legacy_dir is not None:
            self._import_legacy(legacy_dir / "actuators" / "commands.jsonl")
        self._load()
        # Nothing to add to the rules' `before_ack`: the rules sync this same store before
        # they acknowledge a reading, and that sync makes a rule's command, committed
        # unsynced on its way out, durable with their state.

    # -- the component ------------------------------------------------------------------------

    def on_messages(self, messages: list[Message]) -> None:
        """Acks and states from actuators; acknowledged once what they changed is durable."""
        for msg in messages:
            try:
                self._inbox.put_nowait(msg)
            except asyncio.QueueFull:
                # Not acknowledged: the broker delivers it again after a reconnect.
                log.error(  # noqa: TRY400 - no traceback to show
                    "actuators: inbox full, %s left to the broker", msg.topic
                )

    def jobs(self) -> list[Job]:
        """No scheduled jobs: the component runs its own clock (deadlines of its jobs)."""
        return []

    def commands_list(self) -> list[J.CommandJob]:
        """Every job kept, oldest first."""
        return sorted(self.commands.values(), key=lambda j: (j.issued_at, j.command_id))

    def add_routes(self, app: web.Application) -> None:
        """The HTTP API of actuators."""
        add_routes(app, self)

    async def run(self) -> None:
        """Handle acks and states, and the clock: resends, timeouts, expiry, escalation."""
        await self._reconcile()
        while True:
            timeout = max(0.0, min(1.0, (self._next_due() - self.clock()) / J.S))
            batch: list[Message] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    batch.append(await self._inbox.get())
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            if batch:
                await self._handle(batch)
            await self._on_clock()

    async def close(self) -> None:
        """Nothing is buffered: every change is committed before it is acted on (the hub
        syncs and closes the store). A command the broker has not acknowledged yet is sent
        again after the restart."""
        for task in list(self._sending.values()):
            task.cancel()
        await asyncio.gather(*self._sending.values(), return_exceptions=True)

    # -- making commands ----------------------------------------------------------------------

    async def execute(self, action: ActionRequested) -> None:
        """The `actuate` executor: one command per actuator, once per action id."""
        params = action.params
        expires = params.get("expires_s")
        for actuator in params.get("actuators", []):
            command_id = J.command_id_for(action.action_id, actuator)
            if command_id in self.commands:
                continue  # handed over again after a restart: already made
            await self.submit(
                actuator,
                str(params["command"]),
                actor=action.rule,
                reason=f"{action.rule}: incident {action.incident_id} ({action.step})",
                command_id=command_id,
                action_id=action.action_id,
                incident_id=action.incident_id,
                from_rule=True,
                expires_s=float(expires) if expires is not None else None,
                text=str(params["text"]) if params.get("text") is not None else None,
            )

    async def submit(
        self,
        actuator_id: str,
        command: str,
        *,
        actor: str,
        reason: str,
        command_id: str | None = None,
        action_id: str | None = None,
        incident_id: str | None = None,
        from_rule: bool = False,
        override: bool = False,
        expires_s: float | None = None,
        text: str | None = None,
    ) -> J.CommandJob:
        """Make a command, apply the safety policies, persist it, and send it if it may go."""
        actuator = self.inventory.actuators.get(actuator_id)
        if actuator is None:
            raise J.CommandError(f"no actuator {actuator_id!r} in the inventory", 404)
        # A command its kind does not take: an operator's is refused before anything is kept
        # or sent (the rules were checked against the same lists when they loaded; an action
        # of theirs from before a change of the lists is kept as rejected, where it shows).
        unknown = refusal(
            self.config.commands, actuator.kind, command, f"{actuator.kind} {actuator_id}"
        )
        if unknown is not None and not from_rule:
            raise J.CommandError(unknown, 400)
        async with self._lock:
            now = self.clock()
            cid = command_id or str(uuid.uuid4())
            if cid in self.commands:
                return self.commands[cid]
            job = J.CommandJob(
                command_id=cid,
                actuator=actuator_id,
                region=actuator.region,
                site=actuator.site,
                action=command,
                expect=self.config.states.get(command),
                actor=actor,
                reason=reason,
                issued_at=now,
                expires_at=now + int((expires_s or self.config.expires) * J.S),
                action_id=action_id,
                incident_id=incident_id,
                override=override,
                text=text,
                updated_at=now,
            )
            refused = unknown
            if not override and refused is None:
                issued = [
                    j.issued_at
                    for j in self._by_actuator.get(actuator_id, ())
                    if j.state != "rejected" and not j.override
                ]
                refused = rate_limited(self.config.rate_limit, issued, now) or interlock(
                    self.config.interlocks, actuator, command, partial(self._incidents_at, actuator)
                )
            policy = confirmation(self.config.confirm, actuator, command) if from_rule else None
            if refused:
                job.state, job.detail = "rejected", refused
            elif policy is not None:
                job.state, job.detail = "awaiting_confirmation", "waiting for an operator"
                if policy.auto_after is not None:
                    job.auto_at = now + int(policy.auto_after * J.S)
            changed = [job]
            if not refused:
                # Only the latest command to an actuator may be resent: an old `close` resent
                # after a newer `open` would undo it.
                changed += [
                    old
                    for old in self._by_actuator.get(actuator_id, ())
                    if J.move(old, "expired", now, f"superseded by {cid}")
                ]
            self._keep(job)
            if from_rule:
                self._send_then_commit(job, changed)
            else:
                await self._persist(changed)  # an operator's command: durable, then sent
                if job.state == "queued":
                    self._send(job)  # out first: what follows is bookkeeping
        self.report.created(job)
        for old in changed[1:]:
            self._after(old, "hub")
        self._after(job, actor)
        return job

    async def confirm(
        self, actuator_id: str, command_id: str, actor: str, *, approve: bool = True
    ) -> J.CommandJob:
        """An operator lets a held command go (or refuses it)."""
        job = self.commands.get(command_id)
        if job is None or job.actuator != actuator_id:
            raise J.CommandError(f"no command {command_id} for actuator {actuator_id}", 404)
        async with self._lock:
            if job.state != "awaiting_confirmation":
                raise J.CommandError(f"command {command_id} is {job.state}, not awaiting", 409)
            now = self.clock()
            if approve:
                J.move(job, "queued", now, f"confirmed by {actor}")
                self._interlock_again(job, now)
            else:
                J.move(job, "rejected", now, f"refused by {actor}")
            await self._persist([job])
        if job.state == "queued":
            self._send(job)
        self.report.confirmation(job, actor, approve)
        self._after(job, actor)
        return job

    def _send_then_commit(self, job: J.CommandJob, changed: list[J.CommandJob]) -> None:
        """A rule's command goes out, then its record is committed, in one step of the event
        loop: nothing runs in between, and the store's commit is not on a barrier's way
        (measured: 0.2 ms at the median on a loaded two-core machine, where the command's
        write to the broker is a few microseconds).

        A kill between the two loses the record, not the command: the reading that asked for
        it is not acknowledged before the rules' next durable save, which comes after this
        commit, so the broker delivers it again, the rule asks again for the same action,
        and the command goes out again with the same id, which the controller executes once
        (the contract's deduplication by `command_id`). A full disk does not hold the
        command back: it goes, is followed in memory, and is recorded with its next change.
        """
        if job.state == "queued":
            self._send(job)
        try:
            self.store.commit(_job_changes(changed))
        except StoreError as exc:
            log.error(  # noqa: TRY400 - the store's message names the cause
                "actuators: command %s sent but not recorded yet (%s); it is followed in "
                "memory and recorded with its next change",
                job.command_id,
                exc,
            )

    def _interlock_again(self, job: J.CommandJob, now: int) -> None:
        """A held command goes only if its interlock still allows it."""
        actuator = self.inventory.actuators[job.actuator]
        why = interlock(
            self.config.interlocks, actuator, job.action, partial(self._incidents_at, actuator)
        )
        if why and not job.override:
            J.move(job, "rejected", now, why)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, job: J.CommandJob) -> None:
        """Write the command now; a task notes it sent once the broker has it (PUBACK).

        Nothing waits for the broker here, so that a site's second barrier, and the events
        behind a command, do not wait for the first command's round trip."""
        if job.command_id in self._sending:
            return  # on its way: the broker has not answered yet
        payload = {
            "command_id": job.command_id,
            "action": job.action,
            "incident_id": job.incident_id,
            "issued_at": rfc3339(job.issued_at),
            "expires_at": rfc3339(job.expires_at),
            "reason": job.reason,
        }
        if job.text is not None:
            payload["text"] = job.text
        topic = f"{self.prefix}/actuators/{job.region}/{job.actuator}/command"
        # MQTT 5's Message Expiry: a broker never delivers a stale close or open, hours late,
        # to a controller that was offline (its persistent session queues the command).
        expiry = (job.expires_at - self.clock()) / J.S
        try:
            taken = self.mqtt.publish_nowait(topic, orjson.dumps(payload), expiry=expiry)
        except MqttError as exc:
            log.warning("actuators: command %s not sent: %r", job.command_id, exc)
            job.last_sent = self.clock()
            return
        # Read here too, so that an answer that comes after the wait below gave up is not
        # reported as never retrieved.
        taken.add_done_callback(lambda f: f.cancelled() or f.exception())
        task = asyncio.create_task(self._taken(job, taken), name=f"sent-{job.command_id}")
        self._sending[job.command_id] = task
        task.add_done_callback(partial(self._sent_done, job.command_id))

    def _sent_done(self, command_id: str, task: asyncio.Task[None]) -> None:
        self._sending.pop(command_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Nobody awaits the task: say it here. The clock sends the command again.
            log.error("actuators: recording command %s as sent failed", command_id, exc_info=exc)

    async def _taken(self, job: J.CommandJob, taken: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await asyncio.shield(taken)
        except (TimeoutError, MqttError) as exc:
            # The client keeps a QoS 1 message it could not hand over yet; the clock resends.
            log.warning(
                "actuators: command %s not yet taken by the broker: %r", job.command_id, exc
            )
            job.last_sent = self.clock()
            return
        async with self._lock:
            before = job.state
            if not J.on_sent(job, self.clock()):
                return
            # Not synced: a lost `sent` only means the same command is sent again.
            await self._persist([job], sync=False)
        if job.state != before:
            self._after(job, "hub")

    # -- what actuators say -------------------------------------------------------------------

    async def _handle(self, batch: list[Message]) -> None:
        inbound: list[Inbound] = []
        for msg in batch:
            item = parse(msg, f"{self.prefix}/actuators/")
            if isinstance(item, str):
                log.warning("actuators: %s", item)
            elif item.actuator not in self.inventory.actuators:
                log.warning("actuators: %s from an actuator not in the inventory", msg.topic)
            else:
                inbound.append(item)
        async with self._lock:
            now = self.clock()
            changed: list[J.CommandJob] = []
            reported: list[str] = []  # actuators whose state changed
            for item in inbound:
                changed += self._apply(item, now, reported)
            await self._persist(changed, reported, sync=False)
        # Durable before the broker forgets the messages, but synced outside the lock: a
        # rule's command to another barrier must not wait for this fsync.
        await self.store.sync()
        self.mqtt.ack(batch)
        for item in inbound:
            self.report.inbound(item, self.commands.get(item.command_id or ""))
        for job in dict.fromkeys(changed):
            self._after(job, job.actuator)

    def _apply(self, item: Inbound, now: int, reported: list[str]) -> list[J.CommandJob]:
        if item.kind == "state":
            self.states[item.actuator] = {"state": item.state, "ts": item.ts, "at": now}
            reported.append(item.actuator)
            return [
                j
                for j in self.commands.values()
                if j.actuator == item.actuator
                and J.on_state(j, str(item.state), self.config.transitional, now)
            ]
        job = self.commands.get(item.command_id or "")
        if job is None or job.actuator != item.actuator:
            return []
        changed = J.on_ack(job, str(item.status), item.state, item.detail, now)
        known = self.states.get(job.actuator, {}).get("state")
        changed = J.confirmed_by_known(job, known, now) or changed
        return [job] if changed else []

    # -- the clock ----------------------------------------------------------------------------

    def _next_due(self) -> int:
        live = [j for j in self.commands.values() if not j.final]
        return min((J.next_due(j, **self._ns) for j in live), default=self.clock() + J.S)

    async def _on_clock(self) -> None:
        sends: list[J.CommandJob] = []
        async with self._lock:
            now = self.clock()
            changed = []
            for job in [j for j in self.commands.values() if not j.final]:
                was = job.state
                moved, send = J.due(job, now, **self._ns)
                if moved and was == "awaiting_confirmation" and job.state == "queued":
                    self._interlock_again(job, now)
                    send = job.state == "queued"
                if moved:
                    changed.append(job)
                if send:
                    sends.append(job)
            # Not synced: a resend, a time-out or an expiry lost to a power loss is made
            # again by the clock from the jobs' times.
            await self._persist(changed, sync=False)
        for job in sends:
            self._send(job)
        for job in changed:
            self._after(job, "hub")
        self._escalate()
        if len(self.commands) > self._prune_above:
            await self._prune()

    def _incidents_at(self, actuator: Actuator) -> list[Incident]:
        return self.rules.engine.incidents(site=actuator.site) if actuator.site else []

    def _escalate(self) -> None:
        """A failed command's incident that nobody acknowledged rises in severity."""
        limit = self.clock() - int(self.config.escalate_after * J.S)
        wanted = self.config.escalate_severity
        for incident in self.rules.engine.incidents(rule=SYSTEM_RULE):
            if (
                incident.rule == SYSTEM_RULE
                and incident.state == "active"
                and incident.opened_at <= limit
                and incident.severity != wanted
            ):
                self.report.escalate(incident, wanted)

    # -- persistence --------------------------------------------------------------------------

    def _import_legacy(self, path: Path) -> None:
        """Move the journal of an older hub into the store, once (at the first start after
        the upgrade), then rename it `<name>.imported`."""
        if not path.exists():
            return
        if self.store.count(JOBS) or self.store.count(STATES):
            log.warning(
                "actuators: %s left alone: the store already holds commands (remove the file)",
                path,
            )
            return
        jobs: dict[str, dict[str, Any]] = {}
        states: dict[str, dict[str, Any]] = {}
        for record in read_json_lines(path):  # later records of a job replace earlier ones
            if "job" in record:
                jobs[str(record["job"]["command_id"])] = record["job"]
            elif "state" in record:
                state = dict(record["state"])
                states[str(state.pop("actuator"))] = state
        changes = Changes()
        for cid, job in jobs.items():
            changes.put(JOBS, cid, job)
        for actuator, state in states.items():
            changes.put(STATES, actuator, state)
        adopt(self.store, changes, [path])
        log.info(
            "actuators: imported %d commands and %d states from %s into %s",
            len(jobs),
            len(states),
            path,
            self.store.location,
        )

    def _load(self) -> None:
        self.states = {str(a): dict(s) for a, s in self.store.load(STATES).items()}
        loaded = [J.CommandJob.from_dict(d) for d in self.store.load(JOBS).values()]
        # The indexes by actuator and by action are oldest first, as the jobs were made.
        for job in sorted(loaded, key=lambda j: (j.issued_at, j.command_id)):
            self._keep(job)
        live = sum(1 for j in self.commands.values() if not j.final)
        if self.commands:
            log.info(
                "actuators: %d commands restored, %d still under way", len(self.commands), live
            )

    async def _persist(
        self, jobs: list[J.CommandJob], reported: Sequence[str] = (), *, sync: bool = True
    ) -> None:
        """Commit the jobs and the actuators' states as one; with `sync`, durable on return."""
        changes = _job_changes(jobs)
        for actuator in dict.fromkeys(reported):
            changes.put(STATES, actuator, self.states[actuator])
        if sync:
            await self.store.commit_durable(changes)
        else:
            self.store.commit(changes)

    async def _prune(self) -> None:
        """Delete the finished jobs older than `keep_finished`, from memory and the store."""
        async with self._lock:
            keep_after = self.clock() - int(self.config.keep_finished * J.S)
            gone = [j for j in self.commands.values() if j.final and j.updated_at <= keep_after]
            if gone:
                changes = Changes()
                for job in gone:
                    changes.delete(JOBS, job.command_id)
                # Not synced: a pruned job that a power loss brings back is pruned again.
                self.store.commit(changes)
                ids = {j.command_id for j in gone}
                kept = [j for j in self.commands.values() if j.command_id not in ids]
                self.commands, self._by_actuator, self._by_action = {}, {}, {}
                for job in kept:
                    self._keep(job)
            # Jobs younger than `keep_finished` stay: the next look is once this many more
            # have come, not at every tick of the clock.
            self._prune_above = len(self.commands) + self.config.compact_after

    async def _reconcile(self) -> None:
        """After a start: incidents and actions reflect the store, even if a crash came
        between persisting a change and telling the rules about it."""
        latest: dict[str, J.CommandJob] = {}
        for job in self.commands_list():
            latest[job.actuator] = job
            if job.action_id:
                self.report.action_status(job, self._siblings(job), only_if_changed=True)
        for job in latest.values():
            self.report.incident(job, only_if_changed=True)
        for job in self.commands.values():
            if job.wants_send:
                job.last_sent = None  # resend at once: the broker may not have it

    def _after(self, job: J.CommandJob, actor: str) -> None:
        self.report.changed(job, actor, self._siblings(job))

    def _keep(self, job: J.CommandJob) -> None:
        """Keep a job not kept yet (new, or loaded from the store, oldest first)."""
        self.commands[job.command_id] = job
        self._by_actuator.setdefault(job.actuator, []).append(job)
        if job.action_id is not None:
            self._by_action.setdefault(job.action_id, []).append(job)

    def _siblings(self, job: J.CommandJob) -> list[J.CommandJob]:
        """The commands of the job's action (the job alone if it has none), oldest first:
        what its action's status is made of."""
        if job.action_id is None:
            return [job]
        return sorted(
            self._by_action.get(job.action_id, [job]), key=lambda j: (j.issued_at, j.command_id)
        )


def _job_changes(jobs: list[J.CommandJob]) -> Changes:
    """The jobs' records, each once."""
    changes = Changes()
    for job in dict.fromkeys(jobs):
        changes.put(JOBS, job.command_id, job.to_dict())
    return changes
