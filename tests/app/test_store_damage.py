"""A hub whose store was damaged (or lost) between two runs: it starts, says what it found and
what it did, keeps the flood incident open under its id, sends no second close command, and
reopens the barrier once the water goes down."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.services import LocalInflux, LocalMosquitto
from tests.actuators.conftest import VIEWER, hub_config
from tests.actuators.controller import Controller
from tests.helpers import HubProcess, Peer, wait_for

pytestmark = pytest.mark.integration


def incidents(hub: HubProcess) -> list[dict[str, Any]]:
    return list(hub.get("/api/incidents", VIEWER)["incidents"])


def damage(path: Path, how: str, rng: random.Random) -> str:
    """Tear the file at a random byte, or write garbage over part of it."""
    data = bytearray(path.read_bytes())
    at = rng.randrange(len(data))
    if how == "torn":
        del data[at:]
    else:
        n = rng.randrange(16, 4096)
        data[at : at + n] = rng.randbytes(n)[: len(data) - at]
    path.write_bytes(bytes(data))
    return f"{how} at byte {at} of a {path.stat().st_size}-byte file"


@pytest.mark.parametrize(
    ("how", "seed"), [("torn", 1), ("torn", 2), ("garbage", 3), ("garbage", 4), ("lost", 0)]
)
def test_a_damaged_store_keeps_the_flood_incident_and_its_barrier(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
    controller: Controller,
    how: str,
    seed: int,
) -> None:
    hub = hub_processes(hub_config(tmp_path, mosquitto.url, influx.url, prefix, database, uid))
    gauge = Peer(mosquitto.url, f"gauge-{uid}")

    def level(cm: float) -> None:
        payload = json.dumps({"value": cm, "ts": time.time()})  # the gauge sends cm
        gauge.publish(f"{prefix}/sensors/suwon/wl-1", payload)

    try:
        hub.start()
        level(20)
        wait_for(lambda: controller.state == "closed", "the barrier to close")
        (before,) = wait_for(lambda: incidents(hub), "the flood incident")
        assert hub.signal(signal.SIGTERM) == 0

        store = tmp_path / "var" / "hub.db"
        if how == "lost":
            shutil.rmtree(tmp_path / "var")  # the data folder is gone: a new disk, say
            what = "the data folder removed"
        else:
            what = damage(store, how, random.Random(seed))
        hub.start()
        log = hub.log.read_text()
        if how != "lost" and "damaged" in log:
            moved = sorted(store.parent.glob("hub.db.damaged-*"))
            assert moved, f"{what}: the damaged file was not kept"
            assert f"moved the damaged store to {moved[0]}" in log, what
            assert "hub store restore" in log, what
        assert wait_for(lambda: hub.health().get("ok"), f"{what}: the hub to be healthy")

        (after,) = wait_for(lambda: incidents(hub), f"{what}: the incident after the start")
        assert after["id"] == before["id"], f"{what}: the flood was reported again as new"
        assert after["state"] == "active", what
        level(25)  # still flooding: nothing new
        level(3)  # the water goes down: the incident clears and the barrier opens
        wait_for(lambda: controller.state == "open", f"{what}: the barrier to reopen")
        wait_for(
            lambda: [i for i in incidents(hub) if i["state"] == "cleared"],
            f"{what}: the incident to clear",
        )
        assert [i["id"] for i in incidents(hub)] == [before["id"]], what
        closes = [c for c in controller.commands.values() if c["action"] == "close"]
        assert len(closes) == 1, f"{what}: a second close command was sent"
        assert all(n == 1 for n in controller.executed.values()), what
        assert hub.signal(signal.SIGTERM) == 0
    finally:
        gauge.close()
