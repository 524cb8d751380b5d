"""SIGKILL loses nothing and repeats nothing: a storm over the example province while an
operator works at the API and the hub is killed at random moments, over and over.

The test publishes every reading itself, so it knows exactly what went in. The hub's own pure
engine, run here over the same readings (see tests/app/torture_support.py for why that is an
exact oracle), says which incidents, barrier commands and notifications must come out; the
InfluxDB database, the retained incident messages, the barrier controllers and the SMTP and
webhook servers say what did. Every start after a kill is a restart from whatever the killed
hub left on disk. Every third start also sets HUB_STORE_CRASH, which asks the hub's SQLite
store to kill its own process at a random step inside a commit (a hub without that store
ignores it); such a hub is restarted like the others.

HUB_TORTURE_SEED=<n> replays a run's decisions (storm noise, kill moments, operator acts).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import hub as hub_package
from hub.services import LocalInflux, LocalMosquitto
from tests.actuators.controller import Controller
from tests.app.torture_support import (
    LEAD_S,
    NS,
    OPERATOR_NAME,
    VIEWER,
    Expected,
    Operator,
    Oracle,
    Sent,
    StormPublisher,
    api,
    hub_config,
    make_storm,
    parse_rfc3339_ns,
    received,
    stamp_receipts,
    threaded_webhook,
)
from tests.helpers import HubProcess, Peer, influx_query, wait_for
from tests.notify.support import SmtpServer, WebhookServer

pytestmark = pytest.mark.integration

MIN_KILLS = 30
CRASH_EVERY = 3  # every third start runs with HUB_STORE_CRASH
SETTLE_S = 60.0  # the deadline for each part of the final settling


class Torture:
    """The run's state, and the failures found, all reported at once at the end."""

    def __init__(self, seed: int, hub: HubProcess, activity: Callable[[], int]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.hub = hub
        self.activity = activity  # commands and notifications that reached their receivers
        self.failures: list[str] = []
        self.lives: list[tuple[float, float]] = []  # (start, kill) per hub, time.monotonic()
        self.self_kills = 0  # hubs found dead (the store's crash hook) when their kill came
        self.crash_starts = 0
        self.modes: Counter[str] = Counter()

    def fail(self, what: str) -> None:
        self.failures.append(f"{what} (torture seed: {self.seed})")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.hub.log.read_text(errors="replace").splitlines()[-lines:])

    # -- starting and killing --------------------------------------------------------------

    def start(self, cycle: int, *, crash: bool = False) -> bool:
        """Start the hub; False if the store's crash hook killed it before it connected."""
        env = None
        if crash:
            env = {"HUB_STORE_CRASH": f"{self.seed}-{cycle}:0.002"}
            self.crash_starts += 1
        self.lives.append((time.monotonic(), float("inf")))
        try:
            self.hub.start(env=env)
        except AssertionError:
            proc = self.hub.proc
            if env is not None and proc is not None and proc.poll() == -signal.SIGKILL:
                return False
            rc = proc.poll() if proc is not None else None
            raise AssertionError(
                f"start {cycle} failed (exit status {rc}, torture seed: {self.seed}):\n"
                + self.log_tail()
            ) from None
        return True

    def kill(self, cycle: int) -> None:
        proc = self.hub.proc
        assert proc is not None
        dead = proc.poll()
        if dead is not None and dead != -signal.SIGKILL:
            raise AssertionError(
                f"the hub of start {cycle} died on its own with exit status {dead} "
                f"(torture seed: {self.seed}):\n{self.log_tail()}"
            )
        if dead is not None:
            self.self_kills += 1
        self.lives[-1] = (self.lives[-1][0], time.monotonic())
        assert self.hub.signal(signal.SIGKILL) == -signal.SIGKILL

    @property
    def kills(self) -> int:
        return sum(1 for _, end in self.lives if end != float("inf"))

    def live(self, operator: Operator) -> None:
        """Let the hub run, then kill it: after a random while, or moments after a command
        or a notification reached its receiver, or after the API accepted an operator's
        acknowledgement (the moments when what the hub did is least likely on disk yet)."""
        mode = self.rng.choices(["timer", "delivery", "ack"], weights=[4, 4, 2])[0]
        self.modes[mode] += 1
        if mode == "ack":
            accepted = len(operator.acks)
            operator.acknowledge(self.hub)
            if len(operator.acks) > accepted:
                pause_until(time.monotonic() + self.rng.uniform(0.0, 0.05))
                return
            mode = "timer"
        if mode == "delivery":
            deadline = time.monotonic() + self.rng.uniform(0.5, 4.0)
            seen = self.activity()
            while self.activity() == seen and time.monotonic() < deadline:
                time.sleep(0.002)  # a poll: the kill follows the delivery within milliseconds
            pause_until(time.monotonic() + self.rng.uniform(0.0, 0.03))
            return
        stop_at = time.monotonic() + self.up_time()
        for at in sorted(time.monotonic() + self.rng.uniform(0, 2.0) for _ in range(2)):
            if at >= stop_at:
                break
            pause_until(at)
            operator.act(self.hub)
        pause_until(stop_at)

    def up_time(self) -> float:
        """How long a hub lives: often moments (start-up, replay), mostly a second or two."""
        if self.rng.random() < 0.3:
            return self.rng.uniform(0.0, 0.4)
        return self.rng.uniform(0.4, 2.5)

    def storm(self, operator: Operator, publisher: StormPublisher) -> int:
        """Kill and restart until the storm has passed and MIN_KILLS kills were made; the
        first hub was started before the storm."""
        cycle = 0
        while cycle < MIN_KILLS or publisher.is_alive():
            if publisher.error is not None:
                raise AssertionError(f"publishing the storm failed: {publisher.error!r}")
            crash = cycle % CRASH_EVERY == CRASH_EVERY - 1
            if cycle == 0 or self.start(cycle, crash=crash):
                self.live(operator)
            self.kill(cycle)
            cycle += 1
        return cycle


def pause_until(moment: float) -> None:
    """Let the hub run until `moment` (time.monotonic()): the kill comes at a chosen time, not
    when something happened, so this waits for no condition."""
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def settle(check: Callable[[], bool], timeout: float = SETTLE_S) -> bool:
    """Whether `check` came true within `timeout`; the caller reports what did not."""
    try:
        wait_for(check, "the hub to settle", timeout=timeout, interval=0.2)
    except AssertionError:
        return False
    return True


# -- what the hub left behind -----------------------------------------------------------------


def stored_readings(
    influx: LocalInflux, database: str, sent: list[Sent]
) -> Counter[tuple[str, int]]:
    """(sensor, time) of every stored reading; the storm's time range named, since it lies
    ahead of the wall clock."""
    lo, hi = sent[0].ts_ns - 3600 * NS, sent[-1].ts_ns + 3600 * NS
    rows = influx_query(
        influx.url,
        database,
        f'SELECT "value", "sensor" FROM "reading" WHERE time >= {lo} AND time <= {hi}',
    )
    return Counter((str(r["sensor"]), int(r["time"])) for r in rows)  # type: ignore[call-overload]


def opened_in_influx(influx: LocalInflux, database: str) -> dict[tuple[str, str], set[str]]:
    rows = influx_query(
        influx.url,
        database,
        'SELECT "id", "event" FROM "incident" WHERE "event" = \'opened\' '
        'GROUP BY "rule", "subject"',
    )
    out: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        out.setdefault((str(row["rule"]), str(row["subject"])), set()).add(str(row["id"]))
    return out


def retained_incidents(
    mosquitto: LocalMosquitto, prefix: str, uid: str
) -> dict[str, dict[str, Any]]:
    """The retained `{prefix}/incidents/#` messages, by incident id (cleared ones included)."""
    peer = Peer(mosquitto.url, f"incidents-{uid}-{time.monotonic_ns()}")
    try:
        peer.subscribe(f"{prefix}/incidents/#")
        # Retained messages come at once after the subscription; a marker published after it
        # arrives after them, since the broker keeps the order on one connection.
        marker = f"{prefix}/incidents/-/marker-{time.monotonic_ns()}"
        peer.publish(marker, b"{}", qos=1)
        wait_for(
            lambda: any(topic == marker for topic, _ in peer.received),
            "the retained incidents",
            timeout=15,
        )
        out: dict[str, dict[str, Any]] = {}
        for topic, payload in list(peer.received):
            if topic != marker and payload:
                incident = json.loads(payload)
                out[str(incident["id"])] = incident
        return out
    finally:
        peer.close()


def influx_audit(influx: LocalInflux, database: str) -> list[dict[str, Any]]:
    return influx_query(
        influx.url, database, f'SELECT * FROM "audit" WHERE "actor" = \'{OPERATOR_NAME}\''
    )


def seen_by(ctl: Controller) -> tuple[Counter[str], Counter[str], dict[str, dict[str, Any]]]:
    """(received, executed, commands) of a controller, copied under its lock: its MQTT thread
    adds to them."""
    with ctl._lock:
        return Counter(ctl.received), Counter(ctl.executed), dict(ctl.commands)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with threaded_webhook() as server:
        yield server


def test_sigkill_loses_nothing_and_repeats_nothing(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
    smtp: SmtpServer,
    webhook: WebhookServer,
) -> None:
    seed = int(os.environ.get("HUB_TORTURE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"torture seed: {seed}")
    config = hub_config(
        tmp_path,
        mqtt_url=mosquitto.url,
        influx_url=influx.url,
        prefix=prefix,
        database=database,
        uid=uid,
        smtp_port=smtp.port,
        webhook_url=webhook.url,
    )
    # The oracle is this process's `hub`; the hub processes must run the same code.
    theirs = subprocess.run(
        [sys.executable, "-c", "import hub; print(hub.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(theirs) == Path(hub_package.__file__), f"{theirs} != {hub_package.__file__}"

    oracle = Oracle(config)
    hub = hub_processes(config)
    stamp_receipts(webhook, smtp)
    with ExitStack() as stack:
        controllers = {
            a.id: Controller(mosquitto.url, f"ctl-{uid}-{a.id}", prefix, a.region, a.id)
            for a in oracle.inventory.actuators.values()
            if a.kind == "barrier"
        }
        for ctl in controllers.values():
            stack.callback(ctl.close)

        def activity() -> int:
            commands = sum(len(ctl.received) for ctl in controllers.values())  # len: atomic
            return commands + len(webhook.received) + len(smtp.messages)

        run = Torture(seed, hub, activity)
        peer = Peer(mosquitto.url, f"storm-{uid}")
        stack.callback(peer.close)

        # The hub's session and subscriptions exist before the first reading is published.
        run.start(0)
        sent = make_storm(oracle.inventory, prefix, run.rng, time.time_ns() + int(LEAD_S * NS))
        plan = oracle.run(sent)
        commanded = {actuator for actuator, _ in plan.commands.values()}
        assert len(plan.incidents) >= 5, "the storm must open incidents at several sites"
        assert commanded, "the storm must close barriers"
        assert commanded <= set(controllers), f"no controller for {commanded}"
        operator = Operator(run.rng, sorted(set(controllers) - commanded))
        publisher = StormPublisher(peer, sent)
        publisher.start()
        stack.callback(publisher.stop)
        began = time.monotonic()

        cycles = run.storm(operator, publisher)
        storm_s = time.monotonic() - began
        assert publisher.error is None, f"publishing the storm failed: {publisher.error!r}"
        wait_for(peer.all_sent, "the broker to take every reading", timeout=30)

        # The last start: no kill, no crash hook; everything must settle.
        run.start(cycles)
        expected = final_checks(run, oracle, sent, influx, database, mosquitto, prefix, uid,
                                controllers, operator, smtp, webhook)  # fmt: skip
        status, _ = api(hub, "GET", "/api/health")
        if status != 200:
            run.fail(f"/api/health answered {status} after the storm")
        assert hub.signal(signal.SIGTERM) == 0, run.log_tail()

    print(
        f"torture seed {seed}: {cycles} cycles in {storm_s:.0f}s, {run.kills} kills "
        f"({run.self_kills} found dead; {dict(run.modes)}), {run.crash_starts} starts with "
        f"HUB_STORE_CRASH; "
        f"{len(sent)} readings, {len(expected.incidents)} incidents, "
        f"{len(expected.commands)} rule commands, {len(expected.notes)} notifications, "
        f"{len(operator.acks)} acknowledgements and {len(operator.commands)} commands accepted"
    )
    assert not run.failures, "\n".join(run.failures)
    assert run.kills >= MIN_KILLS


def final_checks(
    run: Torture,
    oracle: Oracle,
    sent: list[Sent],
    influx: LocalInflux,
    database: str,
    mosquitto: LocalMosquitto,
    prefix: str,
    uid: str,
    controllers: dict[str, Controller],
    operator: Operator,
    smtp: SmtpServer,
    webhook: WebhookServer,
) -> Expected:
    """Wait (with deadlines) for the restarted hub to finish what the storm left, then record
    every way in which the result differs from the oracle's."""
    hub = run.hub
    published = Counter((s.sensor, s.ts_ns) for s in sent)

    # Readings: each stored once, at its own time.
    settle(lambda: stored_readings(influx, database, sent) == published)
    stored = stored_readings(influx, database, sent)
    missing = published - stored
    extra = stored - published
    if missing or extra:
        run.fail(
            f"readings: {len(published)} published, {sum(stored.values())} stored; "
            f"{sum(missing.values())} missing (e.g. {sorted(missing)[:5]}), "
            f"{sum(extra.values())} stored more than once or never sent "
            f"(e.g. {sorted(extra)[:5]})"
        )

    # The rules have handed every event on; then the live incidents name the acknowledgements
    # the hub kept, which the oracle needs for `unless: acknowledged`.
    settle(lambda: hub.metric("hub_outbox_events") == 0)
    status, body = api(hub, "GET", "/api/incidents", token=VIEWER)
    assert status == 200, f"/api/incidents answered {status}"
    live = {str(i["id"]): i for i in body["incidents"]}
    acks = {
        iid: parse_rfc3339_ns(str(i["acked_at"]))
        for iid, i in live.items()
        if i.get("acked_by") == OPERATOR_NAME and i.get("acked_at")
    }
    expected = oracle.run(sent, acks)

    # Incidents: one per rule and subject, with the oracle's id, in InfluxDB, in the retained
    # messages and in the hub.
    want = {iid: (i.rule, i.subject, i.state) for iid, i in expected.incidents.items()}
    settle(lambda: _retained_states(mosquitto, prefix, uid) == want)
    retained = _retained_states(mosquitto, prefix, uid)
    in_hub = {iid: (str(i["rule"]), str(i["subject"]), str(i["state"])) for iid, i in live.items()}
    for where, found in (("the hub's incidents", in_hub), ("the retained messages", retained)):
        if found != want:
            run.fail(
                f"incidents in {where} differ from the oracle's: missing {_diff(want, found)}, "
                f"unexpected {_diff(found, want)}"
            )
    opened = opened_in_influx(influx, database)
    by_subject = expected.by_subject()
    if opened != by_subject:
        twice = {k: v for k, v in opened.items() if len(v) > 1}
        run.fail(
            f"incidents opened (InfluxDB) differ from the oracle's: opened with several ids "
            f"{twice}, missing {_diff(by_subject, opened)}, unexpected {_diff(opened, by_subject)}"
        )

    # Barrier commands of the rules: each executed once, under the id of its action.
    def executed(cid: str) -> int:
        return sum(seen_by(ctl)[1][cid] for ctl in controllers.values())

    def no_pending() -> bool:
        status, body = api(hub, "GET", "/api/actuators", token=VIEWER)
        return status == 200 and not any(a["pending"] for a in body["actuators"])

    settle(lambda: all(executed(cid) for cid in expected.commands) and no_pending())
    for cid, (actuator, command) in sorted(expected.commands.items()):
        count = seen_by(controllers[actuator])[1][cid]
        if count != 1:
            run.fail(f"command {cid} ({command} {actuator}) executed {count} times, not once")
    for name in sorted({a for a, _ in expected.commands.values()}):
        strays = sorted(set(seen_by(controllers[name])[1]) - set(expected.commands))
        if strays:
            run.fail(f"{name} executed commands no action asked for: {strays}")
        if controllers[name].state != "open":
            run.fail(f"{name} is {controllers[name].state} after the storm, not open again")

    # The operator's commands: none executed twice. One may never run if a newer command to
    # the same barrier superseded it before it was sent (only the latest is ever resent).
    for job in operator.commands:
        cid, actuator = str(job["command_id"]), str(job["actuator"])
        _, done, commands = seen_by(controllers[actuator])
        newer = [
            c
            for c in commands.values()
            if c["command_id"] != cid and parse_rfc3339_ns(c["issued_at"]) > job["issued_at"]
        ]
        if done[cid] > 1 or (done[cid] == 0 and not newer):
            run.fail(
                f"operator command {cid} ({job['action']} {actuator}, accepted) executed "
                f"{done[cid]} times, and no newer command superseded it"
            )

    # Notifications: each (incident, state change, channel) delivered once.
    def delivered() -> bool:
        got = received(webhook, smtp, expected.notes, run.lives).keys
        return set(got) >= expected.notes and hub.metric("hub_notifications_pending") == 0

    settle(delivered)
    got = received(webhook, smtp, expected.notes, run.lives)
    want_notes = Counter(expected.notes)
    if got.keys != want_notes or got.unknown:
        run.fail(
            f"notifications: missing {sorted(want_notes - got.keys)}, more than once "
            f"{sorted(k for k, n in got.keys.items() if n > 1)}, unexpected "
            f"{sorted(set(got.keys) - set(want_notes))} {got.unknown[:3]}"
        )
    if got.copies:
        print(f"deliveries repeated with the same delivery id (receivers drop them): {got.copies}")

    # Audit: every acknowledgement and command the API accepted.
    status, body = api(hub, "GET", "/api/audit?limit=10000&kind=ack,command,override", token=VIEWER)
    assert status == 200, f"/api/audit answered {status}"
    in_api = audit_gaps(operator, body["entries"])
    if any(in_api.values()):
        in_influx = audit_gaps(operator, influx_audit(influx, database))
        run.fail(
            f"audit: the API accepted {len(operator.acks)} acknowledgements and "
            f"{len(operator.commands)} commands "
            f"({sum(1 for j in operator.commands if j['override'])} overrides); "
            f"GET /api/audit lacks {_gaps(in_api)}; InfluxDB's audit measurement lacks "
            f"{_gaps(in_influx)}"
        )
    unacked = sorted(
        {iid for iid in operator.acks if iid in live and not live[iid].get("acked_by")}
    )
    if unacked:
        run.fail(f"acknowledgements the API accepted, missing from their incidents: {unacked}")
    return expected


def _retained_states(
    mosquitto: LocalMosquitto, prefix: str, uid: str
) -> dict[str, tuple[str, str, str]]:
    return {
        iid: (str(i["rule"]), str(i["subject"]), str(i["state"]))
        for iid, i in retained_incidents(mosquitto, prefix, uid).items()
    }


def audit_gaps(operator: Operator, entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the operator did that these audit entries (the API's, or InfluxDB's rows) lack."""
    mine = [e for e in entries if e.get("actor") == OPERATOR_NAME]

    def ids(kind: str, key: str) -> set[str]:
        return {str(e.get(key)) for e in mine if e.get("kind") == kind}

    acked = ids("ack", "incident_id")
    commanded = ids("command", "command_id")
    overridden = ids("override", "command_id")
    return {
        "acknowledgements": [i for i in dict.fromkeys(operator.acks) if i not in acked],
        "commands": [
            str(j["command_id"]) for j in operator.commands if j["command_id"] not in commanded
        ],
        "overrides": [
            str(j["command_id"])
            for j in operator.commands
            if j["override"] and j["command_id"] not in overridden
        ],
    }


def _gaps(gaps: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(v)} {k} {v[:3]}" for k, v in gaps.items())


def _diff(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v for k, v in a.items() if b.get(k) != v}
