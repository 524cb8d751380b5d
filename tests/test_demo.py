"""`hub demo` end to end: the example province's config and rules, the sample cameras, a
detection worker and a stream worker it starts itself, and a storm that makes a `detect`
action succeed with blurred evidence and opens the camera-event rule of the underpasses.
The cameras are the session's camera server (the inventory's URLs are pointed at its ports);
Mosquitto and InfluxDB are the session's too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from hub.cameras.media import IMAGES
from hub.detection.privacy import FaceBlurrer
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.cameras.support import LocalCameras
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent
VIEWER = "demo-viewer-token"


def example_copy(tmp_path: Path, cameras: LocalCameras) -> Path:
    """hub.yaml and site/ of the example province, cameras on the session's camera server."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "site", site)
    text = (site / "cameras.geojson").read_text()
    text = text.replace("127.0.0.1:8554", f"127.0.0.1:{cameras.rtsp_port}")
    text = text.replace("127.0.0.1:8555", f"127.0.0.1:{cameras.http_port}")
    (site / "cameras.geojson").write_text(text)
    config = yaml.safe_load((ROOT / "hub.yaml").read_text())
    config["inventory"] = [str(site)]
    config["rules"] = [str(ROOT / "rules")]
    detection = config["detection"]
    detection["detector"]["model"] = str(ROOT / detection["detector"]["model"])
    detection["faces_model"] = str(ROOT / detection["faces_model"])
    streams = config["streams"]["detector"]
    streams["model"] = str(ROOT / streams["model"])
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def demo(
    tmp_path: Path, mosquitto: LocalMosquitto, influx: LocalInflux, local_cameras: LocalCameras
) -> Iterator[str]:
    """A `hub demo` process at speed 60; its page's address."""
    listen = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "-c", str(example_copy(tmp_path, local_cameras)),
         "--speed", "60", "--listen", listen, "--mqtt", mosquitto.url, "--influx", influx.url],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
    )  # fmt: skip
    try:
        yield f"http://{listen}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print((tmp_path / "demo.log").read_text()[-3000:])


def get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {VIEWER}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        data = resp.read()
        return (
            json.loads(data)
            if resp.headers["Content-Type"].startswith("application/json")
            else data
        )


def test_the_demo_storm_ends_in_a_detection_with_blurred_evidence(demo: str) -> None:
    start = time.monotonic()

    def evidence() -> list[dict[str, Any]]:
        try:
            incidents = get(f"{demo}/api/incidents")["incidents"]
        except OSError:
            return []  # not serving yet
        return [
            item
            for incident in incidents
            for item in incident.get("evidence", [])
            if item.get("kind") == "detection" and item.get("snapshot_url")
        ]

    # The underpass gauges pass 15 cm about 4 s into the storm, and the rule waits 30 s.
    items = wait_for(evidence, "detection evidence from the demo's detector", timeout=120)
    item = items[0]
    assert item["counts"].get("person", 0) >= 1, item
    jpeg = get(demo + item["snapshot_url"])
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert FaceBlurrer(IMAGES.parent / "faces" / "centerface.onnx").faces(image) == []

    def done() -> list[dict[str, Any]]:
        return [
            action
            for incident in get(f"{demo}/api/incidents")["incidents"]
            for action in incident["actions"]
            if action["kind"] == "detect" and action["status"] == "done"
        ]

    # Once every camera of the action has answered, the action is done (none failed).
    wait_for(done, "a detect action done", timeout=60)
    assert time.monotonic() - start < 180


def test_the_demo_stream_worker_sees_people_walk_onto_the_flooding_carriageway(demo: str) -> None:
    def seen() -> list[dict[str, Any]]:
        try:
            events = get(f"{demo}/api/camera-events?kind=entered")["events"]
        except OSError:
            return []  # not serving yet
        return [e for e in events if e["class"] == "person" and e.get("snapshot_url")]

    (event, *_) = wait_for(seen, "a person entering a zone, from the stream worker", timeout=90)
    assert event["zone"] == "carriageway"
    jpeg = get(demo + event["snapshot_url"])
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert FaceBlurrer(IMAGES.parent / "faces" / "centerface.onnx").faces(image) == []

    def warned() -> list[dict[str, Any]]:
        return [
            i
            for i in get(f"{demo}/api/incidents")["incidents"]
            if i["rule"] == "person-in-flooding-underpass"
        ]

    # The storm floods the underpasses where the sample clips' people walk: the sign warns.
    (incident, *_) = wait_for(warned, "the person-in-flooding-underpass incident", timeout=120)
    assert any(e["kind"] == "camera_event" for e in incident["evidence"])
