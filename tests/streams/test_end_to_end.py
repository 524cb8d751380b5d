"""The whole chain on real parts: a camera server streaming over RTSP, a `hub streams` worker
process with the real fall model, a real Mosquitto and InfluxDB, and a `hub run` process
whose flooded-underpass rule fires on a person walking onto the carriageway while the water
is high, and on neither alone.

Two underpasses: at up-1 a person walks onto the carriageway and off again, round and round;
at up-2 the street is empty. Water stays low at up-1 until the hub has seen the person enter
(nothing opens), and is high at up-2 throughout (nothing opens); when the water rises at
up-1 the incident opens there, with the worker's event as its evidence.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.cameras.local import LocalCameras
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    HubProcess,
    Peer,
    api_tokens,
    point,
    service_sections,
    square,
    wait_for,
    write_config,
)
from tests.streams.support import RIGHT_HALF, rtsp_media, still_clip, walking_clip
from tests.streams.test_worker import FACES, FALL_MODEL

pytestmark = pytest.mark.integration

OPERATOR = "e2e-operator-secret"
RULES = """
rules:
  - id: person-in-flooding-underpass
    title: "Person entering flooded {site_name}"
    severity: extreme
    per: site
    sensors: {kind: water_level, site_type: underpass}
    all:
      - {above: 10 cm}
      - camera_event:
          {kinds: [entered, loitering], classes: [person], zones: [carriageway], within: 2m}
"""


def province(walk_url: str, still_url: str) -> dict[str, object]:
    """Two underpasses of one region, each with a gauge in cm and a camera whose carriageway
    is the right part of its picture."""
    zones = [{"id": "carriageway", "polygon": RIGHT_HALF}]
    features: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": square(127.0, 37.25),
            "properties": {"type": "region", "id": "suwon", "name": "Suwon"},
        }
    ]
    for n, url in ((1, walk_url), (2, still_url)):
        lon = 127.01 + n * 0.01
        features += [
            point("site", lon, 37.26, id=f"up-{n}", region="suwon", site_type="underpass"),
            point("sensor", lon, 37.26, id=f"wl-{n}", kind="water_level", region="suwon",
                  site=f"up-{n}", unit="cm", min=0, max=500),
            point("camera", lon, 37.2601, id=f"cam-{n}", region="suwon", site=f"up-{n}",
                  url=url, zones=zones),
        ]  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


@pytest.fixture
def cameras(tmp_path: Path) -> Iterator[LocalCameras]:
    media = rtsp_media(tmp_path, {"walk": walking_clip(tmp_path), "still": still_clip(tmp_path)})
    with LocalCameras(tmp_path / "camera-server", media=media) as server:
        yield server


@pytest.fixture
def config(
    tmp_path: Path,
    cameras: LocalCameras,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> Path:
    if not FALL_MODEL.is_file() or not FACES.is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    site = tmp_path / "site"
    site.mkdir()
    inventory = province(cameras.url("walk"), cameras.url("still"))
    (site / "province.geojson").write_text(json.dumps(inventory))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "underpass.yaml").write_text(RULES)
    return write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid),
        inventory=[str(site)],
        rules=[str(tmp_path / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}", "tokens": api_tokens(OPERATOR, "unused")},
        data_dir=str(tmp_path / "var"),
        detection={"faces_model": str(FACES)},
        streams={
            "fps": 3,
            "detector": {
                "type": "onnx", "model": str(FALL_MODEL), "names": ["person", "fallen_person"],
                "threads": 1,
            },
            "reconnect_min": "200ms",
            "reconnect_max": "1s",
            "presence": {"keepalive": "2s", "heartbeat": "500ms", "timeout": "3s"},
        },
    )  # fmt: skip


@pytest.fixture
def worker(config: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        with (config.parent / "worker.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "streams", "--id", "w1", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_person_walking_into_a_flooded_underpass_opens_it_and_neither_alone_does(
    config: Path,
    hub_processes: Callable[[Path], HubProcess],
    worker: Callable[[], subprocess.Popen[bytes]],
    mosquitto: LocalMosquitto,
    prefix: str,
    uid: str,
) -> None:
    hub = hub_processes(config)
    hub.start()
    proc = worker()
    sensors = Peer(mosquitto.url, f"gauges-{uid}")

    def reading(sensor: str, value: float) -> None:
        body = json.dumps({"value": value, "ts": time.time()})
        sensors.publish(f"{prefix}/sensors/suwon/{sensor}", body)

    def events(camera: str) -> list[dict[str, Any]]:
        assert proc.poll() is None, (config.parent / "worker.log").read_text()[-3000:]
        found = hub.get(f"/api/camera-events?camera={camera}", OPERATOR)["events"]
        return [e for e in found if e["kind"] == "entered"]

    def incidents() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = hub.get("/api/incidents", OPERATOR)["incidents"]
        return found

    try:
        # High water where nobody walks; low water where someone does.
        reading("wl-2", 40.0)
        reading("wl-1", 3.0)
        wait_for(lambda: hub.metric("hub_readings_accepted_total") >= 2, "the readings", timeout=10)
        (entered, *_) = wait_for(
            lambda: events("cam-1"), "the worker's `entered` at up-1", timeout=90, interval=0.3
        )
        assert (entered["zone"], entered["class"]) == ("carriageway", "person")
        assert incidents() == []
        # The water rises where the person walked in: the rule opens, with their event.
        reading("wl-1", 25.0)
        (incident,) = wait_for(incidents, "the incident at up-1", timeout=15, interval=0.2)
        assert (incident["rule"], incident["site"]) == ("person-in-flooding-underpass", "up-1")
        seen = [e for e in incident["evidence"] if e["kind"] == "camera_event"]
        assert seen
        assert all((e["camera"], e["zone"]) == ("cam-1", "carriageway") for e in seen)
        assert seen[0]["track_id"] in {e["track_id"] for e in events("cam-1")}
        # Still nothing where the water is high and the street empty.
        assert events("cam-2") == []
        assert [i["site"] for i in incidents()] == ["up-1"]
    finally:
        sensors.close()
