"""Camera events from stream workers, taken in by a hub in the test (real Mosquitto and
InfluxDB): the `camera_event` rule fires on a person in the zone with the water high and not
on either alone; bad events are dropped without holding up good ones; a resend counts once;
events are stored, listed by region and streamed."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from hub import metrics
from tests.api.conftest import Api
from tests.api.support import VIEWER
from tests.api.test_room import send
from tests.helpers import Peer, aquery, eventually

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: person-in-flooding-underpass
    title: "Person entering flooded {site_name}"
    severity: extreme
    per: site
    sensors: {kind: water_level, site: up-1}
    all:
      - {above: 10 cm}
      - camera_event: {kinds: [entered], classes: [person], zones: [carriageway], within: 1m}
    actions:
      - notify: {channels: [situation-room]}
"""


@pytest.fixture
def rules_text() -> str:
    return RULES


def event(kind: str = "entered", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "camera": "cam-1",
        "kind": kind,
        "class": "person",
        "score": 0.9,
        "track_id": 7,
        "zone": "carriageway",
        "count": 1,
        "ts": time.time(),
        "snapshot": None,
        **fields,
    }


def publish(peer: Peer, prefix: str, body: dict[str, Any] | bytes, camera: str = "cam-1") -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    peer.publish(f"{prefix}/camera-events/suwon/{camera}", payload)


async def incidents(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api.get("/api/incidents"))["incidents"]
    return found


def _outcome(name: str) -> float:
    return metrics.CAMERA_EVENTS.labels(name)._value.get()


async def test_a_person_in_the_zone_and_high_water_together_open_it(
    api: Api, sensors: Peer, prefix: str
) -> None:
    now = time.time()
    # A person in the zone while the underpass is dry: nothing (and 90 s on, the sighting is
    # older than the rule's `within`).
    send(sensors, prefix, "wl-1", 2.0, now - 91)
    publish(sensors, prefix, event(ts=now - 90))
    await eventually(lambda: len(api.hub.camera_events.latest) == 1, "the first event")
    # Water above 10 cm with nobody in the zone (a car, a person on the footpath): nothing.
    send(sensors, prefix, "wl-1", 12.0, now - 3)
    publish(sensors, prefix, event(ts=now - 2.5, **{"class": "car"}))
    publish(sensors, prefix, event(ts=now - 2, zone="footpath"))
    await eventually(lambda: len(api.hub.camera_events.latest) == 3, "three events")
    assert await incidents(api) == []
    # A person walks into the zone while the water is high: the incident opens.
    publish(sensors, prefix, event(ts=now - 1))
    (incident,) = await eventually(lambda: incidents(api), "the incident")
    assert incident["rule"] == "person-in-flooding-underpass"
    assert incident["site"] == "up-1"
    evidence = [e for e in incident["evidence"] if e["kind"] == "camera_event"]
    assert [(e["camera"], e["zone"], e["track_id"]) for e in evidence] == [
        ("cam-1", "carriageway", 7)
    ]


async def test_bad_events_are_dropped_and_the_good_ones_go_on(
    api: Api, sensors: Peer, prefix: str
) -> None:
    invalid, duplicate = _outcome("invalid"), _outcome("duplicate")
    good = event()
    for bad in (
        b"{not json",
        json.dumps(event(kind="exploded")).encode(),
        json.dumps(event(ts="yesterday")).encode(),
        json.dumps(event(score=7)).encode(),
        json.dumps(event(camera="cam-9")).encode(),
        json.dumps([1, 2]).encode(),
    ):
        publish(sensors, prefix, bad)
    publish(sensors, prefix, event(), camera="no-such-camera")
    publish(sensors, prefix, good)
    publish(sensors, prefix, good)  # a worker's resend of the same event
    await eventually(lambda: _outcome("duplicate") == duplicate + 1, "the resend counted once")
    assert _outcome("invalid") == invalid + 7
    assert [e.fields["event_id"] for e in api.hub.camera_events.latest] == [good["event_id"]]

    listed = (await api.get("/api/camera-events?camera=cam-1", VIEWER))["events"]
    assert [(e["kind"], e["zone"], e["region"]) for e in listed] == [
        ("entered", "carriageway", "suwon")
    ]
    assert listed[0]["ts"].endswith("Z")
    assert (await api.call("GET", "/api/camera-events", token=None))[0] == 401
    assert (await api.call("GET", "/api/camera-events?limit=0"))[0] == 400

    # Stored in InfluxDB's camera_event measurement, tagged for Grafana.
    url, db = api.hub.config.influx.url, api.hub.config.influx.database
    query = (
        'SELECT "count", "track_id", "event_id" FROM "camera_event" WHERE "zone" = \'carriageway\''
    )

    async def stored() -> list[dict[str, Any]] | None:
        try:
            rows = await aquery(url, db, query)
        except OSError:
            return None
        return rows or None

    (row,) = await eventually(stored, "the event in InfluxDB")
    assert (row["count"], row["track_id"], row["event_id"]) == (1, 7, good["event_id"])
