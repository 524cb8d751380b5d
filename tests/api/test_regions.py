"""Per-city access: a token with `regions` reads only those regions and acts only in them (a
refusal is a 403, audited); a token without them is the province's and sees everything. A hub
in the test, with a real Mosquitto and InfluxDB."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import running
from hub.config import ConfigError, load_config
from hub.detection.worker import Result
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.helpers import Peer, api_tokens, eventually, point, service_sections, write_config
from tests.helpers import write_site as write_inventory

pytestmark = pytest.mark.integration

SUWON = "suwon-desk-token"  # operator of suwon
GOYANG = "goyang-wall-token"  # viewer of goyang
REFUSED = "token desk-suwon may act in suwon only; bar-9 is in goyang"
RULES = (
    support.FLOOD
    + """
  - id: semi-basement-water
    title: "Water at {site_name}"
    severity: extreme
    sensors: [sw-1]
    trigger: {equals: 1}
    clear: {equals: 0, for: 1s}
"""
)


def _token(name: str, role: str, secret: str, regions: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return {"name": name, "role": role, "sha256": digest, "regions": regions}


def _province() -> dict[str, Any]:
    """The room's province, and a barrier and a camera in goyang."""
    inv = support.province()
    inv["features"] += [
        point(
            "actuator", 126.811, 37.661, id="bar-9", kind="barrier", region="goyang", site="sb-1"
        ),
        point("camera", 126.812, 37.662, id="cam-9", region="goyang", url="rtsp://10.0.0.19/s"),
    ]
    return inv


def _config(tmp_path: Path, services: dict[str, Any], tokens: list[dict[str, Any]]) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "flood.yaml").write_text(RULES)
    return write_config(
        tmp_path / "hub.yaml",
        **services,
        inventory=[str(write_inventory(tmp_path / "site", _province()))],
        rules=[str(tmp_path / "rules")],
        data_dir=str(tmp_path / "var"),
        api={"listen": f"127.0.0.1:{free_port()}", "tokens": tokens},
    )


@pytest.fixture
def services(
    mosquitto: LocalMosquitto, influx: LocalInflux, prefix: str, database: str, uid: str
) -> dict[str, Any]:
    return service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms")


@pytest.fixture
async def api(tmp_path: Path, services: dict[str, Any]) -> AsyncIterator[Api]:
    tokens = [
        *api_tokens(OPERATOR, VIEWER),  # desk-1 and wall: the province's
        _token("desk-suwon", "operator", SUWON, ["suwon"]),
        _token("wall-goyang", "viewer", GOYANG, ["goyang"]),
    ]
    config = load_config(_config(tmp_path, services, tokens))
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        async with aiohttp.ClientSession() as session:
            yield Api(hub, f"http://{config.api.listen}", session)


async def _incidents(api: Api, peer: Peer, prefix: str) -> tuple[str, str]:
    """Water in both cities: the ids of suwon's incident and of goyang's."""
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": now - ago}))
    peer.publish(f"{prefix}/sensors/goyang/sw-1", json.dumps({"value": 1, "ts": now}))

    async def both() -> dict[str, str] | None:
        found = {i["region"]: i["id"] for i in (await api.get("/api/incidents"))["incidents"]}
        return found if len(found) == 2 else None

    ids = await eventually(both, "an incident in each city")
    return ids["suwon"], ids["goyang"]


def _regions(items: list[dict[str, Any]]) -> set[str]:
    return {i["region"] for i in items}


async def test_me_tells_the_page_the_tokens_name_role_and_regions(api: Api) -> None:
    assert await api.get("/api/me", OPERATOR) == {
        "name": "desk-1",
        "role": "operator",
        "regions": None,
    }
    assert await api.get("/api/me", VIEWER) == {"name": "wall", "role": "viewer", "regions": None}
    assert await api.get("/api/me", SUWON) == {
        "name": "desk-suwon",
        "role": "operator",
        "regions": ["suwon"],
    }
    assert await api.get("/api/me", GOYANG) == {
        "name": "wall-goyang",
        "role": "viewer",
        "regions": ["goyang"],
    }
    assert (await api.call("GET", "/api/me", "not-a-token"))[0] == 401


async def test_a_city_token_reads_only_its_city(api: Api, sensors: Peer, prefix: str) -> None:
    suwon_incident, goyang_incident = await _incidents(api, sensors, prefix)
    for token, mine in ((SUWON, {"suwon"}), (GOYANG, {"goyang"}), (VIEWER, {"suwon", "goyang"})):
        assert _regions((await api.get("/api/sensors", token))["sensors"]) == mine
        assert _regions((await api.get("/api/cameras", token))["cameras"]) == mine
        assert _regions((await api.get("/api/actuators", token))["actuators"]) == mine
        assert _regions((await api.get("/api/incidents", token))["incidents"]) == mine
        info = await api.get("/api/map", token)
        assert {f["properties"]["id"] for f in info["regions"]["features"]} == mine
        assert _regions(info["sites"]) == mine
        sites = {s["id"]: s["region"] for s in info["sites"]}
        assert {sites.get(a["site"], "-") for a in info["actuators"]} <= mine

    status, body = await api.call("GET", f"/api/incidents/{goyang_incident}", SUWON)
    assert status == 404, body  # as if it did not exist
    assert (await api.get(f"/api/incidents/{suwon_incident}", SUWON))["incident"]["region"] == (
        "suwon"
    )
    assert (await api.get(f"/api/incidents/{goyang_incident}", GOYANG))["incident"]["id"] == (
        goyang_incident
    )
    assert (await api.call("GET", "/api/sensors/sw-1/readings", SUWON))[0] == 404
    # Asking for the other city by name finds nothing, rather than its incidents.
    assert (await api.get("/api/incidents?region=goyang", SUWON))["incidents"] == []


async def test_acts_outside_the_city_are_refused_and_audited(
    api: Api, sensors: Peer, prefix: str
) -> None:
    suwon_incident, goyang_incident = await _incidents(api, sensors, prefix)

    status, body = await api.ack(goyang_incident, token=SUWON)
    assert status == 403
    outside = f"incident {goyang_incident} is in goyang"
    assert body["error"] == f"token desk-suwon may act in suwon only; {outside}"
    got = await api.get(f"/api/incidents/{goyang_incident}", OPERATOR)
    assert got["incident"]["state"] == "active"

    command = {"json": {"command": "close"}}
    status, body = await api.call("POST", "/api/actuators/bar-9/command", SUWON, **command)
    assert (status, body["error"]) == (403, REFUSED)
    path = "/api/actuators/bar-9/commands/c-1/confirm"
    status, body = await api.call("POST", path, SUWON, json={})
    assert (status, body["error"]) == (403, REFUSED)
    assert not api.hub.actuators.commands_list()

    refused = await api.hub.audit.entries(10, {"refused"})
    assert [(e.actor, e.fields.get("region")) for e in refused] == [("desk-suwon", "goyang")] * 3
    assert {e.fields.get("actuator") for e in refused} == {"bar-9", None}
    assert any(e.fields.get("incident_id") == goyang_incident for e in refused)

    # Inside its city the same token acts as before.
    status, body = await api.ack(suwon_incident, token=SUWON)
    assert status == 200, body
    assert body["incident"]["state"] == "acknowledged"
    status, body = await api.call("POST", "/api/actuators/bar-1/command", SUWON, **command)
    assert status == 202, body
    # And the province's operator acts anywhere.
    status, body = await api.ack(goyang_incident, token=OPERATOR)
    assert status == 200, body


async def test_the_audit_trail_shows_a_city_its_own(api: Api, sensors: Peer, prefix: str) -> None:
    suwon_incident, goyang_incident = await _incidents(api, sensors, prefix)
    assert (await api.ack(suwon_incident, token=SUWON))[0] == 200
    assert (await api.ack(goyang_incident, token=OPERATOR))[0] == 200
    api.hub.audit.record("note", "hub", "a province-wide entry")

    def acked(token_entries: list[dict[str, Any]]) -> set[str]:
        return {e["incident_id"] for e in token_entries if e["kind"] == "ack"}

    province = (await api.get("/api/audit", VIEWER))["entries"]
    assert acked(province) == {suwon_incident, goyang_incident}
    assert any(e["kind"] == "note" for e in province)
    suwon = (await api.get("/api/audit", SUWON))["entries"]
    assert acked(suwon) == {suwon_incident}
    assert not any(e["kind"] == "note" for e in suwon)  # no region: the province's only
    goyang = (await api.get("/api/audit", GOYANG))["entries"]
    assert acked(goyang) == {goyang_incident}


async def _read_stream(
    api: Api, token: str, events: list[tuple[str, Any]], ready: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with api.session.get(api.base + "/api/stream", headers=headers) as resp:
        assert resp.status == 200
        name = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                ready.set()


def _seen(events: list[tuple[str, Any]]) -> tuple[set[str], set[str]]:
    """The regions of the incident events and of the sensors announced."""
    incidents = {d["incident"]["region"] for n, d in events if n == "incident"}
    states = {s["region"] for n, d in events if n == "sensors" for s in d["sensors"]}
    return incidents, states


async def test_the_stream_carries_only_the_citys_events(
    api: Api, sensors: Peer, prefix: str
) -> None:
    city: list[tuple[str, Any]] = []
    province: list[tuple[str, Any]] = []
    ready = (asyncio.Event(), asyncio.Event())
    readers = [
        asyncio.create_task(_read_stream(api, SUWON, city, ready[0])),
        asyncio.create_task(_read_stream(api, VIEWER, province, ready[1])),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 10)
        await _incidents(api, sensors, prefix)
        both = ({"suwon", "goyang"}, {"suwon", "goyang"})
        await eventually(lambda: _seen(province) == both, "both cities on the province's stream")
        await eventually(lambda: _seen(city) == ({"suwon"}, {"suwon"}), "suwon's events")
        await asyncio.sleep(1.5)  # a tick of the sensors' announcements more
        assert _seen(city) == ({"suwon"}, {"suwon"})
    finally:
        for reader in readers:
            reader.cancel()


async def test_evidence_of_another_city_is_not_served(api: Api) -> None:
    folder = api.hub.detection.evidence_dir / "2026-07-14"
    folder.mkdir(parents=True)
    for camera in ("cam-1", "cam-9"):
        (folder / f"{camera}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        snapshot = str(folder / f"{camera}.jpg")
        api.hub.detection.results.append(Result(f"j-{camera}", camera, time.time(), [], snapshot))
    for token, mine in ((SUWON, {"cam-1"}), (GOYANG, {"cam-9"}), (VIEWER, {"cam-1", "cam-9"})):
        for camera in ("cam-1", "cam-9"):
            status, _ = await api.call("GET", f"/api/evidence/2026-07-14/{camera}.jpg", token)
            assert status == (200 if camera in mine else 404), (token, camera)


async def test_camera_events_and_their_snapshots_keep_to_the_city(
    api: Api, sensors: Peer, prefix: str
) -> None:
    # As a stream worker writes them: under streams/<day>/, named in the event relative to
    # the evidence folder (docs/streams.md).
    folder = api.hub.detection.evidence_dir / "streams" / "2026-07-14"
    folder.mkdir(parents=True)
    for camera, region in (("cam-1", "suwon"), ("cam-9", "goyang")):
        (folder / f"{camera}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        event = {"event_id": f"e-{camera}", "camera": camera, "kind": "entered",
                 "class": "person", "track_id": 3, "zone": "z", "count": 1, "ts": time.time(),
                 "snapshot": f"streams/2026-07-14/{camera}.jpg"}  # fmt: skip
        sensors.publish(f"{prefix}/camera-events/{region}/{camera}", json.dumps(event))
    await eventually(lambda: len(api.hub.camera_events.latest) == 2, "both events")
    for token, mine in ((SUWON, {"cam-1"}), (GOYANG, {"cam-9"}), (VIEWER, {"cam-1", "cam-9"})):
        listed = (await api.get("/api/camera-events", token))["events"]
        assert {e["camera"] for e in listed} == mine, token
        for e in listed:
            assert e["snapshot_url"] == f"/api/evidence/streams/2026-07-14/{e['camera']}.jpg"
        for camera in ("cam-1", "cam-9"):
            url = f"/api/evidence/streams/2026-07-14/{camera}.jpg"
            status, _ = await api.call("GET", url, token)
            assert status == (200 if camera in mine else 404), (token, camera)


async def test_a_token_naming_an_unknown_region_stops_the_start(
    tmp_path: Path, services: dict[str, Any]
) -> None:
    tokens = [_token("desk-suwn", "operator", SUWON, ["suwn"])]
    config = load_config(_config(tmp_path, services, tokens))
    with pytest.raises(ConfigError) as caught:
        async with running(config, load_inventory(config.inventory)):
            pass
    (problem,) = caught.value.problems
    assert "token 'desk-suwn' names region 'suwn'" in problem.message
    assert "did you mean 'suwon'?" in problem.message
    assert problem.line > 0


async def test_notes_archive_and_timeline_keep_to_the_city(
    api: Api, sensors: Peer, prefix: str
) -> None:
    suwon_incident, goyang_incident = await _incidents(api, sensors, prefix)
    note = {"json": {"text": "crew on the way"}}
    status, body = await api.call("POST", f"/api/incidents/{goyang_incident}/notes", SUWON, **note)
    assert status == 403, body
    status, body = await api.call("POST", f"/api/incidents/{goyang_incident}/archive", SUWON)
    assert status == 403, body
    status, _ = await api.call("GET", f"/api/incidents/{goyang_incident}/timeline", SUWON)
    assert status == 404
    status, _ = await api.call("POST", f"/api/incidents/{suwon_incident}/notes", SUWON, **note)
    assert status == 201
    timeline = (await api.get(f"/api/incidents/{suwon_incident}/timeline", SUWON))["timeline"]
    assert "crew on the way" in [e.get("text") for e in timeline]
    status, _ = await api.call("GET", f"/api/incidents/{goyang_incident}/timeline", GOYANG)
    assert status == 200


async def test_the_export_keeps_to_the_city(api: Api, sensors: Peer, prefix: str) -> None:
    suwon_incident, goyang_incident = await _incidents(api, sensors, prefix)

    async def exported(token: str) -> set[str]:
        headers = {"Authorization": f"Bearer {token}"}
        url = api.base + "/api/export/incidents.csv?from=1h"
        async with api.session.get(url, headers=headers) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode("utf-8-sig")
        return {line.split(",", 1)[0] for line in text.splitlines()[1:]}

    assert await exported(VIEWER) == {suwon_incident, goyang_incident}
    assert await exported(SUWON) == {suwon_incident}
    assert await exported(GOYANG) == {goyang_incident}
