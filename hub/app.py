"""Composition root: wires MQTT, ingest, storage and HTTP into one asyncio service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web

from hub.actions import ActionDispatcher
from hub.actuators.report import Reporter
from hub.actuators.service import ActuatorService
from hub.api import HealthReport, build_app, serve_http
from hub.api.check import check_tokens
from hub.api.routes import add_room_routes
from hub.audit import AuditEntry, AuditLog
from hub.cameras.local import LocalCameras, for_inventory
from hub.cameras.snapshot import SnapshotService
from hub.config import ConfigError, HubConfig
from hub.config.load import defaults_notice
from hub.detection.camera_events import CameraEvents
from hub.detection.service import DetectionService
from hub.detection.worker import default_faces_model
from hub.ha.pair import run_pair
from hub.ingest.service import Ingest
from hub.ingest.validate import Validator
from hub.inventory import Inventory, load_inventory
from hub.listen import ListenError, check_listen, listen_error
from hub.live.service import LiveService
from hub.metrics import INGEST_PAUSED
from hub.mqtt import Message, MqttClient, MqttError
from hub.notify.channels import SecretMissingError
from hub.notify.service import Notifier
from hub.notify.web import cap_access
from hub.plates.watchlist import Watchlist
from hub.rules.check import check_rules
from hub.rules.events import IncidentNotFoundError
from hub.rules.model import RuleSet
from hub.rules.rederive import fetch_retained_incidents
from hub.rules.service import RuleService
from hub.scheduler import Job, rule_jobs, start_scheduler
from hub.services import (
    ChildProcess,
    LocalInflux,
    LocalMosquitto,
    LocalService,
    ServiceError,
    port_open,
    start_workers,
)
from hub.startup import log_to_stderr, not_starting, read_config
from hub.storage import InfluxClient, Spool, StorageWriter
from hub.store import Store, StoreError
from hub.store.etcd import open_etcd_store
from hub.store.recover import open_store
from hub.supervise import supervised
from hub.tls import TlsSetupError, mqtt_ssl_context

log = logging.getLogger("hub")
# Messages handled in one go before the event loop gets a turn (about 1 ms of work).
ROUTE_SLICE = 128


class Component(Protocol):
    """A part of the hub with work of its own (actuators, notifications, detection).

    Components are added in `Hub.__init__`. Messages on topics that start with
    `topic_prefix` are routed to `on_messages`; the component acknowledges them (QoS 1) with
    `hub.mqtt.ack` once it has made them durable.
    """

    name: str
    topic_prefix: str | None
    subscriptions: Sequence[tuple[str, int]]

    def on_messages(self, messages: list[Message]) -> None: ...
    def jobs(self) -> list[Job]: ...
    def add_routes(self, app: web.Application) -> None: ...
    async def run(self) -> None: ...
    async def close(self) -> None: ...


class Hub:
    """The running hub: one object that owns every part and every background task."""

    def __init__(
        self,
        config: HubConfig,
        inventory: Inventory,
        rules: RuleSet,
        *,
        store: Store | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        """`store`: one opened by the caller, who runs and closes it (the active hub of a pair,
        hub.ha.pair); `gate`: asked before anything goes out (commands, incidents,
        notifications): the pair's leadership, whose loss stops them at once."""
        self.config = config
        self.inventory = inventory
        mqtt, influx, ingest = config.mqtt, config.influx, config.ingest
        data_dir = Path(config.data_dir)
        self._owns_store = store is None
        self.gate = gate
        # Every state the hub must not lose or repeat (rules, commands, notifications, audit).
        self.store: Store
        if store is not None:
            self.store = store
        elif config.store.backend == "etcd":
            self.store = open_etcd_store(config.store)
        else:
            self.store = open_store(data_dir / "hub.db")
        self.influx = InfluxClient(
            influx.url,
            influx.database,
            username=influx.username,
            password=influx.password,
            timeout=influx.timeout,
        )
        spool_dir = Path(influx.spool_dir) if influx.spool_dir else Path(config.data_dir) / "spool"
        self.spool = Spool(spool_dir, max_bytes=int(influx.spool_max_mb * 1024 * 1024))
        self.writer = StorageWriter(
            self.influx,
            self.spool,
            batch_size=influx.batch_size,
            flush_interval=influx.flush_interval,
            buffer_points=influx.buffer_points,
            on_durable=self._on_durable,
        )
        self.tls = mqtt_ssl_context(mqtt)  # None for mqtt://
        self.mqtt = MqttClient(
            mqtt.url,
            client_id=mqtt.client_id,
            username=mqtt.username,
            password=mqtt.password,
            ssl_context=self.tls,
            gate=gate,
            clean_start=False,
            session_expiry=int(mqtt.session_expiry),
            keepalive=mqtt.keepalive,
            backoff_min=mqtt.reconnect_min,
            backoff_max=mqtt.reconnect_max,
            auto_ack=False,
            subscriptions=Ingest.subscriptions_for(mqtt.prefix),
        )
        self.ingest = Ingest(
            Validator(
                inventory,
                max_payload_bytes=ingest.max_payload_bytes,
                max_future_s=ingest.max_future,
                max_age_s=ingest.max_age,
                max_gateway_readings=ingest.max_gateway_readings,
            ),
            self.writer,
            self.mqtt,
            prefix=mqtt.prefix,
            deadletter_queue=ingest.deadletter_queue,
        )
        self._routes: list[tuple[str, Callable[[list[Message]], None]]] = []
        self._ingest_topics = Ingest.topics_for(mqtt.prefix)
        self.mqtt.on_messages = self._route
        self.mqtt.on_connected = self._on_connected
        self.dispatcher = ActionDispatcher()
        self.rules = RuleService(
            rules,
            inventory,
            store=self.store,
            legacy_dir=data_dir,
            publisher=self.mqtt,
            sink=self.writer,
            dispatcher=self.dispatcher,
            ack=self._ack,
            prefix=mqtt.prefix,
            rule_paths=config.rules,
            commands=config.actuators.commands,
            commit_limit=(
                (config.store.max_txn_ops, config.store.max_request_bytes)
                if config.store.backend == "etcd"
                else None
            ),
        )
        self.ingest.listeners.append(self.rules.on_readings)
        self.ingest.on_full = self._on_full
        self._paused = asyncio.Event()
        self.audit = AuditLog(self.writer, self.store)
        self.http = build_app(self.health, config.api.public)
        self.room = add_room_routes(self)  # the situation room: API, live stream, page
        self.ready = asyncio.Event()
        self.components: list[Component] = []
        # Components are added here, in the order they start (and the reverse of their stop).
        self.actuators = ActuatorService(
            config.actuators,
            inventory,
            rules=self.rules,
            mqtt=self.mqtt,
            reporter=Reporter(config.actuators, self.rules, self.audit, self.writer),
            store=self.store,
            legacy_dir=data_dir,
            prefix=mqtt.prefix,
            tokens=config.api.tokens,
        )
        self.dispatcher.register("actuate", self.actuators)
        self.components.append(self.actuators)
        self.notifier = Notifier(
            config.notify,
            store=self.store,
            legacy_dir=data_dir,
            audit=self.audit,
            publisher=self.mqtt,
            inventory=inventory,
            prefix=mqtt.prefix,
            authorize=cap_access(config.api),
            actions=self.rules,
            gate=gate,
        )
        self.dispatcher.register("notify", self.notifier)
        self.rules.listeners.append(self.notifier.on_incident)
        self.components.append(self.notifier)
        self._add_video(config, inventory)
        for component in self.components:
            self._add(component)

    def _add_video(self, config: HubConfig, inventory: Inventory) -> None:
        """The cameras' components: detection jobs, the stream workers' events, live view and
        on-demand snapshots."""
        self.detection = DetectionService(
            config.detection,
            inventory,
            rules=self.rules,
            mqtt=self.mqtt,
            sink=self.writer,
            audit=self.audit,
            data_dir=Path(config.data_dir),
            prefix=config.mqtt.prefix,
            tokens=config.api.tokens,
        )
        self.dispatcher.register("detect", self.detection)
        self.components.append(self.detection)
        self.watchlist = Watchlist(
            config.plates,
            store=self.store,
            audit=self.audit,
            publisher=self.mqtt,
            prefix=config.mqtt.prefix,
            tokens=config.api.tokens,
        )
        self.components.append(self.watchlist)
        self.camera_events = CameraEvents(
            inventory,
            rules=self.rules,
            ack=self.mqtt.ack,
            sink=self.writer,
            prefix=config.mqtt.prefix,
            max_future_s=config.ingest.max_future,
            max_age_s=config.ingest.max_age,
            tokens=config.api.tokens,
            evidence_dir=self.detection.evidence_dir,
            plate_listed=self.watchlist.listed,
        )
        self.camera_events.listeners.append(self.room.on_camera_event)
        # Region tokens see the snapshots of their regions' camera events.
        self.detection.snapshot_holders.append(self.camera_events.snapshot_regions)
        self.components.append(self.camera_events)
        self.live = LiveService(
            config.live,
            inventory,
            config.detection,
            incidents=self._incident_place,
            audit=self.audit,
            api_host=config.api.host,
        )
        self.rules.listeners.append(self.live.on_incident)
        self.components.append(self.live)
        self.snapshots = SnapshotService(
            config.detection,
            inventory,
            audit=self.audit,
            faces_model=default_faces_model(config),
            tokens=config.api.tokens,
        )
        self.components.append(self.snapshots)

    def _add(self, component: Component) -> None:
        for topic_filter, qos in component.subscriptions:
            self.mqtt.add_subscription(topic_filter, qos)
        if component.topic_prefix:
            self._routes.append((component.topic_prefix, component.on_messages))
        component.add_routes(self.http)

    def _route(self, messages: list[Message]) -> None:
        """Take a batch off the socket in slices, the event loop free between them.

        After a stall the socket holds thousands of messages; a barrier command asked for by
        one of the first must not wait until the last is validated and encoded. The rest of
        the batch is queued after what the first slice woke (the rules' dispatch) and ahead of
        anything read later, so the order of messages is kept.
        """
        self._route_from(messages, 0)

    def _route_from(self, messages: list[Message], start: int) -> None:
        end = start + ROUTE_SLICE
        if start == 0 and len(messages) <= end:
            self._route_now(messages)  # the usual batch: no copy
            return
        try:
            self._route_now(messages[start:end])
        finally:
            if end < len(messages):
                asyncio.get_running_loop().call_soon(self._route_from, messages, end)

    def _route_now(self, messages: list[Message]) -> None:
        """Ingest takes the stream; messages on a component's topics go to the component."""
        if not self._routes:
            self.ingest.on_messages(messages)
            return
        readings: list[Message] = []
        others: dict[int, list[Message]] = {}
        ingest = self._ingest_topics
        for msg in messages:
            if msg.topic.startswith(ingest):  # the stream: one check, not one per component
                readings.append(msg)
                continue
            for index, (prefix, _) in enumerate(self._routes):
                if msg.topic.startswith(prefix):
                    others.setdefault(index, []).append(msg)
                    break
            else:
                readings.append(msg)
        if readings:
            self.ingest.on_messages(readings)
        for index, batch in others.items():
            self._routes[index][1](batch)

    async def acknowledge(self, incident_id: str, by: str, note: str = "") -> None:
        """An operator acknowledges an incident, with a note or none; audited (the note in the
        entry's `note`), and durable before this returns (raises IncidentNotFoundError, or
        StoreError when it could not be saved yet)."""
        self.rules.acknowledge(incident_id, by)
        self.audit.record(
            "ack",
            by,
            f"acknowledged incident {incident_id}",
            incident_id=incident_id,
            note=note or None,
        )
        # The broker will not bring an acknowledgement back: it counts once the rules'
        # state that holds it is synced, not when it is in memory.
        await self.rules.persist()

    async def add_note(self, incident_id: str, by: str, text: str) -> AuditEntry:
        """An operator's note on an incident not archived: an audit entry of kind `note`
        whose detail is the text, synced before this returns (raises IncidentNotFoundError,
        or StoreError / OSError when the store does not take it)."""
        if self.rules.engine.incident(incident_id) is None:
            raise IncidentNotFoundError(f"no incident {incident_id} (it may have been archived)")
        return await self.audit.record_durable("note", by, text, incident_id=incident_id)

    async def archive(self, incident_id: str, by: str) -> AuditEntry:
        """An operator archives a cleared incident: the engine's own archiving, dispatched as
        the clock's is (the retained message cleared, the history written), audited, and
        durable before this returns. Raises IncidentNotFoundError, IncidentStateError for an
        incident not cleared, or StoreError when it could not be saved yet.

        The audit entry keeps the incident's times, which the engine forgets: the timeline
        of an archived incident reads them there."""
        incident = self.rules.engine.incident(incident_id)
        if incident is None:
            raise IncidentNotFoundError(f"no incident {incident_id} (it may have been archived)")
        self.rules.archive(incident_id)
        entry = self.audit.record(
            "archive",
            by,
            f"archived incident {incident_id}",
            incident_id=incident_id,
            rule=incident.rule,
            title=incident.title,
            severity=incident.severity,
            opened_at=incident.opened_at,
            acked_at=incident.acked_at,
            acked_by=incident.acked_by,
            cleared_at=incident.cleared_at,
            region=incident.region,
        )
        # Like an acknowledgement, nothing will bring the archiving back: it counts once the
        # rules' state without the incident (and the event that clears its message) is synced.
        await self.rules.persist()
        return entry

    def _incident_place(self, incident_id: str) -> dict[str, object] | None:
        incident = self.rules.engine.incident(incident_id)
        return None if incident is None else incident.to_dict()

    def _on_durable(self, tokens: list[object]) -> None:
        # Stored is not enough: the rules' state that reflects these readings must be saved
        # too, or a crash would lose what the rules made of them.
        self.rules.hold(t for t in tokens if t is not None)

    def _ack(self, token: object) -> None:
        self.mqtt.ack(token)  # type: ignore[arg-type]

    def health(self) -> HealthReport:
        mqtt_ok = self.mqtt.connected
        influx_ok = self.writer.influx_up
        refused = self.writer.spool_refused
        subscriptions = self.mqtt.refused_subscriptions
        return HealthReport(
            ok=mqtt_ok and influx_ok and refused is None and not subscriptions,
            mqtt_connected=mqtt_ok,
            subscriptions_refused=subscriptions,
            influx_up=influx_ok,
            spooled_points=self.writer.spooled_points,
            taking_readings=not self._paused.is_set(),
            spool_refused=refused,
            rules_loaded=len(self.rules.engine.rules),
            rule_errors=list(self.rules.reload_problems),
            role=None if self.gate is None else "active",
        )

    def _on_connected(self, connections: int) -> None:
        # The broker may have lost the incidents' retained state while the hub was away
        # from it (a restart without persistence, a failover): publish it again. The first
        # connection needs nothing: a start republishes anyway.
        if connections > 1:
            self.rules.republish()
        self.watchlist.on_connected(connections)

    def _on_full(self) -> None:
        # The broker queues for us while we do not read: back-pressure reaches the sensors'
        # broker instead of growing our memory.
        if not self._paused.is_set():
            self.mqtt.pause_reading()
            self._paused.set()
            INGEST_PAUSED.set(1)

    async def _relieve(self) -> None:
        """Resume reading from the broker once the storage buffer has room again."""
        while True:
            await self._paused.wait()
            await self.writer.wait_for_room()
            self.mqtt.resume_reading()
            self._paused.clear()
            INGEST_PAUSED.set(0)

    async def _take_back_incidents(self) -> None:
        """With no rules' state in the store (a first start, or a damaged store made anew),
        the incidents the broker holds retained are taken back before any reading."""
        mqtt = self.config.mqtt
        try:
            payloads = await fetch_retained_incidents(
                mqtt.url,
                mqtt.prefix,
                client_id=f"{mqtt.client_id}-retained",
                username=mqtt.username,
                password=mqtt.password,
                ssl_context=self.tls,
            )
        except (TimeoutError, OSError, MqttError) as exc:
            log.warning(
                "rules: no state in the store, and the incidents' retained messages could not "
                "be read (%r): starting without them",
                exc,
            )
            return
        if taken := self.rules.adopt_incidents(payloads):
            log.warning(
                "rules: no state in the store: took back %d incidents from their retained "
                "messages; their rules restart as if edited",
                taken,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then drain: nothing accepted is lost on a clean stop."""
        if not self.rules.has_state:
            await self._take_back_incidents()
        with contextlib.suppress(Exception):
            await self.influx.create_database()  # spooled until InfluxDB answers if it is down
        async with serve_http(self.http, self.config.api.listen), asyncio.TaskGroup() as tg:
            # Each loop is supervised: a failure is logged, counted and the loop starts
            # again, so that one failing part never stops ingest or barrier commands.
            loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                *([("store-upkeep", self.store.run)] if self._owns_store else []),
                ("storage-writer", self.writer.run),
                ("mqtt", self.mqtt.run),
                ("deadletters", self.ingest.publish_deadletters),
                ("back-pressure", self._relieve),
                ("rules-dispatch", self.rules.dispatch_forever),
                *((c.name, c.run) for c in self.components),
            ]
            tasks = [tg.create_task(supervised(n, run), name=n) for n, run in loops]
            jobs = rule_jobs(self.rules) + [job for c in self.components for job in c.jobs()]
            scheduler = start_scheduler(jobs)
            self.ready.set()
            log.info(
                "hub running: %d sensors, MQTT %s, InfluxDB %s/%s, HTTP %s",
                len(self.inventory.sensors),
                self.config.mqtt.url,
                self.config.influx.url,
                self.config.influx.database,
                self.config.api.listen,
            )
            await stop.wait()
            log.info("stopping: draining buffers")
            scheduler.shutdown(wait=False)
            await self.ingest.close()
            await self.rules.drain(grace=5.0)  # hands the last events to the components
            for component in reversed(self.components):
                await component.close()
            await self.writer.close()  # what it stored or spooled is handed to the rules' gate
            await self.rules.persist()  # saves the state, then acknowledges those readings
            await self.mqtt.stop()
            for task in tasks:
                task.cancel()
        if self._owns_store:
            await self.store.aclose()
        await self.influx.close()
        log.info("stopped")

    async def abort(self) -> None:
        """Leadership is lost: off the broker at once, before anything else can go out.
        The caller then cancels `run`; what was not saved is the next active hub's to redo."""
        await self.mqtt.stop(grace=0)


@contextlib.asynccontextmanager
async def running(config: HubConfig, inventory: Inventory) -> AsyncIterator[Hub]:
    """Run a hub for the length of the block (tests, embedding)."""
    check_tokens(config, inventory)
    hub = Hub(config, inventory, load_rules(config, inventory))
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop), name="hub")
    ready = asyncio.create_task(hub.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what stopped it
    try:
        yield hub
    finally:
        stop.set()
        await task


def _local_services(
    config: HubConfig, inventory: Inventory, data_dir: Path
) -> list[LocalService | LocalCameras]:
    """Start Mosquitto, InfluxDB and the sample cameras for the configured URLs and the
    inventory's cameras on this machine when nothing answers there."""
    started: list[LocalService | LocalCameras] = []
    mqtt = urlsplit(config.mqtt.url)
    influx = urlsplit(config.influx.url)
    wanted: list[LocalService] = [
        LocalMosquitto(
            data_dir=data_dir / "mosquitto",
            port=mqtt.port or 1883,
            host=mqtt.hostname or "127.0.0.1",
        ),
        LocalInflux(
            data_dir=data_dir / "influxdb",
            port=influx.port or 8086,
            host=influx.hostname or "127.0.0.1",
        ),
    ]
    cameras = for_inventory((c.url for c in inventory.cameras.values()), data_dir / "cameras")
    try:
        for service in wanted:
            if port_open(service.host, service.port):
                log.info("%s already answers on %s:%d", service.name, service.host, service.port)
                continue
            service.start()
            started.append(service)
            log.info("started %s on %s:%d (data in %s)",
                     service.name, service.host, service.port, service.data_dir)  # fmt: skip
        if cameras is not None:
            cameras.start()
            started.append(cameras)
            log.info(
                "started the sample cameras: rtsp://127.0.0.1:%d/..., http://127.0.0.1:%d/...",
                cameras.rtsp_port,
                cameras.http_port,
            )
    except ServiceError:
        for other in reversed(started):  # not left running without the hub
            other.stop()
        raise
    return started


def load_rules(config: HubConfig, inventory: Inventory) -> RuleSet:
    """The configured rules; ConfigError with every problem if any file is invalid."""
    rules, problems = check_rules(config.rule_files(), inventory, config.actuators.commands)
    if rules is None:
        raise ConfigError(problems)
    return rules


async def _serve(config: HubConfig, inventory: Inventory, rules: RuleSet) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    check_listen(config.api.host, config.api.port)  # before anything is opened or connected
    hub = Hub(config, inventory, rules)
    # The inventory, the rules and the engine's state live as long as the process: leave them
    # out of the collector's full passes, which otherwise stop the event loop for tens of
    # milliseconds (and a barrier command with it) every few seconds under load.
    gc.collect()
    gc.freeze()
    # A thread that finished an fsync waits for the GIL while the loop works through readings:
    # up to the switch interval (5 ms by default) added to every barrier command.
    sys.setswitchinterval(0.0005)
    await hub.run(stop)


async def _serve_pair(config: HubConfig, inventory: Inventory, rules: RuleSet) -> None:
    """`hub run` with `ha.enabled`: standby until this hub wins the leadership (hub.ha.pair)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    check_listen(config.api.host, config.api.port)
    sys.setswitchinterval(0.0005)

    def build(store: Store, gate: Callable[[], bool]) -> Hub:
        return Hub(config, inventory, rules, store=store, gate=gate)

    await run_pair(config, build, stop)


def main(args: argparse.Namespace) -> int:
    """`hub run`: load and validate everything, then serve until SIGTERM or Ctrl-C."""
    try:
        config = read_config(args)
        inventory = load_inventory(config.inventory)
        # An invalid rule file stops the start: silently running without a flood rule is
        # worse than not running.
        rules = load_rules(config, inventory)
        check_tokens(config, inventory)
    except ConfigError as exc:
        return not_starting("hub", exc)
    log_to_stderr(config)
    if notice := defaults_notice(config):
        log.warning("%s", notice)
    for warning in config.warnings:
        log.warning("%s:%d:%d: %s", warning.file, warning.line, warning.col, warning.message)
    services: list[LocalService | LocalCameras | ChildProcess] = []
    try:
        if args.local_services:
            services += _local_services(config, inventory, Path(args.local_services))
        for command, count in (("detector", args.detectors), ("streams", args.streams)):
            services += start_workers(
                command,
                count,
                config=Path(args.config) if args.config else None,
                log_dir=Path(config.data_dir) / "logs",
                mqtt_url=args.mqtt,
            )
    except ServiceError as exc:
        print(f"hub: not starting: {exc}", file=sys.stderr)
        for service in reversed(services):
            service.stop()
        return 1
    try:
        serve = _serve_pair if config.ha.enabled else _serve
        asyncio.run(serve(config, inventory, rules))
    except (SecretMissingError, StoreError, TlsSetupError, ListenError) as exc:
        # Raised while the parts are built, before anything connects or runs.
        print(f"hub: not starting: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Taken between check_listen and the server's start.
        error = listen_error(config.api.host, config.api.port, exc)
        print(f"hub: not starting: {error}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()
    return 0
