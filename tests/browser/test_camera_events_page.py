"""Camera events in the page, in a real headless Chromium: an event a stream worker publishes
on the broker comes into the list of camera events, marks its camera on the map and shows,
with its snapshot, over the camera's live tile on the wall; a stream that goes down greys its
camera out until it comes back; a page opened later loads the events from the API; a token of
another region sees none of it. A hub process, its own relay, a real RTSP camera."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.api.support import VIEWER
from tests.api.test_evidence import jpeg
from tests.browser.conftest import Room
from tests.helpers import HubProcess, Peer, api_tokens, point, service_sections, write_config
from tests.helpers import write_site as write_inventory
from tests.live.support import camera_stream

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the relay, ffmpeg and the browser share two busy cores
GOYANG_WALL = "goyang-wall-token"


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[str]:
    with camera_stream(tmp_path / "camera") as url:
        yield url


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    """The hub's evidence folder (detection.evidence_dir's default under data_dir)."""
    return tmp_path / "var" / "evidence"


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
    """The room's hub with live view: cam-1 at the underpass and cam-3 in suwon watch the
    camera; cam-9 is goyang's."""
    inv = support.province()
    for feature in inv["features"]:
        if feature["properties"].get("id") == "cam-1":
            feature["properties"]["url"] = camera
            feature["properties"]["privacy"] = "public"
    inv["features"] += [
        point("camera", 127.05, 37.30, id="cam-3", region="suwon", url=camera),
        point("camera", 126.812, 37.662, id="cam-9", region="goyang", url=camera),
    ]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(support.FLOOD)
    goyang = {
        "name": "wall-goyang",
        "role": "viewer",
        "sha256": hashlib.sha256(GOYANG_WALL.encode()).hexdigest(),
        "regions": ["goyang"],
    }
    config = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_inventory(tmp_path / "site", inv))],
        rules=[str(tmp_path / "rules")],
        data_dir=str(tmp_path / "var"),
        api={
            "listen": f"127.0.0.1:{free_port()}",
            "tokens": [*api_tokens(support.OPERATOR, VIEWER), goyang],
        },
        detection={"unblurred": ["cam-1"]},
    )
    hub = hub_processes(config)
    hub.start()
    return hub


def publish(peer: Peer, prefix: str, region: str, camera: str, kind: str, **fields: Any) -> str:
    """A camera event as a stream worker sends it (docs/streams.md); its id."""
    event_id = str(uuid.uuid4())
    event = {
        "event_id": event_id,
        "camera": camera,
        "kind": kind,
        "class": None,
        "score": None,
        "track_id": None,
        "zone": None,
        "line": None,
        "direction": None,
        "count": 1,
        "ts": time.time(),
        "snapshot": None,
        "clip": None,
        **fields,
    }
    peer.publish(f"{prefix}/camera-events/{region}/{camera}", json.dumps(event))
    return event_id


def test_a_camera_event_shows_in_the_list_on_the_map_and_in_the_cameras_tile(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str, evidence: Path
) -> None:
    room, goyang = open_room(VIEWER), open_room(GOYANG_WALL)
    page = room.page
    expect(page.locator("#no-camera-events")).to_be_visible()
    page.locator(".camera-icon[title=cam-1]").dispatch_event("click")
    tile = page.locator("#wall figure[data-camera=cam-1]")
    expect(tile.locator("video")).to_have_count(1, timeout=TIMEOUT)

    # A person enters the zone; the worker wrote the frame under the evidence folder.
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    snapshot = f"streams/{day}/cam-1-{uuid.uuid4()}.jpg"
    jpeg(evidence / snapshot)
    entered = publish(
        mosquitto_peer, prefix, "suwon", "cam-1", "entered",
        **{"class": "person", "score": 0.9, "track_id": 7, "zone": "carriageway",
           "snapshot": snapshot},
    )  # fmt: skip

    # In the list, newest first, in words (Korean by default).
    item = page.locator(f"#camera-events li[data-event-id='{entered}']")
    expect(item).to_be_visible(timeout=TIMEOUT)
    expect(item).to_contain_text("cam-1")
    expect(item).to_contain_text("진입 · 사람 · 구역 carriageway · #7")
    expect(page.locator("#camera-event-count")).to_have_text("1")
    expect(page.locator("#no-camera-events")).to_be_hidden()
    # On the map: the camera pulses under a label of the kind and class.
    expect(page.locator(".camera-icon.cam-event[title=cam-1]")).to_have_count(1)
    label = page.locator(".camera-event-label span[data-camera=cam-1]")
    expect(label).to_have_text("진입 · 사람")
    # Over the camera's tile: the event, and its snapshot fetched with the token.
    lines = tile.locator(".wall-events li")
    expect(lines).to_have_count(1)
    expect(lines.first).to_contain_text("#7")
    thumb = tile.locator("img.wall-event-snapshot")
    expect(thumb).to_have_attribute("data-snapshot", f"/api/evidence/{snapshot}", timeout=TIMEOUT)
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 64",
        arg=thumb.element_handle(),
        timeout=TIMEOUT,
    )

    # The person crosses the kerb: the newest comes first, in the list and over the tile.
    crossed = publish(
        mosquitto_peer, prefix, "suwon", "cam-1", "crossed",
        **{"class": "person", "score": 0.8, "track_id": 7, "line": "kerb", "direction": "in"},
    )  # fmt: skip
    expect(page.locator("#camera-events li").first).to_have_attribute(
        "data-event-id", crossed, timeout=TIMEOUT
    )
    expect(lines).to_have_count(2)
    expect(lines.first).to_have_attribute("data-kind", "crossed")
    expect(lines.first).to_contain_text("선 kerb 안쪽으로")
    expect(label).to_have_text("선 통과 · 사람")

    # cam-3's stream goes down: greyed out on the map until it comes back.
    publish(mosquitto_peer, prefix, "suwon", "cam-3", "stream_down", detail="stalled")
    down = page.locator(".camera-icon.cam-down[title=cam-3]")
    expect(down).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator(".camera-event-label span[data-camera=cam-3]")).to_have_text("영상 끊김")
    publish(mosquitto_peer, prefix, "suwon", "cam-3", "stream_up")
    expect(down).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator(".camera-event-label span[data-camera=cam-3]")).to_have_text("영상 복구")

    # Goyang's wall sees its own camera's event, which came after all of suwon's, and none
    # of suwon's: no event of theirs, no camera of theirs.
    fire = publish(mosquitto_peer, prefix, "goyang", "cam-9", "fire", **{"class": "fire"})
    theirs = goyang.page.locator("#camera-events li")
    expect(theirs).to_have_count(1, timeout=TIMEOUT)
    expect(theirs).to_have_attribute("data-event-id", fire)
    expect(goyang.page.locator(".camera-icon.cam-event.cam-alert[title=cam-9]")).to_have_count(1)
    expect(goyang.page.locator(".camera-icon[title=cam-1]")).to_have_count(0)
    expect(goyang.page.locator(".camera-event-label span[data-camera=cam-1]")).to_have_count(0)
    expect(page.locator(f"#camera-events li[data-event-id='{fire}']")).to_have_count(1)

    # A page opened now loads the latest from the API, and shows them in English too.
    later = open_room(VIEWER)
    listed = later.page.locator("#camera-events li")
    expect(listed).to_have_count(5, timeout=TIMEOUT)
    expect(listed.first).to_have_attribute("data-event-id", fire)
    expect(later.page.locator(".camera-icon.cam-event[title=cam-1]")).to_have_count(1)
    later.page.click("#lang")
    expect(later.page.locator(f"#camera-events li[data-event-id='{entered}']")).to_contain_text(
        "entered · person · zone carriageway · #7"
    )
    expect(later.page.locator(".camera-event-label span[data-camera=cam-9]")).to_have_text(
        "fire · fire"
    )
    room.screenshot("camera-events")
    assert room.errors == []
    assert goyang.errors == []
    assert later.errors == []
