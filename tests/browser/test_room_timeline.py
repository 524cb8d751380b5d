"""The incident detail's timeline in a real headless Chromium, against a hub process: an
operator follows a flood's timeline as the rule closes the barrier, acknowledges with a note
typed in the page, adds a note and archives the cleared incident; a city's viewer sees only its
city and no control at all."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api.support import OPERATOR
from tests.browser.conftest import Room
from tests.helpers import Peer

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the broker and the browser share two busy cores
GOYANG_WALL = "goyang-wall-token"
RULES = """
rules:
  - id: underpass-flood
    title: "Flooding at {site_name}"
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm, for: 1s}
    clear: {below: 10 cm, for: 1s}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close}
      - notify: {channels: [situation-room]}
  - id: semi-basement-water
    title: "Water at {site_name}"
    severity: extreme
    sensors: [sw-1]
    trigger: {equals: 1}
    clear: {equals: 0, for: 1s}
"""


@pytest.fixture
def rules_text() -> str:
    return RULES


@pytest.fixture
def extra_tokens() -> list[dict[str, Any]]:
    digest = hashlib.sha256(GOYANG_WALL.encode()).hexdigest()
    return [{"name": "wall-goyang", "role": "viewer", "sha256": digest, "regions": ["goyang"]}]


def _gauge(peer: Peer, prefix: str, value: float) -> None:
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": value, "ts": now - ago}))


def test_an_operator_follows_the_timeline_notes_and_archives(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str
) -> None:
    room = open_room(OPERATOR)
    page = room.page
    page.click("#lang")  # English, to read the labels
    expect(page.locator("#who")).to_contain_text("desk-1 (operator)")
    expect(page.locator("#who")).to_contain_text("province")
    _gauge(mosquitto_peer, prefix, 22.0)
    expect(page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    page.click("li.incident")
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-kind=opened]")).to_contain_text("Flooding at")
    # The rule's barrier command and its status reach the timeline as the stream tells of it.
    expect(timeline.locator("li[data-kind=action]").first).to_contain_text(
        "actuate", timeout=TIMEOUT
    )
    expect(timeline.locator("li[data-kind=command]").first).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#detail-controls")).to_be_visible()
    expect(page.locator("#detail-archive")).to_be_hidden()  # not cleared yet

    page.fill("#note-text", "crew on the way")
    page.click("#detail-ack")
    acked = timeline.locator("li[data-kind=acknowledged]")
    expect(acked).to_contain_text("desk-1", timeout=TIMEOUT)
    expect(acked).to_contain_text("crew on the way")
    expect(page.locator("#detail-ack")).to_be_hidden()
    page.fill("#note-text", "pump truck arrived")
    page.click("#note-add")
    expect(timeline.locator("li[data-kind=note]")).to_contain_text("pump truck arrived")
    room.screenshot("timeline-operator")

    _gauge(mosquitto_peer, prefix, 2.0)  # the water goes down: the incident clears
    expect(timeline.locator("li[data-kind=cleared]")).to_have_count(1, timeout=TIMEOUT)
    page.click("#detail-archive")
    page.click("#confirm-ok")
    expect(timeline.locator("li[data-kind=archived]")).to_contain_text("desk-1", timeout=TIMEOUT)
    expect(page.locator("#toast")).to_contain_text("Incident archived")
    room.screenshot("timeline-archived")
    assert room.errors == []


def test_a_city_viewer_sees_its_city_and_no_controls(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str
) -> None:
    city, operator = open_room(GOYANG_WALL), open_room(OPERATOR)
    page = city.page
    page.click("#lang")
    _gauge(mosquitto_peer, prefix, 22.0)
    mosquitto_peer.publish(f"{prefix}/sensors/goyang/sw-1", json.dumps({"value": 1}))
    # The province's operator sees both cities' incidents; the city's viewer its own only.
    expect(operator.page.locator("li.incident.state-active")).to_have_count(2, timeout=TIMEOUT)
    expect(page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("li.incident")).to_contain_text("goyang")
    expect(page.locator("path.sensor")).to_have_count(1)  # sw-1, goyang's only sensor
    expect(page.locator("path.sensor-sw-1.state-alarm")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("#who")).to_contain_text("wall-goyang (viewer)")
    expect(page.locator("#who-regions")).to_have_text("goyang")
    page.click("li.incident")
    expect(page.locator("#timeline li[data-kind=opened]")).to_contain_text("Water at")
    expect(page.locator("#detail-controls")).to_be_hidden()
    # Not one control on the page: no acknowledging, note, archiving or command.
    controls = "button.ack:visible, button.command:visible, #detail-controls :visible"
    expect(page.locator(controls)).to_have_count(0)
    expect(page.locator("li.actuator")).to_have_count(0)  # suwon's barrier is not goyang's
    city.screenshot("timeline-city-viewer")
    assert city.errors == []
    assert operator.errors == []
