"""Live view through the hub: tickets need a viewer token of the camera's region, every view
is audited, an incident's cameras are detection's choice and are warmed as it opens. A hub in
the test, its own relay as a child process, a real camera, Mosquitto and InfluxDB."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.helpers import Peer, api_tokens, eventually, point, service_sections, write_config
from tests.helpers import write_site as write_inventory
from tests.live.support import ffmpeg_pulling

pytestmark = pytest.mark.integration

GOYANG = "goyang-wall-token"  # a viewer of goyang only


def province(camera: str) -> dict[str, Any]:
    """The room's province; its underpass camera is `camera` (with a password in its URL), a
    nearer one looks away from the underpass, and one is in goyang."""
    inv = support.province()
    with_password = camera.replace("rtsp://", "rtsp://admin:hunter2@")
    for feature in inv["features"]:
        if feature["properties"].get("id") == "cam-1":
            feature["properties"]["url"] = with_password
    inv["features"] += [
        point(
            "camera", 127.0101, 37.2601, id="cam-2", region="suwon", url=camera, heading=45, fov=40
        ),
        point("camera", 126.812, 37.662, id="cam-9", region="goyang", url=camera),
    ]
    return inv


@pytest.fixture
async def api(
    tmp_path: Path,
    camera: str,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> AsyncIterator[Api]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(support.FLOOD)
    goyang = {
        "name": "wall-goyang",
        "role": "viewer",
        "sha256": hashlib.sha256(GOYANG.encode()).hexdigest(),
        "regions": ["goyang"],
    }
    path = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_inventory(tmp_path / "site", province(camera)))],
        rules=[str(tmp_path / "rules")],
        data_dir=str(tmp_path / "var"),
        api={
            "listen": f"127.0.0.1:{free_port()}",
            "tokens": [*api_tokens(OPERATOR, VIEWER), goyang],
        },
        live={"idle_after": "5s"},
    )
    config = load_config(path)
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            yield Api(hub, f"http://{config.api.listen}", session)


async def test_a_viewer_gets_a_ticket_and_the_view_is_audited(api: Api) -> None:
    grant = await api.get("/api/cameras/cam-1/live")
    assert grant["camera"] == "cam-1"
    assert "hunter2" not in json.dumps(grant)  # the camera's password stays in the relay
    assert grant["blurred"] is True  # the inventory does not say cam-1 may be shown as is
    async with api.session.get(grant["url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"  # the page is another origin
        head = await resp.content.readexactly(188)
    assert head[0] == 0x47
    entries = (await api.get("/api/audit?kind=live", OPERATOR))["entries"]
    assert [(e["actor"], e["camera"], e["region"]) for e in entries] == [("wall", "cam-1", "suwon")]
    when = datetime.fromisoformat(entries[0]["ts"].replace("Z", "+00:00"))
    assert abs(when.timestamp() - time.time()) < 60


async def test_no_token_no_ticket_and_no_stream(api: Api) -> None:
    for path in ("/api/cameras/cam-1/live", "/api/incidents/x/cameras"):
        status, body = await api.call("GET", path, token=None)
        assert status == 401, path
        assert "send a token" in body["error"]
    status, _ = await api.call("GET", "/api/cameras/cam-1/live", token="not-a-token")
    assert status == 401
    # Another city's camera is as if it were not there.
    status, body = await api.call("GET", "/api/cameras/cam-1/live", token=GOYANG)
    assert (status, body["error"]) == (404, "no camera 'cam-1' in the inventory")
    grant = await api.get("/api/cameras/cam-9/live", GOYANG)
    assert grant["camera"] == "cam-9"
    # The stream itself needs the ticket: without it, or with another camera's, nothing.
    bare, _, _ = grant["url"].partition("?")
    async with api.session.get(bare) as resp:
        assert resp.status == 403
    async with api.session.get(grant["url"].replace("/cam-9.ts", "/cam-1.ts")) as resp:
        assert resp.status == 403
        assert "not for view on camera cam-1" in (await resp.json())["error"]
    entries = (await api.get("/api/audit?kind=live", OPERATOR))["entries"]
    assert [(e["actor"], e["camera"]) for e in entries] == [("wall-goyang", "cam-9")]


async def test_an_opening_incident_brings_and_warms_its_cameras(
    api: Api, sensors: Peer, prefix: str, camera: str
) -> None:
    assert not ffmpeg_pulling(camera)
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        sensors.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": now - ago}))

    async def opened() -> str | None:
        found = (await api.get("/api/incidents"))["incidents"]
        return found[0]["id"] if found else None

    incident = await eventually(opened, "the flood incident")
    cameras = await api.get(f"/api/incidents/{incident}/cameras")
    # Detection's choice: the camera that covers the underpass before a nearer one looking
    # away; goyang's camera is too far.
    assert [c["id"] for c in cameras["cameras"]] == ["cam-1", "cam-2"]
    status, _ = await api.call("GET", f"/api/incidents/{incident}/cameras", token=GOYANG)
    assert status == 404
    # Warmed before anyone watches: the relay pulls both (one upstream each).
    await eventually(lambda: len(ffmpeg_pulling(camera)) == 2, "both cameras warm", timeout=20)
    assert (await api.get("/api/audit?kind=live", OPERATOR))["entries"] == []
