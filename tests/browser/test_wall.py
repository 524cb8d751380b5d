"""Live view in the page, in a real headless Chromium: a camera clicked on the map plays live
(frames decoded, playback time advancing); an incident brings the cameras that see its site
onto the wall, pinned tiles stay; its detail shows them live. A hub process, its own relay,
a real RTSP camera."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.api.support import VIEWER
from tests.browser.conftest import Room
from tests.helpers import HubProcess, Peer, api_tokens, point, service_sections, write_config
from tests.helpers import write_site as write_inventory
from tests.live.support import camera_stream

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the relay, ffmpeg and the browser share two busy cores

# How far a tile's video got: frames decoded and the playback clock.
PLAYBACK = """(video) => ({
  frames: video.getVideoPlaybackQuality().totalVideoFrames,
  time: video.currentTime,
  width: video.videoWidth,
})"""


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[str]:
    with camera_stream(tmp_path / "camera") as url:
        yield url


@pytest.fixture
def hub_process(
    tmp_path: Path,
    camera: str,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
) -> HubProcess:
    """The room's hub; cam-1 at the underpass may be shown as it is, cam-2 (nearer, looking
    away) must be blurred, cam-3 is far from it."""
    inv = support.province()
    for feature in inv["features"]:
        if feature["properties"].get("id") == "cam-1":
            feature["properties"]["url"] = camera.replace("rtsp://", "rtsp://admin:hunter2@")
            feature["properties"]["privacy"] = "public"
    inv["features"] += [
        point(
            "camera", 127.0101, 37.2601, id="cam-2", region="suwon", url=camera, heading=45, fov=40
        ),
        point("camera", 127.05, 37.30, id="cam-3", region="suwon", url=camera),
    ]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(support.FLOOD)
    config = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_inventory(tmp_path / "site", inv))],
        rules=[str(tmp_path / "rules")],
        data_dir=str(tmp_path / "var"),
        api={"listen": f"127.0.0.1:{free_port()}", "tokens": api_tokens(support.OPERATOR, VIEWER)},
        detection={"unblurred": ["cam-1"]},
        live={"private_width": 160},
    )
    hub = hub_processes(config)
    hub.start()
    return hub


def playing(page: Page, selector: str, min_frames: int = 5) -> dict[str, Any]:
    """Wait until the video at `selector` decoded `min_frames` frames and its clock moves on."""
    video = page.locator(selector)
    expect(video).to_have_count(1, timeout=TIMEOUT)
    page.wait_for_function(
        f"(v) => v.getVideoPlaybackQuality().totalVideoFrames >= {min_frames}",
        arg=video.element_handle(),
        timeout=TIMEOUT,
    )
    first: dict[str, Any] = video.evaluate(PLAYBACK)
    page.wait_for_function(
        f"(v) => v.currentTime > {first['time']} + 0.5", arg=video.element_handle(), timeout=TIMEOUT
    )
    later: dict[str, Any] = video.evaluate(PLAYBACK)
    assert later["frames"] > first["frames"]
    return later


def test_a_camera_clicked_on_the_map_plays_live(
    open_room: Callable[[str], Room], hub_process: HubProcess
) -> None:
    room = open_room(VIEWER)
    page = room.page
    page.locator(".camera-icon[title=cam-1]").dispatch_event("click")
    shown = playing(page, "#wall figure[data-camera=cam-1] video")
    assert shown["width"] == 640  # relayed as the camera sends it
    room.screenshot("wall-camera")
    entries = hub_process.get("/api/audit?kind=live", support.OPERATOR)["entries"]
    assert [(e["actor"], e["camera"]) for e in entries] == [("wall", "cam-1")]
    assert room.errors == []


def test_an_incident_brings_its_cameras_onto_the_wall_and_into_its_detail(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str
) -> None:
    room = open_room(VIEWER)
    page = room.page
    page.locator(".camera-icon[title=cam-3]").dispatch_event("click")
    tile = page.locator("#wall figure[data-camera=cam-3]")
    tile.locator("button.pin").click()
    expect(tile).to_have_class("tile pinned")
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        mosquitto_peer.publish(
            f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 22.0, "ts": now - ago})
        )
    playing(page, "#wall figure[data-camera=cam-1] video")
    private = playing(page, "#wall figure[data-camera=cam-2] video")
    assert private["width"] == 160  # its faces must be blurred: shown small
    expect(page.locator("#wall figure")).to_have_count(3)  # the pinned tile stayed
    page.locator("#incidents li").first.click()
    playing(page, ".wall-detail figure[data-camera=cam-1] video")
    room.screenshot("wall-incident")
    assert room.errors == []
