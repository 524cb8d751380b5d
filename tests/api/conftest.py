"""A hub in the test's event loop, and an HTTP client for its API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import Hub, running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api.support import OPERATOR, VIEWER, hub_config
from tests.helpers import Peer


@dataclass
class Api:
    """The running hub and a client session that speaks to its HTTP API."""

    hub: Hub
    base: str
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None = VIEWER, **kwargs: Any
    ) -> tuple[int, Any]:
        """Status and decoded JSON body (None when the body is not JSON)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, None

    async def get(self, path: str, token: str | None = VIEWER) -> Any:
        status, body = await self.call("GET", path, token)
        assert status == 200, (path, status, body)
        return body

    async def ack(self, incident_id: str, token: str = OPERATOR, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/api/incidents/{incident_id}/ack", token, **kwargs)


@pytest.fixture
def sensors(mosquitto: LocalMosquitto, prefix: str, uid: str) -> Iterator[Peer]:
    """Sensors' side of the broker; publish to `{prefix}/sensors/{region}/{id}`."""
    peer = Peer(mosquitto.url, f"sensors-{uid}")
    yield peer
    peer.close()


@pytest.fixture
def rules_text() -> str | None:
    """The hub's rule file; None keeps the room's flood rule. A test module may override it."""
    return None


@pytest.fixture
async def api(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    rules_text: str | None,
) -> AsyncIterator[Api]:
    listen = f"127.0.0.1:{free_port()}"
    path = hub_config(tmp_path, mosquitto.url, influx.url, prefix, database, uid, listen)
    if rules_text is not None:
        (tmp_path / "rules" / "flood.yaml").write_text(rules_text)
    config = load_config(path)
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        async with aiohttp.ClientSession() as session:
            yield Api(hub, f"http://{listen}", session)
