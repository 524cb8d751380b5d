"""Detection end to end: a flood rule asks the covering camera, workers share jobs, a killed
worker loses none; real Mosquitto and InfluxDB, the packaged fall model and face model."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from hub import metrics
from hub.app import running
from hub.config import HubConfig, load_config
from hub.detection.backends.registry import load_detector
from hub.detection.capture import CapturePool
from hub.detection.privacy import FaceBlurrer
from hub.detection.worker import DetectorWorker, default_faces_model
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    Peer,
    aquery,
    eventually,
    point,
    service_sections,
    square,
    write_config,
)

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
FACES = MODELS / "faces" / "centerface.onnx"
pytestmark = pytest.mark.skipif(
    not (MODELS / "fall" / "best_fp16.onnx").is_file() or not FACES.is_file(),
    reason="models not fetched (scripts/fetch-models)",
)
SITE = (127.01, 37.26)
# About 100 m south of the site, looking north at it.
COVERING = point(
    "camera", 127.01, 37.2591, id="cam-south", region="suwon", heading=0, fov=90, range=200
)
# Only 30 m north of the site, so nearer, but looking north, away from it.
AWAY = point(
    "camera", 127.01, 37.26027, id="cam-north", region="suwon", heading=0, fov=60, range=200
)
FLOOD = """
rules:
  - id: underpass-flood
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm}
    actions:
      - detect: {cameras: nearest, count: 1, within: 300 m, classes: [person]}
"""


def inventory(tmp_path: Path, cameras: list[dict[str, Any]]) -> Path:
    """A region with an underpass, its water-level gauge and these cameras."""
    features = [
        {
            "type": "Feature",
            "geometry": square(127.0, 37.25),
            "properties": {"type": "region", "id": "suwon", "name": "Suwon"},
        },
        point("site", *SITE, id="up-1", region="suwon", site_type="underpass"),
        point(
            "sensor", *SITE, id="wl-1", kind="water_level", region="suwon", site="up-1", unit="cm"
        ),
        *cameras,
    ]
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "site.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    return folder


def configure(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    cameras: list[dict[str, Any]],
    **detection: object,
) -> Path:
    """hub.yaml for the hub and its workers: the fall model renamed to person/fallen_person."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(FLOOD)
    sections = service_sections(
        mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"
    )
    return write_config(
        tmp_path / "hub.yaml",
        **sections,
        inventory=[str(inventory(tmp_path, cameras))],
        rules=[str(tmp_path / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
        detection={
            "detector": {
                "type": "onnx",
                "model": str(MODELS / "fall" / "best_fp16.onnx"),
                "names": ["person", "fallen_person"],
                "threads": 2,
            },
            "faces_model": str(FACES),
            "min_score": 0.4,
            "capture": {"workers": 1},
            **detection,
        },
    )


def images(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the test images, standing in for two cameras' views."""
    folder = tmp_path / "frames"
    folder.mkdir()
    zidane, bus = folder / "zidane.jpg", folder / "bus.jpg"
    shutil.copy(MODELS / "images" / "zidane.jpg", zidane)
    shutil.copy(MODELS / "images" / "bus.jpg", bus)
    return zidane, bus


def seeing(camera: dict[str, Any], image: Path) -> dict[str, Any]:
    """The camera's feature with `image` as its view."""
    return {**camera, "properties": {**camera["properties"], "url": str(image)}}


async def test_flood_asks_the_covering_camera_and_keeps_blurred_evidence(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    zidane, bus = images(tmp_path)
    covering, away = seeing(COVERING, zidane), seeing(AWAY, bus)
    path = configure(tmp_path, mosquitto, influx, prefix, database, uid, [covering, away])
    config = load_config(path)
    inv = load_inventory(config.inventory)
    settings = config.detection
    assert settings.detector is not None
    detector = load_detector(settings.detector)
    blurrer = FaceBlurrer(default_faces_model(config))
    peer = Peer(mosquitto.url, f"gauge-{uid}")
    stop = asyncio.Event()
    before = _detect_metrics()
    with CapturePool(1) as pool:
        worker = DetectorWorker(
            config, inv, f"w-{uid}", detector=detector, blurrer=blurrer, pool=pool
        )
        async with running(config, inv) as hub, asyncio.TaskGroup() as tg:
            tg.create_task(worker.run(stop), name="detector")
            await hub.mqtt.wait_connected(10)
            await worker.mqtt.wait_connected(10)
            peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 22, "unit": "cm"}))

            def evidence() -> list[dict[str, Any]]:
                return [
                    dict(e)
                    for i in hub.rules.engine.incidents()
                    for e in i.evidence
                    if e.get("kind") == "detection"
                ]

            items = await eventually(evidence, "detection evidence in the incident", timeout=60)
            stop.set()
    peer.close()
    (item,) = items
    assert item["camera"] == "cam-south"
    assert item["counts"].get("person", 0) >= 1
    assert [r.camera_id for r in hub.detection.results] == ["cam-south"]
    (incident,) = hub.rules.engine.incidents()
    (action,) = incident.actions
    assert action.params["cameras"] == ["cam-south"]
    assert action.status == "done"
    after = _detect_metrics()
    assert after["jobs"] - before["jobs"] == 1
    assert after["ok"] - before["ok"] == 1
    assert after["timed"] - before["timed"] == 1
    assert after["pending"] == 0

    rows = await eventually(
        lambda: _rows(influx.url, database),
        "detection points in InfluxDB",
        timeout=20,
    )
    assert {(r["camera"], r["class"], r["region"]) for r in rows} == {
        ("cam-south", "person", "suwon")
    }
    assert rows[0]["count"] == item["counts"]["person"]
    assert rows[0]["job_id"] == item["job_id"]

    snapshot = Path(item["snapshot"])
    assert snapshot.is_relative_to(tmp_path / "var" / "evidence")
    stored = cv2.imread(str(snapshot))
    original = cv2.imread(str(zidane))
    assert stored is not None
    assert original is not None
    assert blurrer.faces(original), "the face model should find faces in zidane.jpg"
    assert blurrer.faces(stored) == []


def _detect_metrics() -> dict[str, float]:
    return {
        "jobs": metrics.DETECT_JOBS._value.get(),
        "ok": metrics.DETECT_RESULTS.labels("ok")._value.get(),
        "expired": metrics.DETECT_RESULTS.labels("expired")._value.get(),
        "resent": metrics.DETECT_RESENT._value.get(),
        "pending": metrics.DETECT_PENDING._value.get(),
        "timed": sum(b.get() for b in metrics.DETECT_SECONDS._buckets),
    }


async def test_a_job_nobody_answers_fails_its_action_at_the_deadline(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    zidane, _ = images(tmp_path)
    covering = seeing(COVERING, zidane)
    path = configure(
        tmp_path, mosquitto, influx, prefix, database, uid, [covering],
        deadline="1s", resend_after="300ms",
    )  # fmt: skip
    config = load_config(path)
    before = _detect_metrics()
    peer = Peer(mosquitto.url, f"gauge-{uid}")
    async with running(config, load_inventory(config.inventory)) as hub:  # and no worker
        await hub.mqtt.wait_connected(10)
        peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 22, "unit": "cm"}))

        def failed() -> str | None:
            found = [a for i in hub.rules.engine.incidents() for a in i.actions]
            return found[0].detail if found and found[0].status == "failed" else None

        detail = await eventually(failed, "the detect action to fail", timeout=20)
    peer.close()
    assert "cam-south: no result within the 1 s deadline" in detail
    after = _detect_metrics()
    assert after["expired"] - before["expired"] == 1
    assert after["resent"] - before["resent"] >= 1, "sent once more before the deadline"
    assert after["pending"] == 0


async def _rows(url: str, database: str) -> list[dict[str, object]]:
    return await aquery(url, database, "SELECT * FROM detection")


class Workers:
    """`hub detector` processes with logs of their own."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with self.log(name).open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "hub", "detector", "-c", str(self.config), "--id", name],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def lines(self, name: str, text: str) -> int:
        return self.log(name).read_text().count(text) if self.log(name).exists() else 0

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path / "hub.yaml", tmp_path)
    yield pool
    pool.close()


async def test_workers_share_jobs_and_a_killed_worker_loses_none(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    workers: Workers,
) -> None:
    zidane, bus = images(tmp_path)
    cameras = [
        point(
            "camera", 127.01, 37.259, id=f"cam-{i}", region="suwon", url=str((zidane, bus)[i % 2])
        )
        for i in range(10)
    ]
    configure(
        tmp_path,
        mosquitto,
        influx,
        prefix,
        database,
        uid,
        cameras,
        deadline="60s",
        resend_after="2s",
    )
    config: HubConfig = load_config(tmp_path / "hub.yaml")
    a, b = f"a-{uid}", f"b-{uid}"
    workers.start(a)
    workers.start(b)
    for name in (a, b):
        await eventually(lambda n=name: workers.lines(n, "ready"), f"worker {name} ready", 60)
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        jobs = await hub.detection.request(
            "act-1", "inc-1", "test", [c["properties"]["id"] for c in cameras], classes=["person"]
        )
        await eventually(lambda: workers.lines(a, "taking job"), "worker a to take a job", 30)
        workers.procs[a].send_signal(signal.SIGKILL)
        workers.procs[a].wait()

        def answered() -> set[str]:
            return {r.job_id for r in hub.detection.results}

        await eventually(
            lambda: answered() >= {j.job_id for j in jobs}, "a result for every job", timeout=60
        )
        results = list(hub.detection.results)
    assert [r.error for r in results] == [None] * len(jobs)
    assert len({r.job_id for r in results}) == len(jobs)
    # Both took jobs: the broker hands a shared subscription's messages round-robin.
    assert workers.lines(a, "taking job") >= 1
    assert workers.lines(b, "job ") >= 1
    assert workers.lines(b, "done") >= len(jobs) // 2
    # The killed worker's jobs came back because the hub sent them again, not the broker.
    assert hub.detection.resent >= 1
