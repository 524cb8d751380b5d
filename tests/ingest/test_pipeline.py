"""Readings through a real Mosquitto into a real InfluxDB, and bad ones onto the dead-letter
topic; InfluxDB and Mosquitto restarts in the middle of a stream lose nothing."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from hub.app import Hub, running
from hub.config import load_config
from hub.ingest.service import Ingest
from hub.ingest.validate import Validator
from hub.inventory import load_inventory
from hub.mqtt import Message
from hub.services import LocalInflux, LocalMosquitto, free_port
from hub.storage import InfluxClient
from tests.helpers import (
    Peer,
    aquery,
    eventually,
    readings_stored_are,
    service_sections,
    write_config,
    write_site,
)

pytestmark = pytest.mark.integration

HubAt = Callable[[LocalMosquitto, LocalInflux], AbstractAsyncContextManager[Hub]]


def make_config(
    tmp_path: Path,
    broker: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    **ingest: object,
) -> Path:
    site = write_site(tmp_path / "site")
    return write_config(
        tmp_path / "hub.yaml",
        **service_sections(
            broker.url, influx.url, prefix, database, uid, flush_interval="50ms", batch_size=500
        ),
        ingest=ingest or {},
        inventory=[str(site)],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
    )


@pytest.fixture
def hub_at(tmp_path: Path, prefix: str, database: str, uid: str) -> HubAt:
    """Start the hub in this process against the given broker and database server."""

    def start(broker: LocalMosquitto, influx: LocalInflux) -> AbstractAsyncContextManager[Hub]:
        config = load_config(make_config(tmp_path, broker, influx, prefix, database, uid))
        return running(config, load_inventory(config.inventory))

    return start


async def test_good_readings_are_stored_and_bad_ones_dead_lettered(
    hub_at: HubAt,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    now = time.time()
    t1, t2, t3 = now - 30, now - 20, now - 10
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t1)))
    good: list[tuple[str, dict[str, object]]] = [
        ("sensors/suwon/wl-1", {"value": 42, "unit": "cm", "ts": iso}),
        ("sensors/suwon/wl-1", {"value": 0.5, "unit": "m", "ts": t2}),
        ("sensors/suwon/rain-1", {"value": 12.5}),
        ("sensors/goyang/sw-1", {"value": 1, "ts": t3}),
        (
            "gateways/suwon/gw-1",
            {
                "readings": [
                    {"sensor": "wl-100", "value": 1.0, "ts": t3},
                    {"sensor": "wl-101", "value": 250, "unit": "cm", "ts": t3},
                    {"sensor": "ghost-9", "value": 1.0, "ts": t3},
                ]
            },
        ),
    ]
    bad: list[tuple[str, bytes, str]] = [
        ("sensors/suwon/wl-1", b'{"value": 1.2', "bad_json"),
        ("sensors/suwon/ghost-1", b'{"value": 1.2}', "unknown_sensor"),
        ("sensors/suwon/wl-1", b'{"value": 3, "unit": "mm/h"}', "bad_unit"),
        ("sensors/suwon/wl-1", b'{"value": NaN}', "bad_value"),
        ("sensors/suwon/wl-1", b'{"value": "high"}', "bad_value"),
        (
            "sensors/suwon/wl-1",
            json.dumps({"value": 1, "ts": now + 86400}).encode(),
            "future_timestamp",
        ),
        (
            "sensors/suwon/wl-1",
            b'{"value": 1, "pad": "' + b"x" * (1 << 20) + b'"}',
            "payload_too_large",
        ),
        ("sensors/suwon/wl-1", b'\xff\xfe{"value": 1}', "not_utf8"),
        ("sensors/goyang/wl-1", b'{"value": 1}', "wrong_region"),
        ("sensors/suwon/wl-1", b'{"value": 900, "unit": "cm"}', "out_of_range"),
    ]
    async with hub_at(mosquitto, influx) as hub:
        await hub.mqtt.wait_connected(10)
        listener = Peer(mosquitto.url, f"listener-{uid}")
        listener.subscribe(f"{prefix}/deadletter")
        sensor = Peer(mosquitto.url, f"sensor-{uid}")
        try:
            for topic, body in good:
                sensor.publish(f"{prefix}/{topic}", json.dumps(body))
            for topic, payload, _ in bad:
                sensor.publish(f"{prefix}/{topic}", payload)

            rows = await eventually(
                lambda: _rows_if(aquery(influx.url, database, "SELECT * FROM reading"), 6),
                "6 good readings in InfluxDB",
            )
            letters = await eventually(
                lambda: len(listener.received) >= 11 and listener.received,
                "11 dead letters (10 messages and one gateway reading)",
            )
            async with aiohttp.ClientSession() as http:
                listen = hub.config.api.listen
                async with http.get(f"http://{listen}/metrics") as resp:
                    exposition = await resp.text()
        finally:
            sensor.close()
            listener.close()

    stored = {(r["sensor"], r["value"]) for r in rows}
    assert stored == {
        ("wl-1", 0.42),
        ("wl-1", 0.5),
        ("rain-1", 12.5),
        ("sw-1", 1.0),
        ("wl-100", 1.0),
        ("wl-101", 2.5),
    }
    by_sensor = {r["sensor"]: r for r in rows}
    assert by_sensor["wl-1"]["kind"] == "water_level"
    assert by_sensor["wl-1"]["region"] == "suwon"
    assert by_sensor["wl-1"]["site"] == "up-1"
    assert {r["time"] for r in rows if r["sensor"] == "wl-1"} == {
        int(t1) * 10**9,
        round(t2 * 1e6) * 1000,
    }

    reasons = [json.loads(payload) for _, payload in letters]
    got = sorted((d["topic"].removeprefix(prefix + "/"), d["reason"]) for d in reasons)
    want = sorted([(t, r) for t, _, r in bad] + [("gateways/suwon/gw-1", "unknown_sensor")])
    assert got == want
    for letter in reasons:
        assert letter["error"], letter
        assert len(letter["payload"]) <= 4 * 1024  # first KiB, escaped
    by_reason = {d["reason"]: d["error"] for d in reasons}
    assert "not in the inventory" in by_reason["unknown_sensor"]
    assert "does not fit a water_level" in by_reason["bad_unit"]
    assert "finite" in by_reason["bad_value"] or "number" in by_reason["bad_value"]
    assert "in the future" in by_reason["future_timestamp"]
    assert "bytes" in by_reason["payload_too_large"]
    assert "UTF-8" in by_reason["not_utf8"]
    assert "region 'suwon'" in by_reason["wrong_region"]
    assert 'hub_readings_rejected_total{reason="bad_json"}' in exposition


async def test_a_backlog_without_ts_keeps_every_reading(
    hub_at: HubAt,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    """Readings without `ts` that the broker queued while the hub was away arrive in one batch:
    each is stored, at its own stamp, and the rules see each."""
    async with hub_at(mosquitto, influx) as hub:  # makes the hub's session at the broker
        await hub.mqtt.wait_connected(10)
    sensor = Peer(mosquitto.url, f"sensor-{uid}")
    try:
        for i in range(10):
            sensor.publish(
                f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 0.1 + i / 100, "unit": "m"})
            )
        await eventually(sensor.all_sent, "the broker to hold the backlog")
    finally:
        sensor.close()
    seen: list[int] = []
    async with hub_at(mosquitto, influx) as hub:
        hub.ingest.listeners.insert(0, lambda readings: seen.extend(r.ts_ns for r in readings))
        rows = await eventually(
            lambda: _rows_if(aquery(influx.url, database, "SELECT * FROM reading"), 10),
            "10 readings in InfluxDB",
        )
    assert sorted(round(float(str(r["value"])) * 100) for r in rows) == list(range(10, 20))
    assert len(seen) == 10
    assert all(a < b for a, b in itertools.pairwise(seen)), seen


async def test_a_redelivered_message_is_the_same_readings_again(
    tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    """After a reconnect the broker sends again (DUP) what the hub had not acknowledged: its
    readings keep the stamps they got, so InfluxDB keeps one of each."""
    lines: list[bytes] = []

    class Lines:
        full = False

        def submit(self, body: bytes, count: int, token: object | None = None) -> None:
            lines.append(body)

    ingest = Ingest(
        Validator(load_inventory([write_site(tmp_path / "site")])),
        Lines(),
        publisher=None,  # type: ignore[arg-type]
    )
    first = Message("hub/sensors/suwon/wl-1", b'{"value": 0.5}', qos=1, packet_id=7)
    again = Message("hub/sensors/suwon/wl-1", b'{"value": 0.5}', qos=1, packet_id=7, dup=True)
    fresh = Message("hub/sensors/suwon/wl-1", b'{"value": 0.5}', qos=1, packet_id=8)
    for msg in (first, again, fresh):
        ingest.on_messages([msg])
    assert lines[0] == lines[1], "the redelivery is the same point"
    assert lines[2] != lines[0], "a new message with the same body is a new reading"
    client = InfluxClient(influx.url, database)
    try:
        await client.create_database()
        await client.write(b"".join(lines))
    finally:
        await client.close()
    rows = await aquery(influx.url, database, "SELECT count(value) FROM reading")
    assert rows[0]["count"] == 2


async def _rows_if(rows_coro: object, count: int) -> list[dict[str, object]] | None:
    rows = await rows_coro  # type: ignore[misc]
    return rows if len(rows) >= count else None


def _reading(i: int, base: float) -> tuple[str, bytes]:
    return (
        f"sensors/suwon/wl-{100 + i % 100}",
        json.dumps({"value": i / 1000, "ts": base + i / 1000}).encode(),
    )


async def test_influxdb_down_mid_stream_loses_nothing(
    hub_at: HubAt,
    mosquitto: LocalMosquitto,
    own_influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    base = time.time() - 60
    async with hub_at(mosquitto, own_influx) as hub:
        await hub.mqtt.wait_connected(10)
        sensor = Peer(mosquitto.url, f"sensor-{uid}")
        try:
            for i in range(300):
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            await eventually(
                lambda: readings_stored_are(own_influx.url, database, 300), "300 stored"
            )
            own_influx.stop()
            for i in range(300, 700):
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            await eventually(lambda: hub.writer.spooled_points >= 400, "400 points spooled")
            own_influx.start()
            for i in range(700, 1000):
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            await eventually(
                lambda: readings_stored_are(own_influx.url, database, 1000),
                "1000 stored",
                timeout=60,
            )
        finally:
            sensor.close()
    rows = await aquery(own_influx.url, database, "SELECT value FROM reading")
    assert sorted(round(float(r["value"]) * 1000) for r in rows) == list(range(1000))


async def test_broker_restart_mid_stream_loses_nothing(
    hub_at: HubAt,
    own_mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    base = time.time() - 60
    async with hub_at(own_mosquitto, influx) as hub:
        await hub.mqtt.wait_connected(10)
        sensor = Peer(own_mosquitto.url, f"sensor-{uid}", clean=False)
        try:
            for i in range(300):
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            await eventually(sensor.all_sent, "the first 300 to reach the broker")
            own_mosquitto.stop()
            for i in range(300, 700):  # paho queues these while the broker is away
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            own_mosquitto.start()
            await hub.mqtt.wait_connected(30)
            for i in range(700, 1000):
                sensor.publish(*_with_prefix(prefix, _reading(i, base)))
            await eventually(
                lambda: readings_stored_are(influx.url, database, 1000), "1000 stored", timeout=60
            )
        finally:
            sensor.close()
    rows = await aquery(influx.url, database, "SELECT value FROM reading")
    assert sorted(round(float(r["value"]) * 1000) for r in rows) == list(range(1000))


def _with_prefix(prefix: str, item: tuple[str, bytes]) -> tuple[str, bytes]:
    return f"{prefix}/{item[0]}", item[1]
