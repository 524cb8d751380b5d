"""The situation room's API against a hub in the test, with a real Mosquitto and InfluxDB."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from hub.rules.keyed import STATE, saved_state
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration

READS = [
    "/api/me",
    "/api/map",
    "/api/sensors",
    "/api/sensors/wl-1/readings",
    "/api/cameras",
    "/api/incidents",
    "/api/incidents/nope",
    "/api/audit",
    "/api/rules",
    "/api/stream",
]


def send(
    peer: Peer, prefix: str, sensor: str, value: float, ts: float, region: str = "suwon"
) -> None:
    peer.publish(f"{prefix}/sensors/{region}/{sensor}", json.dumps({"value": value, "ts": ts}))


async def flood(api: Api, peer: Peer, prefix: str) -> dict[str, Any]:
    """Water at 20 cm for 2 s of the gauge's own time: the flood rule opens an incident."""
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        send(peer, prefix, "wl-1", 20.0, now - ago)

    async def opened() -> Any:
        incidents = (await api.get("/api/incidents?state=active"))["incidents"]
        return incidents[0] if incidents else None

    incident: dict[str, Any] = await eventually(opened, "the flood incident")
    return incident


async def test_every_read_needs_a_token(api: Api) -> None:
    for path in READS:
        status, body = await api.call("GET", path, token=None)
        assert status == 401, path
        assert "Bearer" in body["error"]
        status, body = await api.call("GET", path, token="not-a-token")
        assert (status, body["error"]) == (401, "unknown token"), path


async def test_acknowledging_needs_an_operator(api: Api, sensors: Peer, prefix: str) -> None:
    incident = await flood(api, sensors, prefix)
    status, body = await api.ack(incident["id"], token=None)  # type: ignore[arg-type]
    assert status == 401
    status, body = await api.ack(incident["id"], token=VIEWER)
    assert status == 403
    assert "operator" in body["error"]
    assert (await api.get(f"/api/incidents/{incident['id']}"))["incident"]["state"] == "active"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"reason": "x"}', "unknown keys"),
    ],
)
async def test_malformed_ack_bodies(api: Api, body: str, message: str) -> None:
    status, answer = await api.ack("whatever", data=body)
    assert status == 400
    assert message in answer["error"]


async def test_unknown_incident(api: Api) -> None:
    status, body = await api.ack("no-such-incident")
    assert status == 404
    assert "no-such-incident" in body["error"]
    status, body = await api.call("GET", "/api/incidents/no-such-incident")
    assert status == 404


async def test_flood_to_acknowledgement(api: Api, sensors: Peer, prefix: str) -> None:
    now = time.time()
    send(sensors, prefix, "rain-1", 3.5, now)
    incident = await flood(api, sensors, prefix)
    assert (incident["rule"], incident["subject"], incident["region"]) == (
        "underpass-flood",
        "wl-1",
        "suwon",
    )
    assert incident["opened_at"].endswith("Z")

    by_id = {s["id"]: s for s in (await api.get("/api/sensors"))["sensors"]}
    assert by_id["wl-1"]["state"] == "alarm"
    assert by_id["wl-1"]["incidents"] == [incident["id"]]
    assert (by_id["wl-1"]["value"], by_id["wl-1"]["unit"]) == (0.2, "m")  # canonical unit
    assert by_id["rain-1"]["state"] == "ok"
    assert by_id["sw-1"]["state"] == "unknown"

    # Filters: by state, region and severity, several values at once, and refusals.
    assert len((await api.get("/api/incidents?state=open"))["incidents"]) == 1
    assert (await api.get("/api/incidents?state=cleared"))["incidents"] == []
    assert len((await api.get("/api/incidents?region=suwon,goyang"))["incidents"]) == 1
    assert (await api.get("/api/incidents?region=goyang"))["incidents"] == []
    assert len((await api.get("/api/incidents?severity=severe"))["incidents"]) == 1
    assert (await api.get("/api/incidents?severity=minor,extreme"))["incidents"] == []
    for query, word in (
        ("state=burning", "state"),
        ("region=mars", "region"),
        ("severity=x", "severity"),
    ):
        status, body = await api.call("GET", f"/api/incidents?{query}")
        assert status == 400
        assert f"unknown {word}" in body["error"]

    status, body = await api.ack(incident["id"])
    assert status == 200
    assert body["incident"]["state"] == "acknowledged"
    assert body["incident"]["acked_by"] == "desk-1"
    saved = saved_state(api.hub.store.load(STATE))["engine"]["incidents"]  # type: ignore[index]
    assert [(i["id"], i["acked_by"]) for i in saved] == [(incident["id"], "desk-1")]
    status, again = await api.ack(incident["id"], data="")  # twice: nothing more happens
    assert (status, again["incident"]["acked_by"]) == (200, "desk-1")
    assert len((await api.get("/api/incidents?state=acknowledged"))["incidents"]) == 1

    audit = (await api.get("/api/audit?kind=ack"))["entries"]
    assert audit[0]["actor"] == "desk-1"
    assert audit[0]["incident_id"] == incident["id"]
    assert audit[0]["ts"].endswith("Z")


async def test_an_acknowledgement_is_answered_once_it_is_durable(
    api: Api, sensors: Peer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(sensors, prefix, "wl-1", 30.0, time.time())
    (incident,) = await eventually(
        lambda: api.hub.rules.engine.incidents() or None, "the flood incident"
    )
    gate = asyncio.Event()
    sync = api.hub.store.sync

    async def slow_sync() -> None:
        await gate.wait()  # a disk that takes its time
        await sync()

    monkeypatch.setattr(api.hub.store, "sync", slow_sync)
    answer = asyncio.create_task(api.ack(incident.id))
    try:
        await eventually(
            lambda: api.hub.rules.engine.incident(incident.id).state == "acknowledged",
            "the acknowledgement to reach the rules",
        )
        await asyncio.sleep(0.2)  # the window of this negative check: an answer needs ~10 ms
        assert not answer.done(), "answered before the acknowledgement was durable"
    finally:
        gate.set()  # the hub's drain syncs too
    status, body = await answer
    assert (status, body["incident"]["acked_by"]) == (200, "desk-1")
    saved = saved_state(api.hub.store.load(STATE))["engine"]["incidents"]  # type: ignore[index]
    assert [(i["id"], i["acked_by"]) for i in saved] == [(incident.id, "desk-1")]


async def test_readings_for_the_chart(api: Api, sensors: Peer, prefix: str) -> None:
    now = time.time()
    for i in range(5):
        send(sensors, prefix, "wl-1", 5.0 + i, now - 50 + i * 10)

    async def stored() -> Any:
        rows = (await api.get("/api/sensors/wl-1/readings?since=5m"))["readings"]
        return rows if len(rows) == 5 else None

    rows = await eventually(stored, "five stored readings")
    assert [r["value"] for r in rows] == [0.05, 0.06, 0.07, 0.08, 0.09]  # oldest first, in m
    assert (await api.get("/api/sensors/wl-1/readings?since=15s"))["readings"][-1]["value"] == 0.09
    assert len((await api.get("/api/sensors/wl-1/readings?since=5m&limit=2"))["readings"]) == 2
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 35))
    assert len((await api.get(f"/api/sensors/wl-1/readings?since={iso}"))["readings"]) == 3

    for query, word in (
        ("since=yesterday", "since"),
        ("since=90d", "30d"),
        ("since=200000d", "30d"),
        ("limit=" + "9" * 5000, "limit"),
        ("limit=lots", "limit"),
        ("limit=0", "limit"),
        ("since=2026-01-01T00:00:00", "time zone"),
    ):
        status, body = await api.call("GET", f"/api/sensors/wl-1/readings?{query}")
        assert status == 400, query
        assert word in body["error"], query
    status, body = await api.call("GET", "/api/sensors/nope/readings")
    assert status == 404


async def test_a_sensor_goes_silent(api: Api, sensors: Peer, prefix: str) -> None:
    # Its expected interval is 1 s: a reading 10 s old is three intervals overdue.
    send(sensors, prefix, "fast-1", 1.0, time.time() - 10)

    async def silent() -> Any:
        by_id = {s["id"]: s for s in (await api.get("/api/sensors"))["sensors"]}
        return by_id["fast-1"]["state"] == "silent"

    await eventually(silent, "fast-1 to be silent")


async def test_cameras_hide_credentials(api: Api) -> None:
    cameras = (await api.get("/api/cameras"))["cameras"]
    assert [c["id"] for c in cameras] == ["cam-1"]
    assert cameras[0]["url"] == "rtsp://10.0.0.9/stream1"
    assert cameras[0]["snapshot"] is None


async def test_rules_and_map(api: Api) -> None:
    rules = await api.get("/api/rules")
    assert [r["id"] for r in rules["rules"]] == ["underpass-flood"]
    assert (rules["valid"], rules["errors"]) == (True, [])
    api.hub.rules.reload_problems = ["rules/flood.yaml:3:5: trigger.abvoe: unknown key"]
    rules = await api.get("/api/rules")
    assert (rules["valid"], rules["errors"]) == (False, api.hub.rules.reload_problems)

    info = await api.get("/api/map")
    assert info["tiles"] is None
    assert {f["properties"]["id"] for f in info["regions"]["features"]} == {"suwon", "goyang"}
    assert {a["id"] for a in info["actuators"]} == {"bar-1", "sign-1"}


async def test_the_page_and_its_files_are_served(api: Api) -> None:
    for path in (
        "/",
        "/static/room.js",
        "/static/vendor/leaflet/leaflet.js",
        "/static/vendor/leaflet/leaflet.css",
    ):
        async with api.session.get(api.base + path) as resp:
            assert resp.status == 200, path
    async with api.session.get(api.base + "/") as resp:
        assert "leaflet.js" in await resp.text()


async def test_stream_sends_incidents_and_sensor_states(
    api: Api, sensors: Peer, prefix: str
) -> None:
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    events: list[tuple[str, Any]] = []
    async with api.session.get(api.base + "/api/stream", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"

        async def read() -> None:
            name = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))

        reader = asyncio.create_task(read())
        try:
            await eventually(lambda: any(n == "hello" for n, _ in events), "hello")
            await flood(api, sensors, prefix)

            def seen(kind: str, check: Any) -> bool:
                return any(n == kind and check(d) for n, d in events)

            await eventually(
                lambda: seen("incident", lambda d: d["event"] == "opened"), "the opened event"
            )
            await eventually(
                lambda: seen(
                    "sensors",
                    lambda d: any(
                        s["id"] == "wl-1" and s["state"] == "alarm" for s in d["sensors"]
                    ),
                ),
                "wl-1 announced in alarm",
            )
        finally:
            reader.cancel()


async def test_openapi_describes_every_route(api: Api) -> None:
    status, doc = await api.call("GET", "/api/openapi.json", token=None)  # public
    assert status == 200
    assert doc["openapi"].startswith("3.")
    served = set()
    for route in api.hub.http.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method != "HEAD" and path and not path.startswith("/static"):
            served.add((route.method.lower(), path))
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served <= described, served - described
    ack = doc["paths"]["/api/incidents/{id}/ack"]["post"]
    assert {"400", "401", "403", "404"} <= set(ack["responses"])
