"""Helpers for tests: InfluxDB queries, and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho

from hub.app import Hub, running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import free_port

T = TypeVar("T")


def influx_query(url: str, database: str, query: str) -> list[dict[str, object]]:
    """Run an InfluxQL query and return the rows of the first series as dicts."""
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as resp:
        body = json.load(resp)
    result = body["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxDB: {result['error']} in {query!r}")
    rows: list[dict[str, object]] = []
    for series in result.get("series", []):
        tags = series.get("tags", {})
        for values in series["values"]:
            rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
    return rows


def influx_write(url: str, database: str, lines: bytes) -> None:
    """Create `database` and write line protocol to it. Right after CREATE DATABASE, InfluxDB
    1.6 may still answer a write with 404 (database not found) for a moment: tried again."""
    create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'})
    urllib.request.urlopen(f"{url}/query?{create}", data=b"", timeout=10).close()

    def written() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/write?db={database}", lines, timeout=10) as resp:
                return resp.status in (200, 204)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    wait_for(written, f"InfluxDB to take a write into the new database {database}", timeout=10)


def wait_for(check: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
        last = check()
    return last


async def eventually(
    check: Callable[[], T | Awaitable[T]], what: str, timeout: float = 15.0, interval: float = 0.02
) -> T:
    """Async twin of `wait_for`, for tests whose hub runs on the same event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        last = await result if isinstance(result, Awaitable) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def aquery(url: str, database: str, query: str) -> list[dict[str, object]]:
    """`influx_query` off the event loop."""
    return await asyncio.to_thread(influx_query, url, database, query)


# -- an independent MQTT peer ---------------------------------------------------------------


class Peer:
    """A paho-mqtt client standing in for sensors, gateways and listeners.

    paho is a separate implementation from the hub's own client, so tests do not grade the
    hub's MQTT code with itself. Its network loop runs in a thread; received messages are
    appended to `received` as (topic, payload) pairs.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        clean: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.received: list[tuple[str, bytes]] = []
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=paho.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)  # queue without limit while disconnected
        self._client.reconnect_delay_set(0.05, 0.5)
        self._client.on_message = lambda _c, _u, msg: self.received.append((msg.topic, msg.payload))
        self._subscribed: list[tuple[str, int]] = []
        self._client.on_connect = lambda c, _u, _f, _rc, _p: [
            c.subscribe(t, q) for t, q in self._subscribed
        ]
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=5)
        self._client.loop_start()
        wait_for(self._client.is_connected, f"{client_id} to connect to {url}")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._subscribed.append((topic, qos))
        result, _mid = self._client.subscribe(topic, qos)
        assert result == 0, f"subscribe {topic}: paho result {result}"

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False
    ) -> object:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def all_sent(self) -> bool:
        """Whether every QoS 1 message has been acknowledged by the broker."""
        return len(self._client._out_messages) == 0

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


# -- a small province -----------------------------------------------------------------------


def point(feature_type: str, lon: float, lat: float, **props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"type": feature_type, **props},
    }


def square(lon: float, lat: float, size: float = 0.1) -> dict[str, object]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def small_province() -> dict[str, object]:
    """Two regions, an underpass with a gauge in cm, a rain gauge and a flood switch."""
    features: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": square(127.0, 37.25),
            "properties": {"type": "region", "id": "suwon", "name": "Suwon"},
        },
        {
            "type": "Feature",
            "geometry": square(126.8, 37.65),
            "properties": {"type": "region", "id": "goyang", "name": "Goyang"},
        },
        point("site", 127.01, 37.26, id="up-1", region="suwon", site_type="underpass"),
        point("site", 126.81, 37.66, id="sb-1", region="goyang", site_type="semi_basement"),
        point(
            "sensor",
            127.01,
            37.26,
            id="wl-1",
            kind="water_level",
            region="suwon",
            site="up-1",
            unit="cm",
            min=0,
            max=500,
        ),
        point("sensor", 127.02, 37.27, id="rain-1", kind="rain_rate", region="suwon"),
        point(
            "sensor", 126.81, 37.66, id="sw-1", kind="flood_switch", region="goyang", site="sb-1"
        ),
    ]
    features.extend(
        point(
            "sensor",
            127.0 + i * 0.001,
            37.3,
            id=f"wl-{i}",
            kind="water_level",
            region="suwon",
            unit="m",
        )
        for i in range(100, 200)
    )
    return {"type": "FeatureCollection", "features": features}


def write_site(folder: Path, inventory: dict[str, object] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "province.geojson"
    path.write_text(json.dumps(inventory or small_province()))
    return folder


def service_sections(
    mqtt_url: str, influx_url: str, prefix: str, database: str, uid: str, **influx: object
) -> dict[str, dict[str, object]]:
    """The `mqtt` and `influx` sections of a test's hub.yaml: its own prefix, client id and
    database, and quick reconnects."""
    return {
        "mqtt": {
            "url": mqtt_url,
            "client_id": f"hub-{uid}",
            "prefix": prefix,
            "reconnect_min": "50ms",
            "reconnect_max": "500ms",
        },
        "influx": {"url": influx_url, "database": database, **influx},
    }


def api_tokens(operator: str, viewer: str) -> list[dict[str, str]]:
    """`api.tokens` for an operator `desk-1` and a viewer `wall` with these secrets."""
    return [
        {
            "name": "desk-1",
            "role": "operator",
            "sha256": hashlib.sha256(operator.encode()).hexdigest(),
        },
        {"name": "wall", "role": "viewer", "sha256": hashlib.sha256(viewer.encode()).hexdigest()},
    ]


def write_config(path: Path, **sections: dict[str, object] | str | list[str]) -> Path:
    """Write a hub.yaml; JSON is YAML, so the loader reads it as an engineer's file."""
    path.write_text(json.dumps(sections, indent=2))
    return path


# -- the hub as a process -------------------------------------------------------------------


class HubProcess:
    """`python -m hub run` with a config of the test's own."""

    def __init__(self, config: Path, listen: str, log: Path) -> None:
        self.config = config
        self.listen = listen
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_config(cls, config: Path) -> HubProcess:
        """The hub of a test's hub.yaml (JSON, from `write_config`), logging beside it."""
        listen = json.loads(config.read_text())["api"]["listen"]
        return cls(config, listen, config.parent / "hub.log")

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start the hub and wait until it is connected; `env` adds environment variables."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env} if env else None,
            )
        wait_for(lambda: self.health().get("mqtt_connected"), "the hub to connect", timeout=30)

    def health(self) -> dict[str, object]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hub exited {self.proc.returncode}: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{self.listen}/api/health", timeout=2) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:
            return dict(json.load(exc))
        except OSError:
            return {}

    def get(self, path: str, token: str) -> Any:
        """The JSON an API path answers, read with `token`."""
        request = urllib.request.Request(
            f"http://{self.listen}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)

    def metric(self, name: str) -> float:
        """A metric's value from /metrics, summed over its label sets."""
        total = 0.0
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith((name + " ", name + "{")):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def hub_yaml(
    tmp_path: Path,
    mqtt_url: str,
    influx_url: str,
    prefix: str,
    database: str,
    uid: str,
    *,
    influx: Mapping[str, object] | None = None,
    site: dict[str, object] | None = None,
    **sections: Any,
) -> Path:
    """A test's hub.yaml: its own topics, client id, database and data folder, the small
    province (or `site`), the API on a free port, and the other `sections` given."""
    base: dict[str, Any] = {
        **service_sections(mqtt_url, influx_url, prefix, database, uid, **(influx or {})),
        "inventory": [str(write_site(tmp_path / "site", site))],
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "data_dir": str(tmp_path / "var"),
    }
    return write_config(tmp_path / "hub.yaml", **{**base, **sections})


@contextlib.asynccontextmanager
async def hub_in_process(config: Path) -> AsyncIterator[Hub]:
    """The hub of `config` on this test's event loop, once it is connected to the broker."""
    loaded = load_config(config)
    async with running(loaded, load_inventory(loaded.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        yield hub


async def readings_stored_are(influx_url: str, database: str, want: int) -> bool:
    """Whether InfluxDB holds `want` readings; fails at once if it holds more (a reading
    stored twice), and says False while it does not answer."""
    try:
        rows = await aquery(influx_url, database, "SELECT count(value) FROM reading")
    except OSError:
        return False
    got = int(str(rows[0]["count"])) if rows else 0
    assert got <= want, f"{got} readings stored, more than the {want} published"
    return got == want
