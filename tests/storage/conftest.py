"""Fixtures of the storage tests: a client on this test's database, and a gate, a small HTTP
server in front of InfluxDB that passes requests through, delays them, holds them or answers
an error, standing in for an InfluxDB that is slow or failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.metrics import REGISTRY
from hub.services import LocalInflux, free_port
from hub.storage import InfluxClient, Spool

T0 = 1_780_000_000_000_000_000  # 2026-05-28, the readings' own time in ns


def reading_lines(start: int, n: int, sensor: str = "s-1") -> bytes:
    """`n` readings of one sensor: the i-th has value i and time T0 + i ms."""
    return b"".join(
        b"reading,kind=water_level,region=r1,sensor=%b value=%d.0 %d\n"
        % (sensor.encode(), i, T0 + i * 1_000_000)
        for i in range(start, start + n)
    )


def sample(name: str, **labels: str) -> float:
    """The current value of a metric of the hub's registry (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Gate:
    """A proxy for InfluxDB that the test steers by setting `mode`."""

    upstream: str
    port: int = field(default_factory=free_port)
    mode: str = "pass"  # pass | delay | error | hold
    delay: float = 0.0
    status: int = 503
    writes: list[int] = field(default_factory=list)  # lines in each /write that reached InfluxDB
    bodies: list[bytes] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    arrived: int = 0  # requests seen, whatever became of them
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.arrived += 1
        if "Authorization" in request.headers:
            self.authorization.append(request.headers["Authorization"])
        if self.mode == "error":
            return web.json_response({"error": "overloaded"}, status=self.status)
        if self.mode == "delay":
            await asyncio.sleep(self.delay)
        elif self.mode == "hold":
            await self.release.wait()
        assert self._session is not None
        # aiohttp has already undone the gzip Content-Encoding: forward the plain body.
        headers = {k: v for k, v in request.headers.items() if k == "Content-Type"}
        async with self._session.request(
            request.method,
            self.upstream + request.path,
            params=request.query,
            data=body,
            headers=headers,
        ) as resp:
            answer = await resp.read()
            if request.path == "/write" and resp.status == 204:
                self.writes.append(body.count(b"\n"))
                self.bodies.append(body)
            return web.Response(
                body=answer, status=resp.status, content_type=resp.content_type or None
            )


@pytest.fixture
async def gate(influx: LocalInflux) -> AsyncIterator[Gate]:
    """A Gate in front of the session's InfluxDB."""
    proxy = Gate(influx.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", proxy.port).start()
    async with aiohttp.ClientSession() as session:
        proxy._session = session
        yield proxy
        proxy.release.set()
        await runner.cleanup()


@pytest.fixture
async def client(influx: LocalInflux, database: str) -> AsyncIterator[InfluxClient]:
    """A client on this test's database, which it creates."""
    influx_client = InfluxClient(influx.url, database)
    await influx_client.create_database()
    yield influx_client
    await influx_client.close()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """A spool in this test's folder, without fsync (the tests do not pull the plug)."""
    return Spool(tmp_path / "spool", fsync=False)
