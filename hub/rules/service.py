"""The rule engine at work: readings in, incidents published and stored, actions dispatched.

Safety comes from two rules. A reading's MQTT message is acknowledged only once the engine's
state that reflects it is durable (committed to the store and synced), so the broker keeps
every reading whose effect could still be lost. And no event leaves the process before it is
committed, so a hub killed after dispatching an event knows that it did. Two spaces of the
store keep the second cheap on the way from a reading to a barrier command:

- `rules.events`, the journal: each event is committed under its sequence number before it
  is dispatched, and a note (`rules.state` / `dispatched`) once it is. These commits are not
  synced: they survive the process being killed, and after a power loss what they held is
  derived again (below);
- `rules.state`: the engine's state, the events not yet dispatched, and the last sequence
  number it covers, saved by a periodic job (and at drain) as keys of their own per subject,
  incident and event, only those that changed (`hub.rules.keyed`). The save's last commit
  deletes the journal's events that it covers, and the sync that follows makes both durable
  before any reading is acknowledged.

After a crash the hub restarts from the last snapshot and queues again the journal's events
that came after it and were not dispatched. The broker delivers again the readings the
snapshot does not reflect, and the engine (deterministic) emits the same events with the same
ids once more. An action found in the journal is not asked for twice; incident events go out
again, which costs nothing (a retained message and a stored point are replaced,
notifications are keyed) and brings back what the killed process held in memory only. Had a
power loss taken the unsynced journal, the actions are dispatched again, and the executors
deduplicate by id: a barrier command's id comes from its action's id.

Events that stem from something the broker will not deliver again (an operator's
acknowledgement, a detection result, a rule reload) wait for a durable snapshot instead,
unless their caller restores them itself at start (the actuators reconcile their commands).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
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
from hub.rules.keyed import STATE, KeyedState
from hub.rules.model import RuleSet
from hub.rules.rederive import snapshot_from_incidents
from hub.storage.line import point_line
from hub.store import Changes, Store, StoreError, seq_key
from hub.store.legacy import adopt, read_json_lines

log = logging.getLogger("hub.rules")

# STATE: the keys of hub.rules.keyed, DISPATCHED, and SNAPSHOT until the first save
SNAPSHOT = "snapshot"  # the state of version 3: {"version", "engine", "outbox", "seq"}
DISPATCHED = "dispatched"  # {"seq": the last event handed on}
EVENTS = "rules.events"  # seq_key(seq) -> an event, journalled before it is handed on
STATE_VERSION = 3  # of SNAPSHOT; 1 and 2 were files, read only by the import of older files
# An event the store could not record waits this long before the next try, doubling up to
# RETRY_MAX: a full disk is not fixed in milliseconds, and each try writes a line to the log.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0
LEGACY_STATE = "rules-state.json"
LEGACY_JOURNAL = "rules-events.jsonl"


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


def import_legacy(store: Store, folder: Path) -> None:
    """Bring an older hub's rules state and journal files into an empty store, once.

    The files are renamed `<name>.imported` once the store holds their content durably.
    """
    state_file, journal_file = folder / LEGACY_STATE, folder / LEGACY_JOURNAL
    found = [path for path in (state_file, journal_file) if path.exists()]
    if not found:
        return
    if store.count(STATE) or store.count(EVENTS):
        log.warning(
            "rules: %s not imported: %s holds the rules' state already",
            " and ".join(map(str, found)),
            store.location,
        )
        return
    changes = Changes()
    covered = 0
    imported: list[str] = []
    snapshot: dict[str, Any] = {"version": STATE_VERSION, "engine": None, "outbox": [], "seq": 0}
    if state_file.exists():
        state = orjson.loads(state_file.read_bytes())
        if state.get("version") not in (1, 2):  # 1: before the journal
            raise RuntimeError(
                f"{state_file}: state version {state.get('version')!r}, this hub imports 1 "
                "and 2; move the file away to start afresh"
            )
        covered = int(state.get("seq", 0))
        # The files kept the outbox's events without their numbers. Numbered as the state's
        # last event, they stay queued unless the journal notes that number dispatched, which
        # is how the older hub read them; version 1 kept no number, and 1 keeps them queued.
        number = max(covered, 1)
        snapshot["engine"] = state.get("engine")
        snapshot["outbox"] = [[number, event] for event in state.get("outbox", [])]
        snapshot["seq"] = covered
        imported.append(
            f"{state_file.name} (up to event {covered}, {len(snapshot['outbox'])} undispatched)"
        )
    if journal_file.exists():
        records = read_json_lines(journal_file)
        events = [rec for rec in records if "seq" in rec and int(rec["seq"]) > covered]
        done = max((int(rec["done"]) for rec in records if "done" in rec), default=0)
        for record in events:
            seq = int(record["seq"])
            if seq > done:
                # The older hub journalled an event before handing it on: not handed on yet.
                # This journal holds only what was (actions go out first), so it waits in
                # the outbox.
                snapshot["outbox"].append([seq, record["event"]])
            else:
                changes.put(EVENTS, seq_key(seq), record["event"])
        if done:
            changes.put(STATE, DISPATCHED, {"seq": done})
        imported.append(
            f"{journal_file.name} ({len(events)} events after the state, dispatched up to {done})"
        )
    if state_file.exists() or snapshot["outbox"]:
        changes.put(STATE, SNAPSHOT, snapshot)
    adopt(store, changes, found)
    log.info(
        "rules: imported %s into %s; the files are renamed *.imported",
        " and ".join(imported),
        store.location,
    )


class RuleService:
    """Owns the engine, its state in the store, its outbox, and the acknowledgements it gates."""

    def __init__(
        self,
        rules: RuleSet,
        inventory: Inventory,
        *,
        store: Store,
        legacy_dir: Path | None = None,
        publisher: Publisher,
        sink: Sink,
        dispatcher: ActionDispatcher,
        ack: Callable[[object], None],
        prefix: str = "hub",
        rule_paths: Sequence[Path] = (),
        commands: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], int] = time.time_ns,
        commit_limit: tuple[int, int] | None = None,
    ) -> None:
        """`commit_limit`: the operations and bytes one commit of the store takes at most
        (a networked store's transaction); a bigger save is split (see hub.rules.keyed)."""
        self.inventory = inventory
        self.store = store
        self.publisher = publisher
        self.sink = sink
        self.dispatcher = dispatcher
        self.prefix = prefix.rstrip("/")
        self.rule_paths = tuple(rule_paths)
        # What each actuator kind takes (hub.yaml's actuators.commands): reloads are held to it.
        self.commands = commands
        self.clock = clock
        self._ack = ack
        # Events not yet dispatched, each with its sequence number.
        self._outbox: list[tuple[int, dict[str, Any]]] = []
        self._seq = 0  # the last sequence number given to an event
        self._on_disk = 0  # events up to this number are in the journal or the snapshot
        self._state_seq = 0  # events up to this number are reflected in the durable snapshot
        self._needs_state = 0  # the last event the broker will not bring about again
        # The saved snapshot lacks what `engine.dirty` does not show: the outbox changed,
        # or the last save failed after the snapshot marked the engine clean.
        self._stale = False
        self._save_failing = False  # the periodic save failed last time (logged once)
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
        if legacy_dir is not None:
            import_legacy(store, legacy_dir)
        saved = store.load(STATE)
        self._keyed = KeyedState(saved, location=store.location, limit=commit_limit)
        snapshot = self._keyed.state
        self.engine = Engine(rules, inventory, snapshot["engine"] if snapshot else None)
        self._rules = rules
        # False on a first start, or when the store was damaged and made anew: then the
        # incidents the broker still holds retained can be taken back (`adopt_incidents`).
        # A journal without a snapshot is a hub killed before its first save (or an active
        # hub of a pair killed before its save was replicated): the broker delivers again
        # the readings behind the journal's events, which open the same incidents, with the
        # same ids; taking them back from their retained messages would open them twice.
        self.has_state = snapshot is not None
        self._restore(snapshot, saved.get(DISPATCHED))
        self.has_state = self.has_state or self._seq > 0
        self._republish = True
        self._publishing: set[asyncio.Future[None]] = set()  # incident states on their way
        metrics.RULES_LOADED.set(len(rules))
        metrics.RULES_VALID.set(1)
        self._update_gauges()
        metrics.INCIDENTS_OPEN.set(self.engine.open_count())

    # -- state ----------------------------------------------------------------------------------

    def _restore(self, snapshot: dict[str, Any] | None, dispatched: dict[str, Any] | None) -> None:
        """The outbox: the snapshot's, then the journal's later events, less those dispatched."""
        covered = int(snapshot["seq"]) if snapshot else 0
        done = int(dispatched["seq"]) if dispatched else 0
        if snapshot:
            self._outbox = [(int(seq), event) for seq, event in snapshot["outbox"]]
        journalled = 0
        last = 0
        for key, event in self.store.load(EVENTS).items():
            seq = last = int(key)
            if seq <= covered:
                continue  # in the snapshot: brought back by a `hub store restore` of a copy
            journalled += 1
            if event["event"] == ActionRequested.name:
                # Handed on before it was journalled: the engine, asking again for it once
                # the broker delivers its reading again, is not heard.
                self._replayed.add(event["action_id"])
            else:
                self._outbox.append((seq, event))
        self._outbox = [(seq, event) for seq, event in self._outbox if seq > done]
        self._seq = self._on_disk = self._state_seq = self._needs_state = max(
            [covered, done, last, *(seq for seq, _ in self._outbox)]
        )
        if self._outbox:
            self._idle.clear()
        if snapshot or journalled:
            log.info(
                "rules: restored state from %s (%d incidents, %d events to dispatch, %d "
                "journalled after the snapshot)",
                self.store.location,
                len(self.engine.incidents()),
                len(self._outbox),
                journalled,
            )

    def adopt_incidents(self, payloads: list[dict[str, Any]]) -> int:
        """Start from incidents taken back from their retained messages, when the store held
        no state of the rules; before any reading. Returns how many were taken back."""
        if self.has_state or not payloads:
            return 0
        snapshot = snapshot_from_incidents(payloads, self.clock())
        self.engine = Engine(self._rules, self.inventory, snapshot)
        self.has_state = True
        self._stale = True  # the next periodic save makes them durable
        metrics.INCIDENTS_OPEN.set(self.engine.open_count())
        return len(self.engine.incidents())

    async def persist(self) -> None:
        """Save the engine's state and the outbox durably, then acknowledge what it covers.

        The changed keys of the state go in one commit (several when a networked store's
        transaction cannot take them, the last one making them count), which also deletes
        the journal's events they cover. If any step fails, the held readings stay held for
        the next save.
        """
        async with self._write_lock:
            held, self._held = self._held, []
            seq = self._seq
            try:
                start = time.perf_counter()
                commits = self._keyed.save(
                    self.engine.snapshot(encoded=True),
                    self._outbox,
                    seq,
                    Changes().delete_range(EVENTS, "", seq_key(seq)),
                )
                self._stale = False
                try:
                    for changes in commits:
                        self.store.commit(changes)
                except BaseException:
                    self._keyed.abandoned()
                    raise
                self._keyed.saved()
                self._on_disk = max(self._on_disk, seq)
                await self.store.sync()
                metrics.STATE_PERSIST.observe(time.perf_counter() - start)
                self._state_seq = seq
                # Counting open incidents walks them all (0.1 ms for 1,500): done here, after
                # every change of the engine's state, rather than at each event on a
                # barrier's way out.
                metrics.INCIDENTS_OPEN.set(self.engine.open_count())
                for barrier in self.before_ack:
                    await barrier()
            except BaseException:
                self._held[:0] = held
                self._stale = True
                raise
        for token in held:
            self._ack(token)

    async def persist_if_needed(self) -> None:
        """The periodic job: save only when something changed or acknowledgements wait."""
        if not (self.engine.dirty or self._held or self._stale):
            return
        try:
            await self.persist()
        except asyncio.CancelledError:
            # Shutdown cancels the clock's jobs; the drain saves the state once more, so a
            # cancelled periodic save is not an error worth a traceback in the log.
            return
        except (StoreError, OSError) as exc:
            # Five tries a second: one line when saving stops working, one when it works again.
            if not self._save_failing:
                log.error(  # noqa: TRY400 - the store's message names the cause
                    "rules: state not saved, %d readings wait for their acknowledgement: %s",
                    len(self._held),
                    exc,
                )
            self._save_failing = True
            return
        if self._save_failing:
            self._save_failing = False
            log.info("rules: state saved again")

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

    def on_camera_event(self, camera_id: str, ts_ns: int, event: Mapping[str, Any]) -> None:
        """A camera event (docs/streams.md): camera_event conditions and incidents' evidence."""
        self._emit(self.engine.on_camera_event(camera_id, ts_ns, event), replayed=False)

    def acknowledge(self, incident_id: str, by: str) -> None:
        """An operator acknowledges an incident (raises IncidentNotFoundError)."""
        self._emit(self.engine.acknowledge(incident_id, by, self.clock()), replayed=False)

    def archive(self, incident_id: str) -> None:
        """An operator archives a cleared incident: the engine's transition, whose event is
        dispatched as the clock's archiving is (raises IncidentNotFoundError, or
        IncidentStateError when the incident has not cleared)."""
        self._emit(self.engine.archive(incident_id, self.clock()), replayed=False)

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
        self._stale = True
        self._idle.clear()
        self._dispatch_ready.set()
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.OUTBOX.set(len(self._outbox))

    # -- output -------------------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Commit events to the store, then hand each on; note once they are handed on."""
        failures = 0
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
            durable_first = self._needs_state > self._state_seq
            if not durable_first:
                # A barrier command goes before the journal's commit: each executor commits
                # its own record (a command job, a note) before it acts and ignores an action
                # id it holds already, so an action handed on and then lost to a crash with
                # the journal is not acted on twice. One commit on a barrier's way, not two.
                await self._dispatch_actions(batch)
            try:
                if durable_first:
                    # Nothing leaves the process before the store holds it durably.
                    await self.persist()
                else:
                    self._journal(batch)  # the actions too: the engine is not asked again
            except (StoreError, OSError) as exc:
                failures += 1
                delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
                log.error(  # noqa: TRY400 - the store's message names the cause
                    "rules: %d events wait, not handed on before the store holds them: %s; "
                    "trying again in %.1fs",
                    len(self._outbox),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            await self._dispatch_actions(batch)  # after a durable save: none went yet
            # The batch's other events lead the outbox now; newer ones were added behind.
            rest = [event for _, event in batch if event["event"] != ActionRequested.name]
            for event in rest:
                await self._dispatch_one(event)
            del self._outbox[: len(rest)]
            self._stale = True  # the periodic save records the removal...
            self._update_gauges()
            # ...and this note keeps a SIGKILL before that save from sending them again.
            try:
                self.store.commit(Changes().put(STATE, DISPATCHED, {"seq": batch[-1][0]}))
            except StoreError as exc:
                log.warning(
                    "rules: could not note events up to %d as dispatched (%s); a crash before "
                    "the next state save sends them again",
                    batch[-1][0],
                    exc,
                )

    async def _dispatch_actions(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        """Hand on the batch's actions that are still in the outbox, and take them out."""
        waiting = {seq for seq, _ in self._outbox}
        actions = [
            (seq, e) for seq, e in batch if e["event"] == ActionRequested.name and seq in waiting
        ]
        if not actions:
            return
        for _, event in actions:
            await self._dispatch_one(event)
        sent = {seq for seq, _ in actions}
        self._outbox = [(seq, e) for seq, e in self._outbox if seq not in sent]
        self._stale = True
        self._update_gauges()

    async def _dispatch_one(self, event: dict[str, Any]) -> None:
        try:
            await self._dispatch(event)
        except Exception:
            # One event that cannot go out must not hold up the ones behind it; the
            # incidents' retained state is published again at the next start.
            log.exception("rules: could not dispatch %s", event.get("event"))

    def _journal(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        """Commit the batch's events that neither the journal nor the snapshot holds yet.

        On the event loop and unsynced: this is the way from a reading to a barrier command.
        """
        fresh = [(seq, event) for seq, event in batch if seq > self._on_disk]
        if not fresh:
            return
        start = time.perf_counter()
        changes = Changes()
        for seq, event in fresh:
            changes.put(EVENTS, seq_key(seq), event)
        self.store.commit(changes)
        metrics.JOURNAL_APPEND.observe(time.perf_counter() - start)
        self._on_disk = fresh[-1][0]

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
        """Hand the incident's state to the MQTT client, without waiting for the broker.

        The client holds the message (in order, resent after a reconnect) until the broker
        takes it: a broker that is down or slow must not hold up the notifications, the
        history and the events behind this one. The retained state is published again after
        a start and after a reconnect (`republish`), so a message lost with the client's
        memory is made good."""
        topic = f"{self.prefix}/incidents/{incident['region']}/{incident['id']}"
        payload = (
            b""
            if incident["state"] == "archived"  # clears the retained message
            else orjson.dumps(incident_payload(incident))
        )
        task = asyncio.ensure_future(self.publisher.publish(topic, payload, qos=1, retain=True))
        self._publishing.add(task)
        task.add_done_callback(partial(self._published, topic))

    def _published(self, topic: str, task: asyncio.Future[None]) -> None:
        self._publishing.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.warning("rules: incident state on %s not published: %s", topic, exc)

    def republish(self) -> None:
        """Publish every incident's retained state again (the broker may have lost it)."""
        self._republish = True
        self._dispatch_ready.set()

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
        try:
            await self.persist()
        except (StoreError, OSError) as exc:
            log.error(  # noqa: TRY400 - the store's message names the cause
                "rules: state not saved at shutdown (%s); the broker delivers again the "
                "readings it does not reflect",
                exc,
            )

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
        rules, problems = await asyncio.to_thread(
            check_rules, self.rule_paths, self.inventory, self.commands
        )
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
