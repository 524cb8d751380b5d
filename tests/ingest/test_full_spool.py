"""InfluxDB down and no room left for the spool, at its cap or on a filesystem that fills: the
hub stops taking messages (the broker holds them), says so in health and metrics, drops
nothing, and stores every reading once InfluxDB is back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hub.app import Hub
from hub.metrics import REGISTRY
from hub.services import LocalInflux, LocalMosquitto
from tests.helpers import (
    Peer,
    aquery,
    eventually,
    hub_in_process,
    hub_yaml,
    readings_stored_are,
)

pytestmark = pytest.mark.integration

READINGS = 3000


def dropped() -> float:
    """Points the hub gave up on, for any reason."""
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "hub_points_dropped"
        for s in m.samples
        if s.name == "hub_points_dropped_total"
    )


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs for the spool, so that the disk under it runs out of space."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def _health(hub: Hub) -> tuple[int, dict[str, object]]:
    url = f"http://{hub.config.api.listen}/api/health"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def _outage_with_no_room(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    **spool: object,
) -> str:
    """Store 200 readings, stop InfluxDB, publish the rest until the spool has no room, start
    InfluxDB again: every reading is stored. Returns why the spool refused."""
    config = hub_yaml(
        tmp_path,
        mosquitto.url,
        influx.url,
        prefix,
        database,
        uid,
        influx={"flush_interval": "50ms", "batch_size": 100, "buffer_points": 300, **spool},
    )
    base = time.time() - 60
    lost = dropped()
    async with hub_in_process(config) as hub:
        sensor = Peer(mosquitto.url, f"sensor-{uid}")
        try:
            for i in range(200):
                sensor.publish(*_reading(prefix, i, base))
            await eventually(lambda: readings_stored_are(influx.url, database, 200), "200 stored")
            await asyncio.to_thread(influx.stop)
            for i in range(200, READINGS):
                sensor.publish(*_reading(prefix, i, base))
            await eventually(
                lambda: hub.writer.spool_refused and not hub.health().taking_readings,
                "the spool to refuse and the hub to stop reading",
                timeout=30,
            )
            status, body = await _health(hub)
            assert status == 503
            assert body["taking_readings"] is False
            assert body["spool_refused"] == hub.writer.spool_refused
            assert REGISTRY.get_sample_value("hub_ingest_paused") == 1
            assert REGISTRY.get_sample_value("hub_spool_full") == 1
            why = str(hub.writer.spool_refused)
            await asyncio.to_thread(influx.start)
            await eventually(
                lambda: readings_stored_are(influx.url, database, READINGS),
                f"{READINGS} stored",
                timeout=90,
            )
            await eventually(lambda: hub.health().ok, "health to be ok again")
            assert REGISTRY.get_sample_value("hub_spool_full") == 0
        finally:
            sensor.close()
    rows = await aquery(influx.url, database, "SELECT value FROM reading")
    assert sorted(round(float(r["value"]) * 1000) for r in rows) == list(range(READINGS))
    assert dropped() == lost
    return why


async def test_a_spool_at_its_cap_holds_messages_at_the_broker(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    own_influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    why = await _outage_with_no_room(
        tmp_path, mosquitto, own_influx, prefix, database, uid, spool_max_mb=0.02
    )
    assert "is full" in why


async def test_a_spool_on_a_disk_that_fills_holds_messages_at_the_broker(
    tmp_path: Path,
    tiny_fs: Path,
    mosquitto: LocalMosquitto,
    own_influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    why = await _outage_with_no_room(
        tmp_path, mosquitto, own_influx, prefix, database, uid, spool_dir=str(tiny_fs)
    )
    assert "No space left on device" in why or "short write" in why


def _reading(prefix: str, i: int, base: float) -> tuple[str, bytes]:
    return (
        f"{prefix}/sensors/suwon/wl-{100 + i % 100}",
        json.dumps({"value": i / 1000, "ts": base + i / 1000}).encode(),
    )
