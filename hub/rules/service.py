"""The rule engine at work: readings in, incidents published and stored, actions dispatched.

Safety comes from two rules. A reading's MQTT message is acknowledged only once the engine's
state that reflects it is on disk (fsynced), so the broker keeps every reading whose effect
could still be lost. And no event leaves the process before it is written down, so a hub
killed after dispatching an event knows that it did. Two files keep the second cheap on the
way from a reading to a barrier command:

- the journal (`rules-events.jsonl`): each event is appended, with a sequence number, before
  it is dispatched, and a note once it is. These writes are not fsynced: they survive the
  process being killed, and after a power loss what they held is derived again (below);
- the state (`rules-state.json`): the engine's snapshot, the events not yet dispatched, and
  the last sequence number it covers, written atomically by a periodic job (and at drain).

After a crash the hub restarts from the last state and queues again the journal's events that
came after it and were not dispatched. The broker delivers again the readings the state does
not reflect, and the engine (deterministic) emits the same events with the same ids once more.
An action found in the journal is not asked for twice; incident events go out again, which
costs nothing (a retained message and a stored point are replaced, notifications are keyed)
and brings back what the killed process held in memory only. Had a power loss taken the
journal, the actions are dispatched again, and the executors deduplicate by id: a barrier
command's id comes from its action's id.

Events that stem from something the broker will not deliver again (an operator's
acknowledgement, a detection result, a rule reload) wait for a full state write instead,
unless their caller restores them itself at start (the actuators reconcile their commands).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from hub import metrics
from hub.actions import ActionDispatcher
from hub.config.paths import collect_files
from hub.ingest.validate import Reading
from hub.inventory import Inventory
from hub.journal import Journal
from hub.rules.check import check_rules
from hub.rules.engine.core import Engine
from hub.rules.events import ActionRequested, Event, IncidentNotFoundError, event_to_dict
from hub.rules.model import RuleSet
from hub.statefile import read_state, write_atomic
from hub.storage.line import point_line

log = logging.getLogger("hub.rules")

STATE_VERSION = 2
# Past this many records the journal is rewritten with only what the state does not cover.
JOURNAL_COMPACT = 5000


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None: ...


class Sink(Protocol):
    def submit(self, lines: bytes, count: int, token: object | None = None) -> None: ...


def rfc3339(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC with milliseconds, for people and CAP."""
    if ns is None:
        return None
    stamp = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def incident_payload(incident: dict[str, Any]) -> dict[str, Any]:
    """The contract's incident JSON: the engine's dict with times in RFC 3339."""
    out = dict(incident)
    for key in ("opened_at", "acked_at", "cleared_at", "archived_at"):
        if key in out:
            out[key] = rfc3339(out[key])
    out["actions"] = [
        {**action, "at": rfc3339(action.get("at"))} for action in out.get("actions", [])
    ]
    return out


def _record_seq(record: dict[str, Any]) -> int:
    """The sequence number a journal record is about: an event's, or the last one done."""
    return int(record["seq"] if "seq" in record else record["done"])


class RuleService:
    """Owns the engine, its state file, its outbox, and the acknowledgements it gates."""

    def __init__(
        self,
        rules: RuleSet,
        inventory: Inventory,
        *,
        state_path: Path,
        publisher: Publisher,
        sink: Sink,
        dispatcher: ActionDispatcher,
        ack: Callable[[object], None],
        prefix: str = "hub",
        rule_paths: Sequence[Path] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.inventory = inventory
        self.state_path = state_path
        self.publisher = publisher
        self.sink = sink
        self.dispatcher = dispatcher
        self.prefix = prefix.rstrip("/")
        self.rule_paths = tuple(rule_paths)
        self.clock = clock
        self._ack = ack
        # Events not yet dispatched, each with its sequence number.
        self._outbox: list[tuple[int, dict[str, Any]]] = []
        self._seq = 0  # the last sequence number given to an event
        self._on_disk = 0  # events up to this number are in the journal or the state
        self._state_seq = 0  # events up to this number are reflected in the saved state
        self._needs_state = 0  # the last event the broker will not bring about again
        self._outbox_saved = True  # the saved state's outbox is the one in memory
        self._journal = Journal(state_path.with_name("rules-events.jsonl"))
        self._journal_tail: list[dict[str, Any]] = []  # journal records the state lacks
        self._replayed: set[str] = set()  # ids of journalled actions the engine may ask again
        self._held: list[object] = []  # tokens of durable readings, waiting for the state
        self._dispatch_ready = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self.reload_problems: list[str] = []
        # Called with each incident event (the `event_to_dict` form) once the state that holds
        # it is saved; notifications listen here. A listener must not block.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        # Awaited after the state is saved and before the readings it reflects are
        # acknowledged: each makes durable what its owner did, unsynced, for those readings.
        self.before_ack: list[Callable[[], Awaitable[None]]] = []
        self._rule_files_seen = self._stat_rule_files()
        state = self._load()
        self.engine = Engine(rules, inventory, state.get("engine") if state else None)
        self._restore(state)
        self._republish = True
        metrics.RULES_LOADED.set(len(rules))
        metrics.RULES_VALID.set(1)
        self._update_gauges()
        metrics.INCIDENTS_OPEN.set(self.engine.open_count())

    # -- state ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        raw = read_state(self.state_path)
        if raw is None:
            return None
        state = orjson.loads(raw)
        if state.get("version") not in (1, STATE_VERSION):  # 1: no journal yet
            raise RuntimeError(
                f"{self.state_path}: state version {state.get('version')!r}, this hub reads "
                f"{STATE_VERSION}; move the file away to start afresh"
            )
        return dict(state)

    def _restore(self, state: dict[str, Any] | None) -> None:
        """The outbox from the state, then the journal's events that came after it."""
        covered = int(state.get("seq", 0)) if state else 0
        if state:
            self._outbox = [(covered, event) for event in state.get("outbox", [])]
        records = self._journal.read()
        done = max((int(r["done"]) for r in records if "done" in r), default=-1)
        if done >= covered:
            self._outbox = []  # dispatched once the state was saved (or while it was)
        for record in records:
            if "seq" not in record or int(record["seq"]) <= covered:
                continue
            seq = int(record["seq"])
            self._journal_tail.append(record)
            if seq > done:
                self._outbox.append((seq, record["event"]))
            if record["event"]["event"] == ActionRequested.name:
                self._replayed.add(record["event"]["action_id"])
        self._seq = self._on_disk = self._state_seq = self._needs_state = max(
            [covered, done, *(_record_seq(r) for r in self._journal_tail)]
        )
        if self._outbox:
            self._idle.clear()
        if state or self._outbox:
            log.info(
                "rules: restored state from %s (%d incidents, %d events to dispatch, %d of "
                "them from the journal)",
                self.state_path,
                len(self.engine.incidents()),
                len(self._outbox),
                len(self._journal_tail),
            )

    async def persist(self) -> None:
        """Write the engine's state and the outbox, then acknowledge what that state covers."""
        async with self._write_lock:
            covered, self._held = self._held, []
            seq = self._seq
            data = orjson.dumps(
                {
                    "version": STATE_VERSION,
                    "engine": self.engine.snapshot(encoded=True),
                    "outbox": [event for _, event in self._outbox],
                    "seq": seq,
                }
            )
            self._outbox_saved = True
            start = time.perf_counter()
            write = asyncio.ensure_future(asyncio.to_thread(write_atomic, self.state_path, data))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread writes on regardless; holding the lock until it is done keeps a
                # second writer (the drain at shutdown) off the same temporary file.
                await write
                raise
            metrics.STATE_PERSIST.observe(time.perf_counter() - start)
            # Counting open incidents walks them all (0.1 ms for 1,500): done here, after every
            # change of the engine's state, rather than at each event on a barrier's way out.
            metrics.INCIDENTS_OPEN.set(self.engine.open_count())
            self._state_seq = seq
            self._on_disk = max(self._on_disk, seq)
            self._journal_tail = [r for r in self._journal_tail if _record_seq(r) > seq]
            if self._journal.records > JOURNAL_COMPACT:
                await self._journal.rewrite(lambda: list(self._journal_tail))
            for barrier in self.before_ack:
                await barrier()
        for token in covered:
            self._ack(token)

    async def persist_if_needed(self) -> None:
        """The periodic job: write only when something changed or acknowledgements wait."""
        if self.engine.dirty or self._held or not self._outbox_saved:
            try:
                await self.persist()
            except asyncio.CancelledError:
                # Shutdown cancels the clock's jobs; the drain saves the state once more, so
                # a cancelled periodic save is not an error worth a traceback in the log.
                return

    def hold(self, tokens: Iterable[object]) -> None:
        """Acknowledge these once the engine's state that reflects their readings is saved.

        The engine saw a batch's readings before storage made them durable, so the next
        snapshot covers every token held by then.
        """
        self._held.extend(tokens)

    # -- input --------------------------------------------------------------------------------

    def on_readings(self, readings: list[Reading]) -> None:
        """Ingest's listener: run the rules over a batch of accepted readings."""
        self._emit(self.engine.on_readings(readings))

    async def tick(self) -> None:
        """The clock: `for` durations, `missing`, escalations and archiving come due."""
        self._emit(self.engine.tick(self.clock()))

    def on_detection(
        self,
        camera_id: str,
        site: str | None,
        ts_ns: int,
        detections: list[dict[str, Any]],
        *,
        snapshot: str | None = None,
        job_id: str | None = None,
    ) -> None:
        """A detection result: detection conditions and incidents' evidence."""
        self._emit(
            self.engine.on_detection(
                camera_id, site, ts_ns, detections, snapshot=snapshot, job_id=job_id
            ),
            replayed=False,
        )

    def acknowledge(self, incident_id: str, by: str) -> None:
        """An operator acknowledges an incident (raises IncidentNotFoundError)."""
        self._emit(self.engine.acknowledge(incident_id, by, self.clock()), replayed=False)

    def raise_system(
        self,
        rule: str,
        subject: str,
        *,
        region: str,
        site: str | None,
        title: str,
        severity: str,
        evidence: dict[str, Any],
        restored: bool = False,
    ) -> None:
        """Open (or add to) the hub's own incident for rule and subject, e.g. a failed command.

        `restored`: the caller makes this call again after a restart if it was lost.
        """
        self._emit(
            self.engine.raise_system(
                rule,
                subject,
                region=region,
                site=site,
                title=title,
                severity=severity,
                evidence=evidence,
                now_ns=self.clock(),
            ),
            replayed=restored,
        )

    def clear_system(self, rule: str, subject: str, note: str, *, restored: bool = False) -> None:
        """Clear the hub's own open incident for rule and subject, if there is one."""
        self._emit(self.engine.clear_system(rule, subject, note, self.clock()), replayed=restored)

    def update_action(
        self, action_id: str, status: str, detail: str | None = None, *, restored: bool = False
    ) -> None:
        """Record an action's status in its incident; nothing if the incident is archived."""
        try:
            events = self.engine.update_action(action_id, status, self.clock(), detail)
        except IncidentNotFoundError:
            return
        self._emit(events, replayed=restored)

    def _emit(self, events: list[Event], *, replayed: bool = True) -> None:
        """Queue events for dispatch. `replayed`: what caused them comes again after a crash
        (a reading the broker delivers again, the clock); if not, the state is saved first."""
        if not events:
            return
        for event in events:
            metrics.RULE_EVENTS.labels(event.name).inc()
            if isinstance(event, ActionRequested) and event.action_id in self._replayed:
                self._replayed.discard(event.action_id)  # asked for (and queued) already
                continue
            self._seq += 1
            self._outbox.append((self._seq, event_to_dict(event)))
        if not replayed:
            self._needs_state = self._seq
        self._outbox_saved = False
        self._idle.clear()
        self._dispatch_ready.set()
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.OUTBOX.set(len(self._outbox))

    # -- output -------------------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Make events durable, then hand each on; remove it once handed on."""
        await self._journal.open()
        while True:
            if self._republish:
                self._republish = False
                await self._republish_incidents()
            if not self._outbox:
                self._idle.set()
                self._dispatch_ready.clear()
                await self._dispatch_ready.wait()
                continue
            batch = list(self._outbox)
            # Nothing leaves the process before it is on disk.
            if self._needs_state > self._state_seq:
                await self.persist()
            else:
                await self._append_to_journal(batch)
            # A barrier command must not wait behind the broker's acknowledgement of an
            # incident's retained state, so actions go first.
            events = [event for _, event in batch]
            ordered = sorted(events, key=lambda e: e["event"] != ActionRequested.name)
            for event in ordered:
                try:
                    await self._dispatch(event)
                except Exception:
                    # One event that cannot go out must not hold up the ones behind it; the
                    # incidents' retained state is published again at the next start.
                    log.exception("rules: could not dispatch %s", event.get("event"))
            del self._outbox[: len(batch)]
            self._outbox_saved = False  # the periodic save records the removal...
            self._update_gauges()
            # ...and this note keeps a SIGKILL before that save from sending them again.
            done = {"done": batch[-1][0]}
            self._journal_tail.append(done)
            await self._journal.append([done], sync=False)

    async def _append_to_journal(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        fresh = [{"seq": seq, "event": event} for seq, event in batch if seq > self._on_disk]
        if not fresh:
            return
        last = batch[-1][0]
        # In the tail before the write: a compaction that runs once the write is done keeps it.
        self._journal_tail.extend(fresh)
        start = time.perf_counter()
        await self._journal.append(fresh, sync=False)
        metrics.JOURNAL_APPEND.observe(time.perf_counter() - start)
        self._on_disk = max(self._on_disk, last)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if event["event"] == ActionRequested.name:
            fields = {k: v for k, v in event.items() if k != "event"}
            await self.dispatcher.dispatch(ActionRequested(**fields))
            return
        incident = event["incident"]
        await self._publish_incident(incident)
        self.sink.submit(self._incident_line(event["event"], event["at"], incident), 1)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("rules: incident listener %r failed", listener)

    async def _publish_incident(self, incident: dict[str, Any]) -> None:
        topic = f"{self.prefix}/incidents/{incident['region']}/{incident['id']}"
        payload = (
            b""
            if incident["state"] == "archived"  # clears the retained message
            else orjson.dumps(incident_payload(incident))
        )
        await self.publisher.publish(topic, payload, qos=1, retain=True)

    async def _republish_incidents(self) -> None:
        """After a start, every incident's retained state and stored history are written again.

        A crash between saving the state and the broker or InfluxDB taking an event could
        leave either behind. Both writes are idempotent: a retained message replaces the last,
        and a point with the same tags and time replaces the one stored.
        """
        for incident in self.engine.incidents():
            record = incident.to_dict()
            await self._publish_incident(record)
            for event, at, state in (
                ("opened", record.get("opened_at"), "active"),
                ("acknowledged", record.get("acked_at"), "acknowledged"),
                ("cleared", record.get("cleared_at"), "cleared"),
            ):
                if at is not None:
                    self.sink.submit(self._incident_line(event, at, {**record, "state": state}), 1)

    @staticmethod
    def _incident_line(event: str, at: int, incident: dict[str, Any]) -> bytes:
        tags = {
            "rule": incident["rule"],
            "severity": incident["severity"],
            "region": incident["region"],
            "site": incident.get("site") or "",
            "subject": incident["subject"],
        }
        fields: dict[str, str | int | float | bool] = {
            "id": incident["id"],
            "state": incident["state"],
            "event": event,
            "title": incident.get("title") or "",
        }
        if incident.get("acked_by"):
            fields["acked_by"] = incident["acked_by"]
        return point_line("incident", {k: v for k, v in tags.items() if v}, fields, at)

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for the outbox to be dispatched, then persist."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "rules: %d events not dispatched at shutdown; they go out at the next start",
                len(self._outbox),
            )
        await self.persist()
        await self._journal.aclose()

    # -- hot reload ---------------------------------------------------------------------------

    def _stat_rule_files(self) -> dict[Path, tuple[float, int]]:
        files = collect_files(self.rule_paths, (".yaml", ".yml"))
        seen: dict[Path, tuple[float, int]] = {}
        for path in files:
            try:
                st = path.stat()
            except OSError:
                continue
            seen[path] = (st.st_mtime, st.st_size)
        return seen

    async def reload_if_changed(self) -> None:
        """The watch job: reload the rule files when any changed; keep the old rules on error."""
        seen = await asyncio.to_thread(self._stat_rule_files)
        if seen == self._rule_files_seen:
            return
        self._rule_files_seen = seen
        rules, problems = await asyncio.to_thread(check_rules, self.rule_paths, self.inventory)
        if rules is None:
            self.reload_problems = [str(p) for p in problems]
            metrics.RULES_RELOADS.labels("failed").inc()
            metrics.RULES_VALID.set(0)
            for problem in problems:
                log.error("rules not reloaded: %s", problem)
            log.error("rules: keeping the %d rules in force", len(self.engine.rules))
            return
        self.reload_problems = []
        metrics.RULES_RELOADS.labels("ok").inc()
        metrics.RULES_VALID.set(1)
        metrics.RULES_LOADED.set(len(rules))
        self._emit(self.engine.replace_rules(rules), replayed=False)
        log.info("rules: reloaded, %d rules in force", len(rules))
