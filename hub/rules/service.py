"""The rule engine at work: readings in, incidents published and stored, actions dispatched.

Safety comes from one ordering. The engine's state and the events it emitted (the outbox)
are written to disk before any event leaves the process, and a reading's MQTT message is
acknowledged only once the state that reflects it is on disk. So after a SIGKILL the hub
restarts from its last state, the broker delivers again the readings the state does not
reflect, the engine (deterministic) arrives at the same incidents with the same ids, and
events still in the outbox are dispatched again (at least once; executors deduplicate by id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from hub import metrics
from hub.actions import ActionDispatcher
from hub.config.paths import collect_files
from hub.ingest.validate import Reading
from hub.inventory import Inventory
from hub.rules.check import check_rules
from hub.rules.engine.core import Engine
from hub.rules.events import ActionRequested, Event, IncidentNotFoundError, event_to_dict
from hub.rules.model import RuleSet
from hub.statefile import read_state, write_atomic
from hub.storage.line import point_line

log = logging.getLogger("hub.rules")

STATE_VERSION = 1
_OPEN_STATES = ("active", "acknowledged")


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
        self._outbox: list[dict[str, Any]] = []
        self._held: list[object] = []  # tokens of durable readings, waiting for the state
        self._dispatch_ready = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self.reload_problems: list[str] = []
        # Called with each incident event (the `event_to_dict` form) once the state that holds
        # it is saved; notifications listen here. A listener must not block.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._rule_files_seen = self._stat_rule_files()
        state = self._load()
        self.engine = Engine(rules, inventory, state.get("engine") if state else None)
        if state:
            self._outbox = list(state.get("outbox", []))
            log.info(
                "rules: restored state from %s (%d incidents, %d events to dispatch)",
                state_path,
                len(self.engine.incidents()),
                len(self._outbox),
            )
        self._republish = True
        metrics.RULES_LOADED.set(len(rules))
        metrics.RULES_VALID.set(1)
        self._update_gauges()

    # -- state ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        raw = read_state(self.state_path)
        if raw is None:
            return None
        state = orjson.loads(raw)
        if state.get("version") != STATE_VERSION:
            raise RuntimeError(
                f"{self.state_path}: state version {state.get('version')!r}, this hub reads "
                f"{STATE_VERSION}; move the file away to start afresh"
            )
        return dict(state)

    async def persist(self) -> None:
        """Write the engine's state and the outbox, then acknowledge what that state covers."""
        async with self._write_lock:
            covered, self._held = self._held, []
            data = orjson.dumps(
                {"version": STATE_VERSION, "engine": self.engine.snapshot(), "outbox": self._outbox}
            )
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
        for token in covered:
            self._ack(token)

    async def persist_if_needed(self) -> None:
        """The periodic job: write only when something changed or acknowledgements wait."""
        if self.engine.dirty or self._held:
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
            )
        )

    def acknowledge(self, incident_id: str, by: str) -> None:
        """An operator acknowledges an incident (raises IncidentNotFoundError)."""
        self._emit(self.engine.acknowledge(incident_id, by, self.clock()))

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
    ) -> None:
        """Open (or add to) the hub's own incident for rule and subject, e.g. a failed command."""
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
            )
        )

    def clear_system(self, rule: str, subject: str, note: str) -> None:
        """Clear the hub's own open incident for rule and subject, if there is one."""
        self._emit(self.engine.clear_system(rule, subject, note, self.clock()))

    def update_action(self, action_id: str, status: str, detail: str | None = None) -> None:
        """Record an action's status in its incident; nothing if the incident is archived."""
        try:
            events = self.engine.update_action(action_id, status, self.clock(), detail)
        except IncidentNotFoundError:
            return
        self._emit(events)

    def _emit(self, events: list[Event]) -> None:
        if not events:
            return
        for event in events:
            metrics.RULE_EVENTS.labels(event.name).inc()
        self._outbox.extend(event_to_dict(e) for e in events)
        self._idle.clear()
        self._dispatch_ready.set()
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.OUTBOX.set(len(self._outbox))
        metrics.INCIDENTS_OPEN.set(
            sum(1 for i in self.engine.incidents() if i.state in _OPEN_STATES)
        )

    # -- output -------------------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Persist, then hand each outbox event on; remove it once handed on, and persist."""
        while True:
            if self._republish:
                self._republish = False
                await self._republish_incidents()
            if not self._outbox:
                self._idle.set()
                self._dispatch_ready.clear()
                await self._dispatch_ready.wait()
                continue
            await self.persist()  # nothing leaves the process before it is on disk
            batch = list(self._outbox)
            # Everything in the batch is saved now; a barrier command must not wait behind the
            # broker's acknowledgement of an incident's retained state, so actions go first.
            ordered = sorted(batch, key=lambda e: e["event"] != ActionRequested.name)
            for event in ordered:
                try:
                    await self._dispatch(event)
                except Exception:
                    # One event that cannot go out must not hold up the ones behind it; the
                    # incidents' retained state is published again at the next start.
                    log.exception("rules: could not dispatch %s", event.get("event"))
            del self._outbox[: len(batch)]
            self._update_gauges()
            if not self._outbox:
                # With more events waiting, the next round's persist (before they leave)
                # saves this removal too: one write instead of two on the way to an action.
                await self.persist()

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
        self._emit(self.engine.replace_rules(rules))
        log.info("rules: reloaded, %d rules in force", len(rules))
