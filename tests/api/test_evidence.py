"""Evidence snapshots over the API: GET /api/evidence/{path} serves files under the evidence
folder to viewers and nothing outside it, and incidents and cameras link their snapshots;
a hub in the test, with a real Mosquitto and InfluxDB."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from yarl import URL

from hub.services import LocalMosquitto
from tests.api import support
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration

# The flood rule of the room's tests, also asking the underpass's camera to look.
FLOOD = support.FLOOD.replace(
    "    actions:\n", "    actions:\n      - detect: {cameras: site, classes: [person]}\n"
)
assert "detect:" in FLOOD
DAY = "2026-07-14"


def jpeg(path: Path) -> bytes:
    """A small JPEG written at `path` (as a worker writes a snapshot); its bytes."""
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[:, :32] = (0, 0, 255)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path.read_bytes()


@pytest.fixture
def peer(mosquitto: LocalMosquitto, uid: str) -> Iterator[Peer]:
    """Sensors' and detector workers' side of the broker."""
    client = Peer(mosquitto.url, f"peer-{uid}")
    yield client
    client.close()


@pytest.fixture
def rules_text() -> str:
    """The room's flood rule, also asking the underpass's camera to look."""
    return FLOOD


async def raw_get(api: Api, path: str, token: str | None = VIEWER) -> tuple[int, str, bytes]:
    """Status, content type and body of `path` sent as it is (no `..` removed on the way)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.session.get(URL(api.base + path, encoded=True), headers=headers) as r:
        return r.status, r.content_type, await r.read()


async def test_a_snapshot_is_served_to_viewers(api: Api) -> None:
    data = jpeg(api.hub.detection.evidence_dir / DAY / "underpass-flood.0_cam-1.jpg")
    path = f"/api/evidence/{DAY}/underpass-flood.0_cam-1.jpg"
    for token in (VIEWER, OPERATOR):
        async with api.session.get(
            api.base + path, headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.headers["Cache-Control"].startswith("private, max-age=")
            assert await r.read() == data

    status, body = await api.call("GET", path, token=None)
    assert status == 401
    assert "Bearer" in body["error"]
    status, body = await api.call("GET", path, token="not-a-token")
    assert (status, body["error"]) == (401, "unknown token")


async def test_nothing_outside_the_evidence_folder(api: Api, tmp_path: Path) -> None:
    evidence = api.hub.detection.evidence_dir
    assert evidence.is_relative_to(tmp_path)
    secret = tmp_path / "secret.jpg"
    jpeg(secret)
    jpeg(evidence / DAY / "inside.jpg")
    (evidence / DAY / "link.jpg").symlink_to(secret)
    (evidence / DAY / "inside.jpg.part").write_bytes(b"half a snapshot")
    depth = len(evidence.relative_to(tmp_path).parts) + 1  # from <evidence>/<day> up to tmp_path
    up = "../" * depth
    for path in (
        f"/api/evidence/{DAY}/{up}secret.jpg",
        f"/api/evidence/{up}{up}secret.jpg",
        f"/api/evidence/{DAY}/{'%2e%2e/' * depth}secret.jpg",
        f"/api/evidence/{secret}",  # absolute: /api/evidence//tmp/.../secret.jpg
        "/api/evidence/" + str(secret).replace("/", "%2F"),
        f"/api/evidence/{DAY}/link.jpg",  # a link that leads out
        f"/api/evidence/{DAY}/inside.jpg.part",  # not a snapshot (yet)
        f"/api/evidence/{DAY}",  # a folder
        "/api/evidence/%00.jpg",
    ):
        status, content_type, body = await raw_get(api, path)
        assert status == 404, path
        assert content_type == "application/json", path
        error = json.loads(body)
        assert error["status"] == 404
        assert error["error"], path
    # The way in that stays inside is fine.
    status, content_type, _ = await raw_get(api, f"/api/evidence/{DAY}/../{DAY}/inside.jpg")
    assert (status, content_type) == (200, "image/jpeg")


async def test_a_missing_snapshot(api: Api) -> None:
    status, body = await api.call("GET", f"/api/evidence/{DAY}/gone.jpg")
    assert status == 404
    assert "no such snapshot" in body["error"]


async def flood(api: Api, peer: Peer, prefix: str) -> Any:
    """The underpass gauge above the flood level: the incident it opens, as the API shows it."""
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20.0, "ts": now - ago}))

    async def opened() -> Any:
        incidents = (await api.get("/api/incidents?state=active"))["incidents"]
        return incidents[0] if incidents else None

    return await eventually(opened, "the flood incident")


async def test_incidents_and_cameras_link_their_snapshots(
    api: Api, peer: Peer, prefix: str
) -> None:
    incident = await flood(api, peer, prefix)
    (detect,) = [a for a in incident["actions"] if a["kind"] == "detect"]
    # A name to quote, as a worker might make of a job id.
    snapshot = api.hub.detection.evidence_dir / DAY / "flood cam-1#1.jpg"
    data = jpeg(snapshot)
    result = {
        "job_id": f"{detect['id']}:cam-1",
        "camera_id": "cam-1",
        "ts": time.time(),
        "detections": [{"class": "person", "score": 0.9, "box": [1, 2, 30, 40]}],
        "snapshot": str(snapshot),
    }
    peer.publish(f"{prefix}/detect/results/cam-1", json.dumps(result))

    async def evidence() -> Any:
        found = (await api.get(f"/api/incidents/{incident['id']}"))["incident"]["evidence"]
        return [e for e in found if e.get("kind") == "detection"]

    (item,) = await eventually(evidence, "the snapshot in the incident's evidence")
    url = f"/api/evidence/{DAY}/flood%20cam-1%231.jpg"
    assert item["snapshot"] == str(snapshot)  # as the contract has it
    assert item["snapshot_url"] == url
    (listed,) = (await api.get("/api/incidents"))["incidents"]
    assert listed["evidence"][-1]["snapshot_url"] == url
    (camera,) = (await api.get("/api/cameras"))["cameras"]
    assert (camera["id"], camera["snapshot"], camera["snapshot_url"]) == (
        "cam-1",
        str(snapshot),
        url,
    )
    status, content_type, body = await raw_get(api, url)
    assert (status, content_type, body) == (200, "image/jpeg", data)


async def test_snapshots_elsewhere_have_no_url(api: Api, peer: Peer, prefix: str) -> None:
    incident = await flood(api, peer, prefix)
    outside = str(api.hub.detection.evidence_dir.parent / "elsewhere" / "x.jpg")
    for n, snapshot in enumerate(("http://10.0.0.9/snapshot.jpg", outside)):
        result = {
            "job_id": f"other-{n}:cam-1",
            "camera_id": "cam-1",
            "ts": time.time(),
            "detections": [],
            "snapshot": snapshot,
        }
        peer.publish(f"{prefix}/detect/results/cam-1", json.dumps(result))

    async def evidence() -> Any:
        found = (await api.get(f"/api/incidents/{incident['id']}"))["incident"]["evidence"]
        items = [e for e in found if e.get("kind") == "detection"]
        return items if len(items) == 2 else None

    items = await eventually(evidence, "both results in the incident's evidence")
    assert [e["snapshot"] for e in items] == ["http://10.0.0.9/snapshot.jpg", outside]
    assert all("snapshot_url" not in e for e in items)
    (camera,) = (await api.get("/api/cameras"))["cameras"]
    assert camera["snapshot"] == outside
    assert camera["snapshot_url"] is None
