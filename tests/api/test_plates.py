"""The plate watch-list on a running hub (real Mosquitto and InfluxDB): operators list, add and
remove plates, each change audited and kept across a restart; viewers and city desks may not
change it; bad bodies get a 400 that says why; the workers get the list retained as keyed
digests; a plate event opens the wanted-vehicle incident, and one of a plate not listed is
dropped."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.plates.listed import Listed
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER, hub_config
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration

SECRET = "the province's plate secret, 32+"
CITY = "suwon-desk-token"
RULE = """
rules:
  - id: wanted-vehicle-seen
    title: "Wanted vehicle seen in {region_name}"
    severity: severe
    per: region
    sensors: {region: suwon}
    trigger: {camera_event: {kinds: [plate], within: 30m, cameras: region}}
    actions:
      - notify: {channels: [situation-room]}
"""
WATCHLIST = "/api/plates/watchlist"


def _config(tmp_path: Path, mosquitto: LocalMosquitto, influx: LocalInflux, prefix: str,
            database: str, uid: str, listen: str) -> Path:  # fmt: skip
    city = {"name": "suwon-desk", "role": "operator", "regions": ["suwon"],
            "sha256": hashlib.sha256(CITY.encode()).hexdigest()}  # fmt: skip
    path = hub_config(
        tmp_path, mosquitto.url, influx.url, prefix, database, uid, listen,
        extra_tokens=[city], plates={"secret": SECRET},
    )  # fmt: skip
    (tmp_path / "rules" / "flood.yaml").write_text(RULE)
    return path


@pytest.fixture
async def api(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> AsyncIterator[Api]:
    listen = f"127.0.0.1:{free_port()}"
    config = load_config(_config(tmp_path, mosquitto, influx, prefix, database, uid, listen))
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        async with aiohttp.ClientSession() as session:
            yield Api(hub, f"http://{listen}", session)


async def _add(api: Api, token: str = OPERATOR, **body: Any) -> tuple[int, Any]:
    return await api.call("POST", WATCHLIST, token, json=body)


async def _audit(api: Api) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await api.get("/api/audit?kind=watchlist", OPERATOR))[
        "entries"
    ]
    return entries


async def test_operators_list_add_and_remove_plates_each_change_audited(
    api: Api, mosquitto: LocalMosquitto, prefix: str, uid: str
) -> None:
    status, body = await _add(api, plate="123가 4567", reason="stolen 2026-07-13, case 4411")
    assert status == 201, body
    assert body["entry"]["plate"] == "123가4567"
    assert body["entry"]["added_by"] == "desk-1"
    status, body = await _add(api, plate="45나-6789", reason="hit and run", until="7d")
    assert status == 201, body
    assert body["entry"]["until"] == pytest.approx(time.time() + 7 * 86400, abs=60)
    listed = (await api.get(WATCHLIST, OPERATOR))["entries"]
    assert [e["plate"] for e in listed] == ["123가4567", "45나6789"]

    # The workers' copy: retained, digests only, which the secret's holders can match.
    peer = Peer(mosquitto.url, f"worker-{uid}")
    try:
        peer.subscribe(f"{prefix}/plates/watchlist")
        await eventually(lambda: peer.received, "the retained watch-list")
        payload = peer.received[-1][1]
        assert "123가4567".encode() not in payload
        assert "가".encode() not in payload
        copy = Listed(SECRET.encode())
        copy.update(payload)
        assert copy.match("123가4567")
        assert copy.match("45나6789")
        assert not copy.match("12가3456")

        status, body = await api.call(
            "DELETE", f"{WATCHLIST}/45나6789", OPERATOR, json={"reason": "found"}
        )
        assert status == 200, body
        assert body["removed"]["plate"] == "45나6789"

        def without_it() -> bool:
            copy.update(peer.received[-1][1])
            return not copy.match("45나6789")

        await eventually(without_it, "the list without 45나6789")
        assert copy.match("123가4567")
    finally:
        peer.close()
    assert [e["plate"] for e in (await api.get(WATCHLIST, OPERATOR))["entries"]] == ["123가4567"]
    audit = await _audit(api)
    acts = sorted((e["action"], e["plate"], e["actor"], e.get("reason")) for e in audit)
    assert acts == [
        ("add", "123가4567", "desk-1", "stolen 2026-07-13, case 4411"),
        ("add", "45나6789", "desk-1", "hit and run"),
        ("remove", "45나6789", "desk-1", "found"),
    ]


async def test_the_list_outlives_a_restart(
    tmp_path: Path, mosquitto: LocalMosquitto, influx: LocalInflux, prefix: str, database: str,
    uid: str,
) -> None:  # fmt: skip
    listen = f"127.0.0.1:{free_port()}"
    config = load_config(_config(tmp_path, mosquitto, influx, prefix, database, uid, listen))
    for restart in (False, True):
        async with running(config, load_inventory(config.inventory)) as hub:
            await hub.mqtt.wait_connected(10)
            async with aiohttp.ClientSession() as session:
                api = Api(hub, f"http://{listen}", session)
                if not restart:
                    assert (await _add(api, plate="12가3456", reason="stolen"))[0] == 201
                else:
                    entries = (await api.get(WATCHLIST, OPERATOR))["entries"]
                    assert [(e["plate"], e["reason"]) for e in entries] == [("12가3456", "stolen")]


async def test_viewers_and_city_desks_may_not_change_it(api: Api) -> None:
    for method, path in (("GET", WATCHLIST), ("POST", WATCHLIST),
                         ("DELETE", f"{WATCHLIST}/12가3456")):  # fmt: skip
        status, body = await api.call(method, path, VIEWER, json={"plate": "12가3456"})
        assert status == 403, (method, body)
        assert "operator" in body["error"]
    status, body = await _add(api, CITY, plate="12가3456", reason="stolen")
    assert status == 403, body
    assert "suwon" in body["error"]
    assert (await api.get(WATCHLIST, OPERATOR))["entries"] == []
    refused = (await api.get("/api/audit?kind=refused", OPERATOR))["entries"]
    assert [e["actor"] for e in refused] == ["suwon-desk"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reason": "stolen"}, "'plate' is missing"),
        ({"plate": "12345678", "reason": "stolen"}, "is not a plate"),
        ({"plate": "12가3456"}, "'reason' is missing"),
        ({"plate": "12가3456", "reason": "  "}, "'reason' is missing"),
        ({"plate": "12가3456", "reason": "x", "colour": "red"}, "unknown keys ['colour']"),
        ({"plate": "12가3456", "reason": "x", "until": "2020-01-01T00:00:00Z"}, "has passed"),
        ({"plate": "12가3456", "reason": "x", "until": "soon"}, "cannot read 'soon'"),
        ({"plate": "12가3456", "reason": "x", "until": "2030-01-01T00:00:00"}, "no time zone"),
        ({"plate": "12가3456", "reason": "x", "until": 5}, "RFC 3339 time"),
    ],
)
async def test_bad_bodies_get_a_400_that_says_why(
    api: Api, body: dict[str, Any], message: str
) -> None:
    status, answer = await _add(api, **body)
    assert status == 400, answer
    assert message in answer["error"]
    assert (await api.get(WATCHLIST, OPERATOR))["entries"] == []


async def test_removing_a_plate_not_listed_is_a_404(api: Api) -> None:
    status, body = await api.call("DELETE", f"{WATCHLIST}/12가3456", OPERATOR)
    assert status == 404, body
    status, body = await api.call("DELETE", f"{WATCHLIST}/nonsense", OPERATOR)
    assert status == 400, body


def _plate_event(plate: str) -> bytes:
    return json.dumps({
        "event_id": str(uuid.uuid4()), "camera": "cam-1", "kind": "plate", "class": "car",
        "score": 0.93, "track_id": 4, "ts": time.time(), "plate": plate,
        "snapshot": "streams/2026-07-14/cam-1-x.jpg",
    }).encode()  # fmt: skip


async def test_a_listed_plate_opens_the_incident_and_one_not_listed_is_dropped(
    api: Api, sensors: Peer, prefix: str
) -> None:
    assert (await _add(api, plate="123가4567", reason="stolen"))[0] == 201
    topic = f"{prefix}/camera-events/suwon/cam-1"
    sensors.publish(topic, _plate_event("45나6789"))  # a worker's stale list
    sensors.publish(topic, _plate_event("123가4567"))

    async def opened() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await api.get("/api/incidents"))["incidents"]
        return [i for i in found if i["rule"] == "wanted-vehicle-seen"]

    incident = (await eventually(opened, "the wanted-vehicle incident"))[0]
    assert incident["region"] == "suwon"
    evidence = [e for e in incident["evidence"] if e.get("event") == "plate"]
    assert [(e["plate"], e["camera"], e["snapshot"]) for e in evidence] == [
        ("123가4567", "cam-1", "streams/2026-07-14/cam-1-x.jpg")
    ]
    events = (await api.get("/api/camera-events?kind=plate"))["events"]
    assert [e["plate"] for e in events] == ["123가4567"]
