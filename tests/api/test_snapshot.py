"""`GET /api/cameras/{id}/snapshot`: a fresh JPEG from real cameras (the GStreamer RTSP server
and its HTTP snapshots), faces blurred unless the camera may be shown, a JSON error within the
deadline for a dead one, token and region rules, and an audit entry for every request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from hub.app import Hub, running
from hub.cameras.media import IMAGES
from hub.cameras.snapshot import _without_secrets, cause_of
from hub.config import load_config
from hub.detection.privacy import FaceBlurrer
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.api.support import OPERATOR, VIEWER
from tests.cameras.support import HEIGHT, WIDTH, LocalCameras
from tests.helpers import point, service_sections, write_config, write_site

pytestmark = pytest.mark.integration

FACES = IMAGES.parent / "faces" / "centerface.onnx"
SUWON = "suwon-wall-token"  # a viewer of suwon only
DEADLINE = 6.0  # a first snapshot starts capture processes: 2.5 s on an idle 2-core machine


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word: a hung camera."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _province(cameras: LocalCameras, silent: int, dead: int) -> dict[str, Any]:
    inv = support.province()
    where = {"region": "suwon", "site": "up-1"}
    inv["features"] += [
        point("camera", 127.01, 37.26, id="cam-rtsp", url=cameras.url("people-pan"), **where),
        point(
            "camera", 127.01, 37.26, id="cam-http", url=cameras.snapshot_url("people-pan"), **where
        ),
        point(
            "camera",
            127.01,
            37.26,
            id="cam-open",
            url=cameras.snapshot_url("people-zoom"),
            privacy="public",
            **where,
        ),
        point("camera", 127.01, 37.26, id="cam-hung", url=f"rtsp://127.0.0.1:{silent}/s", **where),
        point("camera", 127.01, 37.26, id="cam-dead", url=f"rtsp://127.0.0.1:{dead}/s", **where),
        point(
            "camera",
            126.81,
            37.66,
            id="cam-goyang",
            url=cameras.url("street-pan"),
            region="goyang",
        ),
    ]
    return inv


class Client:
    def __init__(self, hub: Hub, base: str, session: aiohttp.ClientSession) -> None:
        self.hub, self.base, self.session = hub, base, session

    async def get(self, path: str, token: str | None = VIEWER) -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.base + path, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def audit(self) -> list[dict[str, Any]]:
        async with self.session.get(
            self.base + "/api/audit?kind=snapshot&limit=100",
            headers={"Authorization": f"Bearer {OPERATOR}"},
        ) as resp:
            body = await resp.json()
        entries: list[dict[str, Any]] = body["entries"]
        return entries


@pytest.fixture
async def client(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    local_cameras: LocalCameras,
    silent_port: int,
) -> AsyncIterator[Client]:
    suwon = {
        "name": "suwon-wall",
        "role": "viewer",
        "sha256": hashlib.sha256(SUWON.encode()).hexdigest(),
        "regions": ["suwon"],
    }
    listen = f"127.0.0.1:{free_port()}"
    province = _province(local_cameras, silent_port, free_port())
    path = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid),
        inventory=[str(write_site(tmp_path / "site", province))],
        api={"listen": listen, "tokens": [*support.api_tokens(OPERATOR, VIEWER), suwon]},
        data_dir=str(tmp_path / "var"),
        detection={
            "faces_model": str(FACES),
            "unblurred": ["cam-open"],
            "snapshot": {"deadline": f"{DEADLINE}s"},
        },
    )
    config = load_config(path)
    async with (
        running(config, load_inventory(config.inventory)) as hub,
        aiohttp.ClientSession() as session,
    ):
        yield Client(hub, f"http://{listen}", session)


def decode(body: bytes) -> np.ndarray:  # type: ignore[type-arg]
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, body[:200]
    return image


async def test_a_fresh_picture_from_rtsp_and_http_cameras_with_faces_blurred(
    client: Client,
) -> None:
    faces = FaceBlurrer(FACES)
    for camera in ("cam-rtsp", "cam-http"):
        before = time.time()
        status, headers, body = await client.get(f"/api/cameras/{camera}/snapshot")
        assert status == 200, body[:300]
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Cache-Control"] == "no-store"
        assert before <= float(headers["X-Snapshot-Taken"]) <= time.time()
        image = decode(body)
        assert image.shape == (HEIGHT, WIDTH, 3)
        # The clip shows two faces; the hub blurred them before the picture left it.
        assert int(headers["X-Faces-Blurred"]) >= 1, camera
        assert faces.faces(image) == [], camera


async def test_a_camera_that_may_be_shown_is_not_blurred(client: Client) -> None:
    status, headers, body = await client.get("/api/cameras/cam-open/snapshot")
    assert status == 200, body[:300]
    assert headers["X-Faces-Blurred"] == "unblurred"
    assert len(FaceBlurrer(FACES).faces(decode(body))) >= 1


async def test_a_hung_camera_answers_504_within_the_deadline_while_others_are_served(
    client: Client,
) -> None:
    start = time.monotonic()
    hung = asyncio.create_task(client.get("/api/cameras/cam-hung/snapshot"))
    await asyncio.sleep(0)
    # Meanwhile the hub answers other requests, a snapshot of a live camera among them.
    status, _, _ = await client.get("/api/cameras")
    assert status == 200
    status, _, _ = await client.get("/api/cameras/cam-http/snapshot")
    assert status == 200
    assert not hung.done()
    status, headers, body = await hung
    took = time.monotonic() - start
    assert status == 504
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert error["camera"] == "cam-hung"
    assert error["cause"] == "timeout"
    assert error["error"].startswith("camera cam-hung: ")
    assert took < DEADLINE + 1.5


async def test_a_refused_camera_answers_502_naming_the_cause(client: Client) -> None:
    start = time.monotonic()
    status, _, body = await client.get("/api/cameras/cam-dead/snapshot")
    assert time.monotonic() - start < DEADLINE
    assert status == 502
    assert json.loads(body) == {
        "error": "camera cam-dead: could not open the stream: connection refused",
        "status": 502,
        "camera": "cam-dead",
        "cause": "refused",
    }


async def test_tokens_and_regions(client: Client) -> None:
    assert (await client.get("/api/cameras/cam-rtsp/snapshot", token=None))[0] == 401
    assert (await client.get("/api/cameras/cam-rtsp/snapshot", token="wrong"))[0] == 401
    # A city's token: its own cameras, and none of another city's (as if it were not there).
    assert (await client.get("/api/cameras/cam-http/snapshot", token=SUWON))[0] == 200
    status, _, body = await client.get("/api/cameras/cam-goyang/snapshot", token=SUWON)
    assert status == 404
    assert b"in this token's regions" in body
    assert (await client.get("/api/cameras/cam-goyang/snapshot", token=VIEWER))[0] == 200
    assert (await client.get("/api/cameras/nothing/snapshot"))[0] == 404


async def test_every_request_is_audited(client: Client) -> None:
    await client.get("/api/cameras/cam-http/snapshot", token=SUWON)
    await client.get("/api/cameras/cam-dead/snapshot")
    await client.get("/api/cameras/cam-goyang/snapshot", token=SUWON)
    entries = await client.audit()
    seen = [(e["actor"], e["camera"], e["outcome"]) for e in reversed(entries)]
    assert seen == [
        ("suwon-wall", "cam-http", "ok"),
        ("wall", "cam-dead", "refused"),
        ("suwon-wall", "cam-goyang", "not found"),
    ]
    ok = entries[-1]
    assert ok["kind"] == "snapshot"
    assert ok["region"] == "suwon"
    assert "face(s) blurred" in ok["detail"]
    when = datetime.fromisoformat(ok["ts"].replace("Z", "+00:00")).timestamp()
    assert abs(when - time.time()) < 60


def test_a_reason_never_shows_the_cameras_credentials() -> None:
    url = "rtsp://admin:s3cret@10.0.0.9/stream1"
    reason = "OpenCV: cannot open rtsp://admin:s3cret@10.0.0.9/stream1"
    assert _without_secrets(reason, url) == "OpenCV: cannot open rtsp://***:***@10.0.0.9/stream1"


def test_causes() -> None:
    assert cause_of("no frame within the 5 s deadline") == (504, "timeout")
    assert cause_of("HTTP: timed out") == (504, "timeout")
    assert cause_of("HTTP: connection refused") == (502, "refused")
    assert cause_of("HTTP 404 Not Found") == (502, "not found")
    assert cause_of("could not open the stream: unknown host (Name or service not known)") == (
        502,
        "unknown host",
    )
    assert cause_of("the snapshot is not an image OpenCV can decode (3 bytes)") == (
        502,
        "unreadable",
    )
