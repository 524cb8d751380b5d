"""The rules in a running hub, through a real Mosquitto and InfluxDB: an incident opens once
when a level holds for its `for`, is published retained and stored, and SIGKILL inside the
pending `for` or inside the open incident neither resets the duration nor repeats anything."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    HubProcess,
    Peer,
    influx_query,
    service_sections,
    wait_for,
    write_config,
    write_site,
)

pytestmark = pytest.mark.integration

FOR_S = 6.0
RULES = f"""
rules:
  - id: underpass-flood
    title: "Flooding at {{site_name}}"
    severity: severe
    sensors: [wl-1]
    trigger: {{above: 15 cm, for: {FOR_S:g}s}}
    clear: {{below: 10 cm, for: 2s}}
    actions:
      - notify: {{channels: [situation-room]}}
"""


class Gauge:
    """A water-level gauge that reports every 0.25 s in a thread, with its own timestamps."""

    def __init__(self, peer: Peer, topic: str) -> None:
        self.peer = peer
        self.topic = topic
        self.level_cm = 5.0
        self.first_high: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.time()
            if self.level_cm > 15 and self.first_high is None:
                self.first_high = now
            self.peer.publish(self.topic, json.dumps({"value": self.level_cm, "ts": now}))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def hub_process(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
) -> HubProcess:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(RULES)
    config = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_site(tmp_path / "site"))],
        rules=[str(tmp_path / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
    )
    return hub_processes(config)


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000) * 1_000_000


def test_sigkill_in_a_pending_for_and_in_an_open_incident(
    hub_process: HubProcess,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    watcher = Peer(mosquitto.url, f"watcher-{uid}")
    watcher.subscribe(f"{prefix}/incidents/#")
    gauge = Gauge(Peer(mosquitto.url, f"gauge-{uid}"), f"{prefix}/sensors/suwon/wl-1")
    try:
        hub_process.start()
        gauge.level_cm = 20.0
        wait_for(lambda: gauge.first_high is not None, "the first high reading")
        assert gauge.first_high is not None
        due = gauge.first_high + FOR_S

        # Killed inside the pending `for`, and down for a while: the duration must not reset.
        wait_for(lambda: time.time() > gauge.first_high + 2.0, "2 s into the `for`")  # type: ignore[operator]
        assert not watcher.received, "opened before its `for` was over"
        hub_process.signal(signal.SIGKILL)
        wait_for(lambda: time.time() > gauge.first_high + 3.0, "3 s into the `for`")  # type: ignore[operator]
        hub_process.start()

        incidents = wait_for(
            lambda: [json.loads(p) for _, p in watcher.received if p], "the incident", timeout=20
        )
        opened = incidents[0]
        assert opened["rule"] == "underpass-flood"
        assert opened["subject"] == "wl-1"
        assert opened["state"] == "active"
        # It opened when the `for` ran out, measured on the readings' own clock (the first
        # high reading came at most one report interval before `first_high` was noted).
        assert abs(_ns(opened["opened_at"]) / 1e9 - due) < 0.5, (opened["opened_at"], due)
        wait_for(
            lambda: (
                hub_process.metric("hub_outbox_events") == 0
                and hub_process.metric("hub_actions_total") >= 1
                and hub_process.metric("hub_incidents_open") == 1
            ),
            "the action to be dispatched and recorded, and the incident counted",
        )

        # Killed inside the open incident: after the restart, no second incident, no second page.
        hub_process.signal(signal.SIGKILL)
        hub_process.start()
        wait_for(
            lambda: hub_process.metric("hub_readings_accepted_total") >= 4,
            "the restarted hub to take readings",
        )
        assert hub_process.metric("hub_incidents_open") == 1  # restored, and counted at start
        gauge.level_cm = 5.0
        cleared = wait_for(
            lambda: [
                json.loads(p)
                for _, p in watcher.received
                if p and json.loads(p)["state"] == "cleared"
            ],
            "the incident to clear",
            timeout=20,
        )
        wait_for(lambda: hub_process.metric("hub_incidents_open") == 0, "no incident counted")
        assert hub_process.signal(signal.SIGTERM) == 0
    finally:
        gauge.close()
        gauge.peer.close()
        watcher.close()

    ids = {json.loads(p)["id"] for _, p in watcher.received if p}
    assert ids == {opened["id"]}, "a second incident was opened"
    assert cleared[0]["opened_at"] == opened["opened_at"]
    log = hub_process.log.read_text()
    assert log.count(f"action {opened['id']}.") == 1, "the action went out more than once"
    rows = influx_query(
        influx.url, database, "SELECT id, state, event FROM incident WHERE event = 'opened'"
    )
    assert [r["id"] for r in rows] == [opened["id"]]
    assert (
        rows[0]["time"] == _ns(opened["opened_at"])
        or abs(int(rows[0]["time"]) - _ns(opened["opened_at"])) < 1_000_000
    )  # type: ignore[arg-type]
