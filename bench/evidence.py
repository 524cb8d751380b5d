"""Evidence latency benchmark: from a water level tripping a rule (the reading published on
MQTT) to the first stored evidence, and to all three cameras' evidence, through a real hub and
detector worker. Not a test: it prints figures.

    .venv/bin/python bench/evidence.py [--trials 5] [--workers 1] [--threads 2] [--frames 10]

Each trial is an underpass of its own, about 900 m from the others, with a water-level gauge
and three cameras 100 m out (south, west and north of it, each looking at it), so the rule's
`detect: {cameras: nearest, count: 3, within: 300 m, classes: [person]}` asks these three
and no other. One reading above the level opens the incident; the hub sends a job per camera;
a worker grabs the frame (a still image file: zidane.jpg, bus.jpg, zidane.jpg), runs the fall
model and the face blurrer, writes the snapshot and publishes the result; the hub adds it to
the incident. As in tests/detection/test_jobs.py, the hub and the workers run in this process
on one event loop (each worker's inference in a thread of its own), against real Mosquitto
and InfluxDB.

Times are from the reading's publish (paho, QoS 1): "frame" is when the worker grabbed the
camera's frame (the result's ts), "snapshot" the snapshot file's modification time, "incident"
when the hub's incident holds the camera's evidence with that snapshot (polled every 5 ms). A
first trial warms up (the capture process may still be starting); it is shown, not counted.
Before each trial every job sent, resent ones included, has been answered. The bare per-frame
cost, one detect plus one face blur of each image with the first worker's own models, is timed
directly in the same run, before the hub starts, for how much of the end-to-end time is
inference.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import numpy.typing as npt
import paho.mqtt.client as paho
from detection import timings  # bench/detection.py: run as a script from bench/
from paho.mqtt.enums import CallbackAPIVersion

from hub.app import Hub, running
from hub.config import ConfigError, HubConfig, load_config
from hub.detection.backends.base import Detector
from hub.detection.backends.registry import load_detector
from hub.detection.capture import CapturePool
from hub.detection.privacy import FaceBlurrer
from hub.detection.worker import DetectorWorker, default_faces_model
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port

MODELS = Path(__file__).resolve().parent.parent / "var" / "models"
FALL = MODELS / "fall" / "best_fp16.onnx"
FACES = MODELS / "faces" / "centerface.onnx"
PREFIX = "hub"
REGION = "bench"
LON0, LAT0 = 127.01, 37.26
SPACING = 0.01  # degrees of longitude between the trials' sites: about 890 m
# 100 m in degrees at this latitude: inside the cameras' 200 m range and the rule's 300 m.
OUT_LAT, OUT_LON = 100 / 111_195, 100 / 88_470
# Name, offset from the site (degrees lon, lat), heading toward the site, image.
CAMERAS = [
    ("s", (0.0, -OUT_LAT), 0, "zidane.jpg"),
    ("w", (-OUT_LON, 0.0), 90, "bus.jpg"),
    ("n", (0.0, OUT_LAT), 180, "zidane.jpg"),
]
RULES = """
rules:
  - id: underpass-flood
    severity: severe
    sensors: {kind: water_level, site_type: underpass}
    trigger: {above: 15 cm}
    actions:
      - detect: {cameras: nearest, count: 3, within: 300 m, classes: [person]}
"""
POLL = 0.005
TIMEOUT = 60.0

Image = npt.NDArray[np.uint8]


def _point(feature: str, lon: float, lat: float, **props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"type": feature, **props},
    }


def inventory(sites: int, frames: Path) -> dict[str, object]:
    """A region with `sites` underpasses, each with a gauge in cm and three covering cameras."""
    west, east = LON0 - 0.01, LON0 + SPACING * sites
    south, north = LAT0 - 0.01, LAT0 + 0.01
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    features: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"type": "region", "id": REGION, "name": "Bench"},
        }
    ]
    for i in range(sites):
        lon = LON0 + i * SPACING
        features.append(
            _point("site", lon, LAT0, id=f"up-{i}", region=REGION, site_type="underpass")
        )
        features.append(
            _point(
                "sensor",
                lon,
                LAT0,
                id=f"wl-{i}",
                kind="water_level",
                region=REGION,
                site=f"up-{i}",
                unit="cm",
            )
        )
        features += [
            _point(
                "camera",
                lon + dlon,
                LAT0 + dlat,
                id=f"cam-{i}-{name}",
                region=REGION,
                heading=heading,
                fov=90,
                range=200,
                url=str(frames / image),
            )
            for name, (dlon, dlat), heading, image in CAMERAS
        ]
    return {"type": "FeatureCollection", "features": features}


def write_config(
    tmp: Path, broker: LocalMosquitto, influx: LocalInflux, sites: int, threads: int
) -> Path:
    """hub.yaml (JSON is YAML) for the hub and its workers, with the site, rule and images."""
    frames = tmp / "frames"
    frames.mkdir()
    for image in ("zidane.jpg", "bus.jpg"):
        shutil.copy(MODELS / "images" / image, frames / image)
    site = tmp / "site"
    site.mkdir()
    (site / "bench.geojson").write_text(json.dumps(inventory(sites, frames)))
    (tmp / "rules").mkdir()
    (tmp / "rules" / "flood.yaml").write_text(RULES)
    config = {
        "mqtt": {
            "url": broker.url,
            "client_id": "hub-bench",
            "prefix": PREFIX,
            "reconnect_min": "50ms",
            "reconnect_max": "500ms",
        },
        "influx": {"url": influx.url, "database": "bench"},
        "inventory": [str(site)],
        "rules": [str(tmp / "rules")],
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "data_dir": str(tmp / "var"),
        "log_level": "warning",
        # As tests/detection/test_jobs.py: the fall model's classes renamed person/fallen_person.
        "detection": {
            "detector": {
                "type": "onnx",
                "model": str(FALL),
                "names": ["person", "fallen_person"],
                "threads": threads,
            },
            "faces_model": str(FACES),
            "min_score": 0.4,
            "capture": {"workers": 1},
        },
    }
    path = tmp / "hub.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def bare_cost(detector: Detector, blurrer: FaceBlurrer, frames: int) -> dict[str, float]:
    """Per image: median ms of one `detect` plus median ms of one `anonymize`."""
    cost: dict[str, float] = {}
    for name in sorted({image for *_, image in CAMERAS}):
        read = cv2.imread(str(MODELS / "images" / name))
        if read is None:
            raise SystemExit(f"bench: {name} missing, run scripts/fetch-models")
        image: Image = np.asarray(read, np.uint8)
        detect = timings(partial(detector.detect, image), frames)["median_ms"]
        blur = timings(partial(blurrer.anonymize, image), frames)["median_ms"]
        height, width = image.shape[:2]
        print(
            f"  {name} {width}x{height}: detect {detect:.0f} ms + face blur {blur:.0f} ms"
            f" = {detect + blur:.0f} ms"
        )
        cost[name] = detect + blur
    return cost


class Gauge:
    """The water-level gauges: a paho client, apart from the hub's own MQTT code."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-gauges")
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def publish(self, sensor: str, value: float) -> None:
        payload = json.dumps({"value": value, "unit": "cm"})
        self.client.publish(f"{PREFIX}/sensors/{REGION}/{sensor}", payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class BenchError(Exception):
    """The run cannot go on; the message says why."""


async def until(check: Callable[[], object], what: str, limit: float = TIMEOUT) -> None:
    """Poll `check` every few ms until it is truthy; fail naming `what` after `limit` s."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(POLL)


@dataclass
class Trial:
    """Seconds from the reading's publish to each camera's frame, snapshot and evidence."""

    frame: dict[str, float] = field(default_factory=dict)
    snapshot: dict[str, float] = field(default_factory=dict)
    incident: dict[str, float] = field(default_factory=dict)


async def trial(hub: Hub, gauge: Gauge, i: int) -> Trial:
    """Trip site i's gauge once; return when all three cameras' evidence is in its incident."""
    cameras = {f"cam-{i}-{name}" for name, *_ in CAMERAS}
    out = Trial()
    wall0 = time.time_ns()
    start = time.perf_counter()
    gauge.publish(f"wl-{i}", 22)

    def arrived() -> bool:
        now = time.perf_counter()
        for incident in hub.rules.engine.incidents(site=f"up-{i}"):
            for action in incident.actions:
                asked = set(action.params.get("cameras", ()))
                if action.kind == "detect" and asked != cameras:
                    raise BenchError(f"site {i}: the rule asked {sorted(asked)}")
            for item in incident.evidence:
                camera = item.get("camera")
                is_new = camera and camera not in out.incident
                if is_new and item.get("kind") == "detection" and item.get("snapshot"):
                    out.incident[str(camera)] = now - start
                    _note(out, str(camera), item, wall0)
        failed = [r for r in hub.detection.results if r.camera_id in cameras and r.error]
        if failed:
            raise BenchError(f"{failed[0].camera_id}: {failed[0].error}")
        return len(out.incident) == len(cameras)

    await until(arrived, f"the evidence of {sorted(cameras)}")
    return out


def _note(out: Trial, camera: str, item: Mapping[str, Any], wall0: int) -> None:
    out.frame[camera] = (int(item["ts"]) - wall0) / 1e9
    mtime = Path(str(item["snapshot"])).stat().st_mtime_ns
    out.snapshot[camera] = (mtime - wall0) / 1e9


def _idle(crew: list[DetectorWorker], sent: int) -> bool:
    return sum(w.done for w in crew) >= sent


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:5.0f} ms"


def _row(t: Trial) -> str:
    def first(times: dict[str, float]) -> float:
        return min(times.values())

    def last(times: dict[str, float]) -> float:
        return max(times.values())

    return (
        f"first frame {_ms(first(t.frame))}, snapshot {_ms(first(t.snapshot))}, "
        f"incident {_ms(first(t.incident))} | all 3: snapshots {_ms(last(t.snapshot))}, "
        f"incident {_ms(last(t.incident))}"
    )


def _stats(values: list[float]) -> str:
    return f"median {_ms(statistics.median(values))}  max {_ms(max(values))}"


async def measure(config: HubConfig, trials: int, workers: int, frames: int) -> None:
    """Bare per-frame cost, then a warm-up trial and `trials` counted ones; prints figures."""
    inv = load_inventory(config.inventory)
    settings = config.detection
    assert settings.detector is not None
    detectors = [load_detector(settings.detector) for _ in range(workers)]
    faces = default_faces_model(config)
    blurrers = [FaceBlurrer(faces, threshold=settings.face_threshold) for _ in range(workers)]
    print(f"bare per-frame cost (median of {frames}, timed directly, same models):")
    cost = bare_cost(detectors[0], blurrers[0], frames)
    inference = sum(cost[image] for *_, image in CAMERAS)
    print(f"  the 3 cameras' frames one after another: {inference:.0f} ms")
    gauge = Gauge(config.mqtt.url)
    stop = asyncio.Event()
    results: list[Trial] = []
    with contextlib.ExitStack() as stack:
        stack.callback(gauge.close)
        capture = settings.capture
        pools = [
            stack.enter_context(
                CapturePool(
                    capture.workers,
                    connect_timeout=capture.connect_timeout,
                    read_timeout=capture.read_timeout,
                    deadline=capture.deadline,
                )
            )
            for _ in detectors
        ]
        crew = [
            DetectorWorker(config, inv, f"w{n}", detector=d, blurrer=b, pool=p)
            for n, (d, b, p) in enumerate(zip(detectors, blurrers, pools, strict=True))
        ]
        async with running(config, inv) as hub:
            tasks = [asyncio.create_task(w.run(stop), name=w.worker_id) for w in crew]
            try:
                await hub.mqtt.wait_connected(10)
                await until(gauge.client.is_connected, "the gauges to connect", 10)
                for worker in crew:
                    await worker.mqtt.wait_connected(10)
                print(
                    f"gauge reading on MQTT -> evidence of 3 cameras in the incident"
                    f" ({workers} worker(s), {settings.detector.threads} inference threads):"
                )
                for i in range(trials + 1):
                    t = await trial(hub, gauge, i)
                    label = "warm-up" if i == 0 else f"trial {i}"
                    print(f"  {label:8} {_row(t)}")
                    if i:
                        results.append(t)
                    # The next trial starts on idle workers: every job sent (resent ones too)
                    # answered.
                    sent = len(CAMERAS) * (i + 1) + hub.detection.resent
                    await until(partial(_idle, crew, sent), "the workers to answer every job")
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
    first = [min(t.snapshot.values()) for t in results]
    first_in = [min(t.incident.values()) for t in results]
    all_in = [max(t.incident.values()) for t in results]
    all_snap = [max(t.snapshot.values()) for t in results]
    print(f"over {len(results)} trials:")
    print(f"  first evidence: snapshot on disk {_stats(first)}; in the incident {_stats(first_in)}")
    print(
        f"  all 3 cameras:  snapshots on disk {_stats(all_snap)}; in the incident {_stats(all_in)}"
    )
    share = inference / 1000 / statistics.median(all_in)
    print(
        f"  bare inference for the 3 frames: {inference:.0f} ms,"
        f" {share:.0%} of the median time to all 3 in the incident"
    )
    if hub.detection.resent:
        print(f"  the hub sent {hub.detection.resent} job(s) again (resend_after)")


def main() -> None:
    """Start Mosquitto and InfluxDB, run the trials, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="detector workers")
    parser.add_argument("--threads", type=int, default=2, help="the detector's threads")
    parser.add_argument("--frames", type=int, default=10, help="frames for the bare cost")
    args = parser.parse_args()
    if not FALL.is_file() or not FACES.is_file():
        raise SystemExit("bench: models missing, run scripts/fetch-models")
    tmp = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    broker = LocalMosquitto(data_dir=tmp / "mosquitto", port=free_port())
    influx = LocalInflux(data_dir=tmp / "influxdb", port=free_port())
    broker.start()
    try:
        influx.start()
        try:
            path = write_config(tmp, broker, influx, args.trials + 1, args.threads)
            asyncio.run(measure(load_config(path), args.trials, args.workers, args.frames))
        except BenchError as exc:
            raise SystemExit(f"bench: {exc}") from None
        except ConfigError as exc:
            raise SystemExit("bench: " + "\n".join(map(str, exc.problems))) from None
        finally:
            influx.stop()
    finally:
        broker.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
