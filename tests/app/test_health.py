"""Health tells the truth from the start: an InfluxDB that does not answer when the hub starts
gives 503 at once, before any reading is written, and 200 once it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from hub.app import Hub
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import api_tokens, aquery, eventually, hub_in_process, hub_yaml
from tests.mqtt.support import subscribe_only

pytestmark = pytest.mark.integration


async def _health(hub: Hub) -> tuple[int, dict[str, object]]:
    url = f"http://{hub.config.api.listen}/api/health"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def test_influxdb_down_at_start_is_unhealthy_at_once(
    tmp_path: Path, mosquitto: LocalMosquitto, prefix: str, database: str, uid: str
) -> None:
    influx = LocalInflux(data_dir=tmp_path / "influxdb", port=free_port())  # not started
    config = hub_yaml(tmp_path, mosquitto.url, influx.url, prefix, database, uid)
    try:
        async with hub_in_process(config) as hub:
            status, body = await eventually(lambda: _health(hub), "a health answer", timeout=5)
            assert status == 503, body
            assert body["influx_up"] is False
            assert body["mqtt_connected"] is True

            await asyncio.to_thread(influx.start)

            async def healthy() -> bool:
                return (await _health(hub))[0] == 200

            await eventually(healthy, "health to be 200 once InfluxDB answers", timeout=20)
            # The database the hub could not make at start is made once InfluxDB answers.
            rows = await aquery(influx.url, "_internal", "SHOW DATABASES")
            assert database in {str(r["name"]) for r in rows}
    finally:
        await asyncio.to_thread(influx.stop)


async def test_a_refused_subscription_makes_the_hub_unhealthy(
    tmp_path: Path, influx: LocalInflux, prefix: str, database: str, uid: str
) -> None:
    """The broker lets the hub read sensors but not gateways: health says so, naming both the
    topic filter and the reason, instead of "connected"."""
    broker = subscribe_only(tmp_path / "broker", f"{prefix}/sensors/#")
    broker.start()
    try:
        config = hub_yaml(tmp_path, broker.url, influx.url, prefix, database, uid)
        async with hub_in_process(config) as hub:
            await eventually(lambda: hub.writer.influx_up, "InfluxDB to answer")
            status, body = await _health(hub)
            assert status == 503, body
            refused = body["subscriptions_refused"]
            assert isinstance(refused, dict)
            assert refused.get(f"{prefix}/gateways/+/+") == "0x87 not authorized"
            assert f"{prefix}/sensors/+/+" not in refused
    finally:
        broker.stop()


async def test_health_and_metrics_need_a_token_when_not_public(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    config = hub_yaml(
        tmp_path,
        mosquitto.url,
        influx.url,
        prefix,
        database,
        uid,
        api={
            "listen": f"127.0.0.1:{free_port()}",
            "public": ["cap"],
            "tokens": api_tokens("op-secret", "viewer-secret"),
        },
    )
    async with hub_in_process(config) as hub, aiohttp.ClientSession() as session:
        base = f"http://{hub.config.api.listen}"
        for path in ("/api/health", "/metrics"):
            async with session.get(base + path) as resp:
                assert resp.status == 401, path
            headers = {"Authorization": "Bearer viewer-secret"}
            async with session.get(base + path, headers=headers) as resp:
                assert resp.status in (200, 503), path
