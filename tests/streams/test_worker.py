"""A stream worker on real streams (the project's GStreamer camera server over RTSP; ffmpeg
serving over HTTP for a camera that dies), a real Mosquitto and the real fall model: a person
walking into a zone, out and in again, a camera that dies, and a broker that restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hub.cameras.local import LocalCameras
from hub.config import load_config
from hub.detection.backends.registry import load_detector
from hub.detection.privacy import FaceBlurrer
from hub.inventory import load_inventory
from hub.services import LocalMosquitto
from hub.streams.metrics import exposition, registry_for
from hub.streams.watch import Pools
from hub.streams.worker import StreamWorker, _watch_factory
from tests.helpers import Peer, eventually, write_config
from tests.streams.support import (
    RIGHT_HALF,
    camera_site,
    rtsp_media,
    still_clip,
    walking_clip,
)

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
FALL_MODEL = MODELS / "fall" / "best_fp16.onnx"
FACES = MODELS / "faces" / "centerface.onnx"

pytestmark = pytest.mark.integration


def streams_config(tmp_path: Path, broker: str, prefix: str, site: Path, **extra: Any) -> Path:
    """A hub.yaml for stream workers on this test's prefix, with quick reconnects."""
    if not FALL_MODEL.is_file() or not FACES.is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    streams: dict[str, Any] = {
        "fps": 3,
        "detector": {
            "type": "onnx", "model": str(FALL_MODEL), "names": ["person", "fallen_person"],
            "threads": 1,
        },
        "down_after": "4s",
        "stall_after": "8s",
        "reconnect_min": "200ms",
        "reconnect_max": "1s",
        "presence": {"keepalive": "2s", "heartbeat": "500ms", "timeout": "3s"},
    } | extra  # fmt: skip
    return write_config(
        tmp_path / "hub.yaml",
        mqtt={"url": broker, "prefix": prefix, "reconnect_min": "50ms", "reconnect_max": "500ms"},
        inventory=[str(site)],
        data_dir=str(tmp_path / "var"),
        detection={"faces_model": str(FACES)},
        streams=streams,
    )


@pytest.fixture(scope="module")
def walking_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCameras]:
    """The project's GStreamer camera server, serving the walking clip at rtsp://.../walk."""
    folder = tmp_path_factory.mktemp("walking-camera")
    media = rtsp_media(folder, {"walk": walking_clip(folder)})
    with LocalCameras(folder, media=media) as cameras:
        yield cameras


@contextlib.asynccontextmanager
async def worker_watching(
    url: str, tmp_path: Path, broker: str, prefix: str, uid: str
) -> AsyncIterator[tuple[StreamWorker, Peer]]:
    """A worker watching one camera at `url` with a zone over the right half of its picture,
    and a listener on the camera's events."""
    site = camera_site(
        tmp_path / "site",
        {"cam-walk": {"url": url, "zones": [{"id": "right", "polygon": RIGHT_HALF}]}},
    )
    config = load_config(streams_config(tmp_path, broker, prefix, site))
    inventory = load_inventory(config.inventory)
    assert config.streams.detector is not None
    detector = load_detector(config.streams.detector)
    executors = [ThreadPoolExecutor(1) for _ in range(3)]
    make = _watch_factory(config, detector, FaceBlurrer(FACES), Pools(*executors))
    worker = StreamWorker(config, inventory, f"w-{uid}", make_watch=make)
    peer = Peer(broker, f"listener-{uid}")
    peer.subscribe(f"{prefix}/camera-events/#")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker, peer
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        peer.close()
        for pool in executors:
            pool.shutdown(cancel_futures=True)


def events(peer: Peer, prefix: str) -> list[dict[str, Any]]:
    topic = f"{prefix}/camera-events/suwon/cam-walk"
    return [json.loads(p) for t, p in list(peer.received) if t == topic]


async def test_walking_in_out_and_in_again_is_two_entries_of_one_track_each(
    walking_camera: LocalCameras, mosquitto: LocalMosquitto, prefix: str, uid: str, tmp_path: Path
) -> None:
    url = walking_camera.url("walk")  # over RTSP from the camera server
    async with worker_watching(url, tmp_path, mosquitto.url, prefix, uid) as (_, peer):
        await _walk_in_out_and_in(peer, prefix, tmp_path)


async def _walk_in_out_and_in(peer: Peer, prefix: str, tmp_path: Path) -> None:

    def zone_events() -> list[dict[str, Any]]:
        return [e for e in events(peer, prefix) if e["kind"] in ("entered", "left")]

    def in_out_in() -> bool:
        kinds = [e["kind"] for e in zone_events()]
        return (
            "entered" in kinds
            and "left" in kinds[kinds.index("entered") :]
            and (kinds.count("entered") >= 2)
        )

    await eventually(in_out_in, "entered, left and entered again", timeout=60)
    seq = zone_events()
    first = seq[0]
    assert first["kind"] == "entered", seq
    left = next(e for e in seq if e["kind"] == "left")
    # One person walking in is one event, of one track, until that track leaves.
    assert [e["kind"] for e in seq[: seq.index(left) + 1]] == ["entered", "left"], seq
    assert left["track_id"] == first["track_id"]
    again = next(e for e in seq[seq.index(left) :] if e["kind"] == "entered")
    assert again["event_id"] != first["event_id"]
    for event in (first, left, again):
        assert (event["camera"], event["class"], event["zone"], event["line"]) == (
            "cam-walk", "person", "right", None)  # fmt: skip
        assert event["count"] == 1
        assert event["clip"] is None
        assert 0.4 <= event["score"] <= 1.0
        # The snapshot is under the evidence folder, written before the event was sent.
        snapshot = tmp_path / "var" / "evidence" / event["snapshot"]
        assert snapshot.is_file()
        assert snapshot.read_bytes()[:2] == b"\xff\xd8"
    # Faces are blurred in what is stored: the walker's face, plain in the clip, is not.
    faces = FaceBlurrer(FACES)
    clip = cv2.VideoCapture(str(walking_clip(tmp_path)))
    ok, plain = clip.read()
    assert ok
    assert faces.faces(np.asarray(plain, np.uint8))
    stored = cv2.imread(str(tmp_path / "var" / "evidence" / first["snapshot"]))
    assert stored is not None
    assert faces.faces(np.asarray(stored, np.uint8)) == []


async def test_a_dead_stream_is_reported_and_taken_up_again(
    mosquitto: LocalMosquitto, prefix: str, uid: str, tmp_path: Path
) -> None:
    # A camera server of this test's own, which it stops and starts again on the same port.
    media = rtsp_media(tmp_path, {"walk": walking_clip(tmp_path)})
    server = LocalCameras(tmp_path / "camera-server", media=media)
    server.start()
    try:
        url = server.url("walk")
        async with worker_watching(url, tmp_path, mosquitto.url, prefix, uid) as (w, p):
            await _die_and_return(w, server, p, prefix)
    finally:
        server.stop()


async def _die_and_return(
    worker: StreamWorker, server: LocalCameras, peer: Peer, prefix: str
) -> None:
    await eventually(
        lambda: "cam-walk" in worker.watches and worker.watches["cam-walk"][0].stream.state.up,
        "the stream to be up",
    )
    before = len(events(peer, prefix))
    server.stop()

    def after(kind: str) -> list[dict[str, Any]]:
        return [e for e in events(peer, prefix)[before:] if e["kind"] == kind]

    down = await eventually(lambda: after("stream_down"), "a stream_down event", timeout=30)
    assert "ffmpeg exited" in down[0]["detail"] or "stalled" in down[0]["detail"]
    state = worker.watches["cam-walk"][0].stream.state
    registry = registry_for(worker)
    assert 'hub_stream_up{camera="cam-walk"} 0.0' in exposition(registry)
    tries = state.reconnects
    await eventually(lambda: state.reconnects > tries + 1, "reconnect attempts while it is down")
    assert not after("stream_up")
    server.start()
    await eventually(lambda: after("stream_up"), "a stream_up event", timeout=30)
    assert state.up
    presence = worker.presence()["cameras"]["cam-walk"]
    assert presence["up"]
    assert presence["reconnects"] >= 2
    text = exposition(registry)
    assert 'hub_stream_up{camera="cam-walk"} 1.0' in text
    assert "hub_stream_events_published_total" in text


async def test_a_broker_restart_stops_the_cameras_until_it_is_back(
    tmp_path: Path, own_mosquitto: LocalMosquitto, prefix: str, uid: str
) -> None:
    site = camera_site(tmp_path / "site", {"cam-still": {"url": str(still_clip(tmp_path))}})
    config = load_config(streams_config(tmp_path, own_mosquitto.url, prefix, site, fps=1))
    assert config.streams.detector is not None
    executors = [ThreadPoolExecutor(1) for _ in range(3)]
    make = _watch_factory(
        config, load_detector(config.streams.detector), FaceBlurrer(FACES), Pools(*executors)
    )
    worker = StreamWorker(config, load_inventory(config.inventory), f"w-{uid}", make_watch=make)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: "cam-still" in worker.watches, "the camera watched", 30)
        own_mosquitto.stop()
        # Cut off, it cannot publish, and the others take its cameras when its Will fires.
        await eventually(lambda: not worker.watches, "the camera dropped while the broker is away")
        own_mosquitto.start()
        await eventually(lambda: "cam-still" in worker.watches, "the camera watched again", 30)
        await eventually(lambda: worker.watches["cam-still"][0].stream.state.up, "frames again")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        for pool in executors:
            pool.shutdown(cancel_futures=True)
