"""Evidence snapshots in the situation-room page, in a real headless Chromium against a hub
process: the page fetches them with its token and shows them in the incident and the camera's
popup."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api.support import VIEWER
from tests.api.test_evidence import DAY, FLOOD, jpeg
from tests.browser.conftest import Room
from tests.helpers import Peer

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the broker and the browser share two busy cores
LOADED = """(selector) => {
  const img = document.querySelector(selector);
  return img !== null && img.complete && img.naturalWidth > 0 && img.src.startsWith("blob:");
}"""


@pytest.fixture
def rules_text() -> str:
    """The room's flood rule, also asking the underpass's camera to look."""
    return FLOOD


def loaded(page: Page, selector: str) -> None:
    page.wait_for_function(LOADED, arg=selector, timeout=TIMEOUT)


def test_the_snapshot_loads_in_the_incident_and_the_camera_popup(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str, tmp_path: Path
) -> None:
    room = open_room(VIEWER)
    page = room.page
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        mosquitto_peer.publish(
            f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 22.0, "ts": now - ago})
        )
    expect(page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    incident_id = page.locator("li.incident").get_attribute("data-id")
    snapshot = tmp_path / "var" / "evidence" / DAY / "flood-cam-1.jpg"
    jpeg(snapshot)
    result = {
        "job_id": f"{incident_id}.0:cam-1",
        "camera_id": "cam-1",
        "ts": time.time(),
        "detections": [{"class": "person", "score": 0.9, "box": [1, 2, 30, 40]}],
        "snapshot": str(snapshot),
    }
    mosquitto_peer.publish(f"{prefix}/detect/results/cam-1", json.dumps(result))

    page.click("li.incident")
    expect(page.locator("#detail")).to_be_visible()
    loaded(page, "#detail .evidence img.snapshot")  # the stream brings the evidence
    room.screenshot("evidence-snapshot")

    page.reload()  # the camera list is read when the page (re)starts
    page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT)
    expect(page.locator("#live.on")).to_be_visible(timeout=TIMEOUT)
    # The barrier next to it covers the camera's marker at this zoom.
    page.locator(".leaflet-marker-icon.camera-icon[title=cam-1]").dispatch_event("click")
    loaded(page, ".leaflet-popup img")
    assert room.errors == []
