"""A stream worker reading plates on real streams: two clips made here by ffmpeg of a car
driving across the top of bus.jpg with a plate drawn in the stand-in's font, served over RTSP
by the project's camera server, a real Mosquitto, the hub's watch-list published retained as
digests, and the stand-in reader. The listed plate gives exactly one `plate` event for its
track, with a snapshot; the plate not listed gives none, though it is read.

The packaged models find people, falls and fire, not cars: the detector here finds the drawn
car by its colour (a stand-in too), and everything after it (motion gate, ByteTrack, the
plate stage, snapshots with faces blurred, publishing) is the worker's own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from hub.cameras.local import LocalCameras
from hub.config import load_config
from hub.detection.backends.base import Detection
from hub.detection.privacy import FaceBlurrer
from hub.inventory import load_inventory
from hub.plates.listed import Listed, encode, watchlist_topic
from hub.plates.standin import StandinReader
from hub.services import LocalMosquitto
from hub.streams.watch import Pools
from hub.streams.worker import StreamWorker, _watch_factory
from tests.helpers import Peer, eventually, write_config
from tests.plates.support import car_clip
from tests.streams.support import camera_site, rtsp_media

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
FACES = MODELS / "faces" / "centerface.onnx"
SECRET = "the province's plate secret, 32+"
LISTED, OTHER = "123가4567", "45나6789"

pytestmark = pytest.mark.integration


class ColourCars:
    """Finds the drawn cars by their purple body: the largest purple blob is a car."""

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
        mask = cv2.inRange(hsv, (140, 150, 80), (160, 255, 255))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return []
        x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
        if w * h < 2000:
            return []
        return [Detection("car", 0.9, (float(x), float(y), float(x + w), float(y + h)))]


@pytest.fixture(scope="module")
def car_cameras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCameras]:
    folder = tmp_path_factory.mktemp("car-cameras")
    clips = {"listed": car_clip(folder, LISTED), "other": car_clip(folder, OTHER)}
    with LocalCameras(folder, media=rtsp_media(folder, clips)) as cameras:
        yield cameras


async def test_a_listed_plate_is_one_event_and_another_plate_none(
    car_cameras: LocalCameras, mosquitto: LocalMosquitto, prefix: str, uid: str, tmp_path: Path
) -> None:
    if not FACES.is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    site = camera_site(
        tmp_path / "site",
        {"cam-listed": {"url": car_cameras.url("listed")},
         "cam-other": {"url": car_cameras.url("other")}},
    )  # fmt: skip
    path = write_config(
        tmp_path / "hub.yaml",
        mqtt={"url": mosquitto.url, "prefix": prefix, "reconnect_min": "50ms"},
        inventory=[str(site)],
        data_dir=str(tmp_path / "var"),
        detection={"faces_model": str(FACES)},
        streams={"fps": 3, "presence": {"keepalive": "2s", "heartbeat": "500ms", "timeout": "3s"}},
        plates={"cameras": ["cam-listed", "cam-other"], "secret": SECRET, "every": "300ms",
                "reader": "hub.plates.standin:StandinReader"},
    )  # fmt: skip
    config = load_config(path)
    # The hub's side: the list, retained, as digests.
    hub = Peer(mosquitto.url, f"hub-{uid}")
    hub.publish(
        watchlist_topic(prefix), encode(SECRET.encode(), [(LISTED, None)], 0.0), retain=True
    )
    listed = Listed(SECRET.encode())
    pools = [ThreadPoolExecutor(1) for _ in range(3)]
    make = _watch_factory(
        config, ColourCars(), FaceBlurrer(FACES), Pools(*pools), (StandinReader(), listed)
    )
    worker = StreamWorker(
        config, load_inventory(config.inventory), f"w-{uid}", make_watch=make, listed=listed
    )
    listener = Peer(mosquitto.url, f"listener-{uid}")
    listener.subscribe(f"{prefix}/camera-events/#")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    def plates(camera: str) -> list[dict[str, Any]]:
        topic = f"{prefix}/camera-events/suwon/{camera}"
        found = [json.loads(p) for t, p in list(listener.received) if t == topic]
        return [e for e in found if e["kind"] == "plate"]

    def reads(camera: str) -> int:
        watch = worker.watches.get(camera)
        stage = watch[0].analyser.plates if watch else None
        return stage.reads if stage else 0

    try:
        await eventually(lambda: len(listed) == 1, "the worker to take the watch-list")
        await eventually(lambda: plates("cam-listed"), "the listed plate's event", timeout=60)
        # The other car's plate read as often as a track is read, and never reported; by
        # then the listed car has been tracked for as long, and reported once.
        await eventually(lambda: reads("cam-other") >= config.plates.reads, "reads", timeout=60)
        await eventually(lambda: reads("cam-listed") >= 1, "reads of the listed car")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        listener.close()
        hub.close()
        for pool in pools:
            pool.shutdown(cancel_futures=True)
    assert plates("cam-other") == []
    events = plates("cam-listed")
    tracks = {e["track_id"] for e in events}
    assert len(events) == len(tracks) == 1, events
    event = events[0]
    assert (event["plate"], event["class"]) == (LISTED, "car")
    assert event["score"] > 0.8
    snapshot = config.detection.evidence_path(Path(config.data_dir)) / event["snapshot"]
    assert snapshot.is_file()
