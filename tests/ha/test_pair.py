"""Two `hub run` processes as an active/standby pair on one etcd cluster and one broker.

SIGKILL of the active hub at random moments of floods: each flood gives one incident, one
close and one open of the barrier, one notification, and the standby takes over each time.
SIGSTOP of the active hub until the standby has taken over, then SIGCONT: the old active
sends nothing and stands by. HUB_HA_SEED=<n> replays the kill moments.
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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.notify.channels import DELIVERY_HEADER
from hub.services import EtcdCluster, LocalInflux, LocalMosquitto, free_port
from tests.actuators.controller import Controller
from tests.app.torture_support import threaded_webhook
from tests.helpers import (
    HubProcess,
    Peer,
    influx_query,
    point,
    service_sections,
    small_province,
    wait_for,
    write_config,
    write_site,
)
from tests.notify.support import WebhookServer

pytestmark = pytest.mark.integration

FLOODS = 10
TAKEOVER_S = 10.0  # the product's bound on a takeover

RULES = """
rules:
  - id: flood
    title: Underpass flooding
    severity: severe
    sensors: {id: wl-1}
    trigger: {above: 15 cm}
    clear: {below: 10 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open}
      - notify: {channels: [room]}
"""


def pair_configs(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    etcd: EtcdCluster,
    prefix: str,
    database: str,
    uid: str,
    webhook: str,
) -> list[Path]:
    site = small_province()
    features: list[Any] = site["features"]  # type: ignore[assignment]
    features.append(
        point("actuator", 127.01, 37.26, id="bar-1", kind="barrier", region="suwon", site="up-1")
    )
    site_dir = write_site(tmp_path / "site", site)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(RULES)
    configs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        configs.append(
            write_config(
                folder / "hub.yaml",
                **service_sections(mosquitto.url, influx.url, prefix, database, uid),
                inventory=[str(site_dir)],
                rules=[str(tmp_path / "rules")],
                api={"listen": f"127.0.0.1:{free_port()}"},
                store={"backend": "etcd", "endpoints": etcd.endpoints, "prefix": f"t{uid}"},
                ha={"enabled": True, "name": name, "ttl": 2},
                # Ten floods in a minute close and open the barrier twenty times: past the
                # default rate limit (10 a minute), which would refuse the 11th command.
                actuators={"rate_limit": {"commands": 1000, "per": "1m"}},
                notify={
                    "channels": {"room": {"type": "webhook", "url": webhook}},
                    "group_window": "100ms",
                    "retry_min": "200ms",
                    "retry_max": "1s",
                },
                data_dir=str(folder / "var"),
            )
        )
    return configs


class Pair:
    """The two hub processes; which one is active is asked of their health."""

    def __init__(self, configs: list[Path]) -> None:
        self.hubs = {p.parent.name: HubProcess.for_config(p) for p in configs}

    def start(self, name: str) -> None:
        hub = self.hubs[name]
        with hub.log.open("ab") as out:
            hub.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run", "-c", str(hub.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
        wait_for(lambda: hub.health().get("role"), f"hub {name} to answer", timeout=30)

    def active(self) -> str | None:
        for name, hub in self.hubs.items():
            if hub.proc is None or hub.proc.poll() is not None:
                continue  # killed, not yet started again
            health = hub.health()
            if health.get("role") == "active" and health.get("mqtt_connected"):
                return name
        return None

    def other(self, name: str) -> str:
        return next(n for n in self.hubs if n != name)

    def stop(self) -> None:
        for hub in self.hubs.values():
            hub.stop()


@pytest.fixture
def pair_parts(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    etcd: EtcdCluster,
    prefix: str,
    database: str,
    uid: str,
) -> Iterator[tuple[Pair, Controller, WebhookServer, Peer]]:
    with threaded_webhook() as webhook:
        configs = pair_configs(
            tmp_path, mosquitto, influx, etcd, prefix, database, uid, webhook.url
        )
        controller = Controller(mosquitto.url, f"barrier-{uid}", prefix, "suwon", "bar-1")
        sensor = Peer(mosquitto.url, f"sensor-{uid}")
        pair = Pair(configs)
        try:
            yield pair, controller, webhook, sensor
        finally:
            pair.stop()
            sensor.close()
            controller.close()


def level(sensor: Peer, prefix: str, cm: float) -> None:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    sensor.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": cm, "ts": ts}))


def commands(controller: Controller) -> dict[str, Counter[str]]:
    """Per incident: how many distinct command ids of each action reached the barrier."""
    found: dict[str, Counter[str]] = {}
    for command in list(controller.commands.values()):
        found.setdefault(command["incident_id"], Counter())[command["action"]] += 1
    return found


def deliveries(webhook: WebhookServer) -> Counter[str]:
    """Distinct notification deliveries by delivery id (a resend has the same id)."""
    return Counter({headers[DELIVERY_HEADER]: 1 for headers, _ in webhook.received})


def test_sigkill_of_the_active_hub_during_floods_loses_and_doubles_nothing(
    pair_parts: tuple[Pair, Controller, WebhookServer, Peer],
    prefix: str,
    influx: LocalInflux,
    database: str,
) -> None:
    seed = int(os.environ.get("HUB_HA_SEED") or random.randrange(2**32))
    print(f"seed {seed} (HUB_HA_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    pair, controller, webhook, sensor = pair_parts
    pair.start("a")
    pair.start("b")
    active = wait_for(pair.active, "a hub to be active", timeout=30)
    takeovers = []
    for flood in range(FLOODS):
        level(sensor, prefix, 20)
        time.sleep(rng.uniform(0, 1.0))  # a random moment of the flood for the kill
        killed = time.monotonic()
        assert pair.hubs[active].signal(signal.SIGKILL) == -signal.SIGKILL
        successor = pair.other(active)
        wait_for(lambda s=successor: pair.active() == s, f"flood {flood}: takeover", TAKEOVER_S)
        takeovers.append(time.monotonic() - killed)
        pair.start(active)  # the killed hub comes back as the standby
        active = successor
        wait_for(
            lambda n=flood + 1: sum(c["close"] for c in commands(controller).values()) == n,
            f"flood {flood}: the barrier closed (seed {seed}): {commands(controller)}",
        )
        level(sensor, prefix, 5)
        wait_for(
            lambda n=flood + 1: sum(c["open"] for c in commands(controller).values()) == n,
            f"flood {flood}: the barrier opened (seed {seed})",
        )
    wait_for(lambda: len(deliveries(webhook)) >= FLOODS, "a notification per flood")
    per_incident = commands(controller)
    print(f"takeovers (s): {sorted(round(t, 2) for t in takeovers)}")
    assert len(per_incident) == FLOODS, f"one incident per flood (seed {seed}): {per_incident}"
    assert all(c == Counter(close=1, open=1) for c in per_incident.values()), per_incident
    assert all(n == 1 for n in controller.executed.values())
    assert len(deliveries(webhook)) == FLOODS, f"one notification per flood (seed {seed})"

    # Every reading stored once (two a flood), whichever hub took it in.
    def stored() -> int:
        rows = influx_query(influx.url, database, "SELECT count(value) FROM reading")
        return int(str(rows[0]["count"])) if rows else 0

    wait_for(lambda: stored() >= 2 * FLOODS, "every reading in InfluxDB")
    assert stored() == 2 * FLOODS, f"readings stored twice (seed {seed})"


def test_a_stopped_active_hub_that_wakes_sends_nothing_and_stands_by(
    pair_parts: tuple[Pair, Controller, WebhookServer, Peer], prefix: str
) -> None:
    pair, controller, webhook, sensor = pair_parts
    pair.start("a")
    first = wait_for(pair.active, "a hub to be active", timeout=30)
    pair.start(pair.other(first))
    old = pair.hubs[first]
    assert old.proc is not None
    old.proc.send_signal(signal.SIGSTOP)
    try:
        successor = pair.other(first)
        wait_for(lambda: pair.hubs[successor].health().get("role") == "active", "takeover")
        # The flood happens under the new active hub while the old one is stopped.
        level(sensor, prefix, 20)
        wait_for(lambda: len(controller.commands) == 1, "the new active hub's close")
        wait_for(lambda: len(deliveries(webhook)) == 1, "the new active hub's notification")
    finally:
        old.proc.send_signal(signal.SIGCONT)
    sent = (dict(controller.received), len(webhook.received))
    wait_for(lambda: old.health().get("role") == "standby", "the old active hub to stand by")
    level(sensor, prefix, 5)
    wait_for(lambda: len(controller.commands) == 2, "the open, from the active hub")
    assert pair.active() == successor
    assert sum(controller.received.values()) == sum(sent[0].values()) + 1, (
        "the woken hub sent a command"
    )
    assert len(webhook.received) == sent[1], "the woken hub sent a notification"


def test_a_broker_restart_during_a_takeover_loses_and_doubles_nothing(
    tmp_path: Path,
    own_mosquitto: LocalMosquitto,
    influx: LocalInflux,
    etcd: EtcdCluster,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    """The active hub is killed and the broker restarts while the standby takes over: the
    new active hub finds its session on the restarted broker (persistence) and the flood
    that starts meanwhile closes and opens the barrier once."""
    with threaded_webhook() as webhook:
        configs = pair_configs(
            tmp_path, own_mosquitto, influx, etcd, prefix, database, uid, webhook.url
        )
        controller = Controller(own_mosquitto.url, f"barrier-{uid}", prefix, "suwon", "bar-1")
        sensor = Peer(own_mosquitto.url, f"sensor-{uid}")
        pair = Pair(configs)
        try:
            pair.start("a")
            pair.start("b")
            active = wait_for(pair.active, "a hub to be active", timeout=30)
            level(sensor, prefix, 20)
            wait_for(lambda: len(controller.commands) == 1, "the first flood's close")
            level(sensor, prefix, 5)
            wait_for(lambda: len(controller.commands) == 2, "the first flood's open")

            assert pair.hubs[active].signal(signal.SIGKILL) == -signal.SIGKILL
            own_mosquitto.restart()
            level(sensor, prefix, 20)  # sent once the sensor is connected again
            successor = pair.other(active)
            wait_for(lambda: pair.active() == successor, "the takeover", TAKEOVER_S * 2)
            wait_for(lambda: len(controller.commands) == 3, "the second flood's close")
            level(sensor, prefix, 5)
            wait_for(lambda: len(controller.commands) == 4, "the second flood's open")
            per_incident = commands(controller)
            assert len(per_incident) == 2, per_incident
            assert all(c == Counter(close=1, open=1) for c in per_incident.values())
            assert all(n == 1 for n in controller.executed.values())
        finally:
            pair.stop()
            sensor.close()
            controller.close()
