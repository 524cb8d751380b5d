"""The notifier: turns incident changes and notify actions into notes, and delivers them.

Notify actions (through the dispatcher) name the channels told of an incident; those
channels are then told of its acknowledgement and its clearing (through the rule service's
listener). Each change reaches each channel once: notes are keyed by incident, state and
channel in the outbox, which the store keeps. One loop per channel delivers, grouping what
comes due together, within the channel's rate limit, retrying with backoff until
`give_up_after`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import Counter, Gauge

from hub.audit import AuditLog
from hub.inventory import Inventory
from hub.metrics import REGISTRY
from hub.mqtt import Message
from hub.notify import cap as capxml
from hub.notify.channels import (
    Backend,
    CapBackend,
    DeliveryError,
    EmailBackend,
    MqttBackend,
    Publisher,
    WebhookBackend,
    delivery_id,
)
from hub.notify.config import (
    SEVERITIES,
    CapChannel,
    EmailChannel,
    MqttChannel,
    NotifyConfig,
    WebhookChannel,
)
from hub.notify.outbox import GIVEN_UP, PENDING, SENT, Note, Outbox, note_key, replaces
from hub.notify.text import fill, summary
from hub.notify.web import CapAuthorize, CapRoutes
from hub.rules.events import ActionRequested
from hub.scheduler import Job
from hub.store import Store
from hub.supervise import supervised

log = logging.getLogger("hub.notify")

NOTIFICATIONS = Counter(
    "hub_notifications_total",
    "Notification deliveries by channel and outcome (sent, failed attempt, given_up)",
    ["channel", "status"],
    registry=REGISTRY,
)
GATE_RETRY = 0.5  # seconds between looks at the gate while it is closed
PENDING_NOTES = Gauge("hub_notifications_pending", "Notes waiting for delivery", registry=REGISTRY)


def _state_of(step: str) -> str:
    """The incident change a notify action reports: its step, with open and retrigger as one
    (a flapping sensor must not page twice)."""
    if step in ("open", "retrigger"):
        return "active"
    return "cleared" if step == "clear" else step


class ActionStatus(Protocol):
    """Where the status of a rule's notify action is recorded (the rules' incident)."""

    def update_action(self, action_id: str, status: str, detail: str | None = None) -> None: ...


class Notifier:
    """The `notify` component and the executor of notify actions."""

    name = "notify"
    topic_prefix: str | None = None
    subscriptions: Sequence[tuple[str, int]] = ()

    def __init__(
        self,
        config: NotifyConfig,
        *,
        store: Store,
        legacy_dir: Path | None = None,
        audit: AuditLog,
        publisher: Publisher,
        inventory: Inventory | None = None,
        prefix: str = "hub",
        authorize: CapAuthorize | None = None,
        env: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.time,
        actions: ActionStatus | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        # Asked before each delivery: a hub of a pair delivers only while it is the active one.
        self.gate = gate
        # Where a notify action's status goes once its messages are delivered or given up.
        self.actions = actions
        self._action_notes: dict[str, set[str]] = collections.defaultdict(set)
        self.audit = audit
        self.inventory = inventory
        self.clock = clock
        self.store = store
        legacy = legacy_dir / "notify-outbox.jsonl" if legacy_dir is not None else None
        self.outbox = Outbox(store, keep=config.keep, clock=clock, legacy_path=legacy)
        for note in self.outbox.notes.values():  # actions whose messages are on their way
            if note.action_id is not None and note.status == PENDING:
                self._action_notes[note.action_id].add(note.key)
        self.given_up = 0
        self._incidents: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._wake = {name: asyncio.Event() for name in config.channels}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        self.backends: dict[str, Backend] = {}
        http = _LazySession()
        self._http = http
        for name, cfg in config.channels.items():
            # A channel that cannot load (a secret not set) stops the start: a hub that
            # cannot page is not one to run silently.
            if isinstance(cfg, WebhookChannel):
                self.backends[name] = WebhookBackend(name, cfg, http, env)
            elif isinstance(cfg, MqttChannel):
                self.backends[name] = MqttBackend(name, cfg, publisher, prefix)
            elif isinstance(cfg, EmailChannel):
                self.backends[name] = EmailBackend(name, cfg, env)
            elif isinstance(cfg, CapChannel):
                self.backends[name] = CapBackend(name, cfg, http, env)
        self.cap_routes = CapRoutes(self.outbox, config, authorize)
        self._update_gauge()

    # -- the component ------------------------------------------------------------------------

    def on_messages(self, messages: list[Message]) -> None:
        """No topics of its own."""

    def jobs(self) -> list[Job]:
        """No scheduled jobs: delivery loops wait on their own deadlines."""
        return []

    def add_routes(self, app: web.Application) -> None:
        """GET /cap/feed.atom and /cap/{incident_id}.xml."""
        self.cap_routes.add_to(app)

    async def run(self) -> None:
        """Deliver until closed: one loop per channel, and one that syncs the outbox."""
        try:
            async with asyncio.TaskGroup() as tg:
                # Each channel's loop is supervised: one that fails starts again, and the
                # others go on delivering meanwhile.
                self._tasks = [
                    tg.create_task(
                        supervised(f"notify-{name}", partial(self._deliver_forever, name)),
                        name=f"notify-{name}",
                    )
                    for name in self.backends
                ]
                self._tasks.append(
                    tg.create_task(
                        supervised("notify-sync", self._sync_forever), name="notify-sync"
                    )
                )
        finally:
            self._done.set()

    async def close(self, grace: float = 15.0) -> None:
        """Let deliveries in flight finish (up to `grace` s), then sync what they changed."""
        self._stopping = True
        for wake in self._wake.values():
            wake.set()
        self._dirty.set()
        if self._tasks:
            try:
                async with asyncio.timeout(grace):
                    await self._done.wait()
            except TimeoutError:
                # What was not delivered stays pending on disk and goes after the restart.
                for task in self._tasks:
                    task.cancel()
                await self._done.wait()
        await self.store.sync()
        await self._http.close()

    # -- input --------------------------------------------------------------------------------

    async def execute(self, action: ActionRequested) -> None:
        """A notify action: accept a note per channel; returns once they are committed."""
        state = _state_of(action.step)
        channels = [str(c) for c in action.params.get("channels", ())]
        log.info(
            "action %s: notify %s of incident %s (%s)",
            action.action_id,
            ", ".join(channels),
            action.incident_id,
            action.step,
        )
        incident = dict(self._incidents.get(action.incident_id) or {})
        incident.update(
            id=action.incident_id,
            rule=action.rule,
            subject=action.subject,
            region=action.region,
            site=action.site,
            severity=action.severity,
        )
        incident.setdefault("title", str(action.params.get("title") or action.rule))
        incident.setdefault("state", "cleared" if state == "cleared" else "active")
        event = "cleared" if state == "cleared" else "alert"
        default = f"{incident['title']} ({incident['severity']}, {incident['state']})"
        message = str(action.params.get("message") or default)
        for channel in channels:
            self._accept(
                channel,
                incident,
                state=state,
                event=event,
                message=message,
                origin="action",
                action_id=action.action_id,
            )
        self._settle_action(action.action_id)
        # No sync on the way to the next action (a barrier's command, maybe): the store keeps
        # commits in order, so the rules' note that this action was handed over, committed
        # after these notes, cannot outlive them through a power loss.

    def on_incident(self, event: dict[str, Any]) -> None:
        """The rule service's listener: tell the incident's channels of its changes."""
        name = event["event"]
        incident = summary(event["incident"])
        iid = str(incident["id"])
        if name == "archived":
            self._incidents.pop(iid, None)
            self.outbox.archive(iid)
            self._dirty.set()
            return
        self._incidents[iid] = incident
        default = f"{incident['title']} ({incident['severity']}, {incident['state']})"
        if name == "opened":
            for channel in self.config.broadcast:
                self._accept(
                    channel,
                    incident,
                    state="active",
                    event="alert",
                    message=default,
                    origin="event",
                )
        elif name in ("acknowledged", "cleared"):
            for channel in self._subscribers(iid):
                self._accept(
                    channel, incident, state=name, event=name, message=default, origin="event"
                )

    def _subscribers(self, incident_id: str) -> list[str]:
        return list(dict.fromkeys(n.channel for n in self.outbox.of_incident(incident_id)))

    def _accept(
        self,
        channel: str,
        incident: dict[str, Any],
        *,
        state: str,
        event: str,
        message: str,
        origin: str,
        action_id: str | None = None,
    ) -> None:
        cfg = self.config.channels.get(channel)
        iid = str(incident["id"])
        if cfg is None:
            # `hub check` reports these; at run time the rest of the channels still go.
            log.error("notify: incident %s names channel %r, which is not configured", iid, channel)
            self._audit(
                "failed",
                channel=channel,
                incident_id=iid,
                incident=incident,
                detail=f"no channel {channel!r} configured",
            )
            return
        severity = str(incident.get("severity"))
        below = SEVERITIES.index(severity) < SEVERITIES.index(cfg.min_severity)
        if event == "alert" and severity in SEVERITIES and below:
            return
        key = note_key(iid, state, channel)
        old = self.outbox.notes.get(key)
        probe = Note(key, channel, iid, state, event, "", incident, 0.0, origin=origin)
        if old is not None and not replaces(old, probe):
            if action_id is not None:  # the action's status follows the note that tells it
                self._action_notes[action_id].add(key)
            return  # told already: never a second page for one change
        templates = cfg.templates or self.config.templates
        text = fill(
            getattr(templates, event), incident, event=event, channel=channel, message=message
        )
        note = Note(
            key,
            channel,
            iid,
            state,
            event,
            text,
            incident,
            self.clock(),
            origin=origin,
            action_id=action_id,
        )
        if action_id is not None:
            self._action_notes[action_id].add(key)
        if isinstance(cfg, CapChannel):
            note.cap = self.cap_routes.cap_fields(note, cfg, old, self._area(incident))
        self.outbox.accept(note)
        self._wake[channel].set()
        self._dirty.set()
        self._update_gauge()

    def _area(self, incident: dict[str, Any]) -> capxml.CapArea:
        inv = self.inventory
        region = inv.regions.get(str(incident.get("region"))) if inv else None
        site = inv.sites.get(str(incident.get("site"))) if inv and incident.get("site") else None
        names = [x for x in (getattr(site, "name", None) or incident.get("site"),
                             region.name if region else incident.get("region")) if x]  # fmt: skip
        rings = tuple(p[0] for p in region.polygons if p) if region else ()
        return capxml.CapArea(", ".join(str(n) for n in names), rings)

    # -- delivery -----------------------------------------------------------------------------

    async def _deliver_forever(self, name: str) -> None:
        backend, wake = self.backends[name], self._wake[name]
        cfg = self.config.channels[name]
        limit = cfg.rate_limit or self.config.rate_limit
        window = self.config.group_window
        recent: collections.deque[float] = collections.deque()
        failures, retry_at = 0, 0.0
        while not self._stopping:
            wake.clear()
            now = self.clock()
            pending = [n for n in self.outbox.pending(name) if not self._expired(n, now)]
            if not pending:
                await _wait(wake, None)
                continue
            while recent and recent[0] <= now - limit.per:
                recent.popleft()
            at = max(pending[0].created + window, retry_at)
            if len(recent) >= limit.count:
                at = max(at, recent[0] + limit.per)  # the rest wait, and go grouped
            if at > now:
                await _wait(wake, at - now)
                continue
            if self.gate is not None and not self.gate():
                # Not the active hub of a pair (any more): the active one delivers these.
                await _wait(wake, GATE_RETRY)
                continue
            # A delivery begun before (a crash or a failure since) goes again as it was, with
            # the same id; else the oldest note waited its window, and whatever came since
            # goes along with it.
            batch = self.outbox.held(pending)
            if not batch:
                batch = pending[: self.config.max_group if backend.grouped else 1]
                self.outbox.hold(batch, delivery_id(batch))
            try:
                await backend.send(batch)
            except DeliveryError as exc:
                failures += 1
                self._failed(name, batch, str(exc), permanent=exc.permanent)
                delay = min(self.config.retry_max, self.config.retry_min * 2 ** (failures - 1))
                retry_at = self.clock() + delay / 2 + random.uniform(0, delay / 2)
                continue
            except Exception as exc:
                # A bug in a backend must not stop this channel for good: retried like an outage.
                log.exception("notify: channel %s failed unexpectedly", name)
                failures += 1
                self._failed(name, batch, repr(exc), permanent=False)
                retry_at = self.clock() + self.config.retry_max
                continue
            failures, retry_at = 0, 0.0
            recent.append(self.clock())
            for note in batch:
                self.outbox.finish(note, SENT)
                self._audit(
                    "sent",
                    channel=name,
                    incident_id=note.incident_id,
                    incident=note.incident,
                    detail=note.text,
                    note=note,
                )
                self._settle_action(note.action_id)
            self._dirty.set()
            self._update_gauge()

    def _settle_action(self, action_id: str | None) -> None:
        """Once every message a notify action asked for is delivered or given up, its status
        in the incident says so: done, or failed with the channels that failed and why."""
        if action_id is None or self.actions is None:
            return
        notes = [self.outbox.notes.get(k) for k in self._action_notes.get(action_id, ())]
        if any(n is not None and n.status == PENDING for n in notes):
            return
        self._action_notes.pop(action_id, None)
        known = [n for n in notes if n is not None]
        failed = [n for n in known if n.status == GIVEN_UP]
        if failed:
            detail = "; ".join(f"{n.channel}: {n.error}" for n in failed)
            status = "failed"
        elif known:
            detail = "delivered to " + ", ".join(sorted({n.channel for n in known}))
            status = "done"
        else:
            detail = "nothing to send: no configured channel takes this severity"
            status = "done"
        try:
            self.actions.update_action(action_id, status, detail)
        except Exception:  # the incident's record must not cost the delivery loop
            log.exception("notify: could not record the status of action %s", action_id)

    def _expired(self, note: Note, now: float) -> bool:
        """Give up a note pending longer than `give_up_after`: counted and audited."""
        if now - note.created <= self.config.give_up_after:
            return False
        error = f"not delivered within {self.config.give_up_after:.0f}s"
        self._give_up(note, note.error or error)
        return True

    def _give_up(self, note: Note, error: str) -> None:
        self.outbox.finish(note, GIVEN_UP, error)
        self._settle_action(note.action_id)
        self.given_up += 1
        log.error("notify: gave up %s to %s: %s", note.key, note.channel, error)
        self._audit(
            "given_up",
            channel=note.channel,
            incident_id=note.incident_id,
            incident=note.incident,
            detail=error,
            note=note,
        )
        self._dirty.set()
        self._update_gauge()

    def _failed(self, name: str, batch: list[Note], error: str, *, permanent: bool) -> None:
        log.warning("notify: delivery to %s failed (%d notes): %s", name, len(batch), error)
        for note in batch:
            note.error = error  # in memory only: the reason a later give-up reports
            self._audit(
                "failed",
                channel=name,
                incident_id=note.incident_id,
                incident=note.incident,
                detail=error,
                note=note,
            )
            if permanent:
                self._give_up(note, error)

    def _audit(
        self,
        status: str,
        *,
        channel: str,
        incident_id: str,
        incident: Mapping[str, Any],
        detail: str,
        note: Note | None = None,
    ) -> None:
        NOTIFICATIONS.labels(channel, status).inc()
        self.audit.record(
            "notification",
            str(incident.get("rule") or "hub"),
            f"{status} to {channel}: {detail}",
            status=status,
            channel=channel,
            incident_id=incident_id,
            key=note.key if note else None,
        )

    async def _sync_forever(self) -> None:
        """Sync the store soon after each change (each is committed at once)."""
        while not self._stopping:
            await self._dirty.wait()
            self._dirty.clear()
            await self.store.sync()
            self.outbox.prune_if_due()

    def _update_gauge(self) -> None:
        PENDING_NOTES.set(sum(1 for n in self.outbox.notes.values() if n.status == PENDING))


async def _wait(event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109
    """Until `event` is set or `timeout` seconds passed."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


class _LazySession:
    """One aiohttp session for webhook and CAP posts, opened on first use in the loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def post(self, url: str, **kwargs: Any) -> Any:
        """`ClientSession.post` of the shared session."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session.post(url, **kwargs)

    async def close(self) -> None:
        """Close the session, if one was opened."""
        if self._session is not None:
            await self._session.close()
