"""The situation-room page in a real headless Chromium, against a hub process: a flood turns a
gauge red and an incident appears live; a viewer is offered no acknowledging, an operator
acknowledges it; a barrier command goes through its confirmation dialog."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.api.support import OPERATOR, VIEWER
from tests.browser.conftest import Room
from tests.helpers import Peer

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the broker and the browser share two busy cores


def test_the_page_loads_without_console_errors(open_room: Callable[[str], Room]) -> None:
    room = open_room(VIEWER)
    page = room.page
    expect(page.locator("path.sensor-wl-1.state-unknown")).to_have_count(1)
    expect(page.locator("#no-incidents")).to_be_visible()
    expect(page.locator("h1")).to_have_text("재난안전 상황실")  # Korean by default
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Disaster-safety situation room")
    expect(page.locator("li.actuator[data-id=bar-1]")).to_be_visible()
    room.screenshot("room-loaded")
    assert room.errors == []


def test_a_flood_shows_live_and_only_an_operator_acknowledges(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str
) -> None:
    viewer, operator = open_room(VIEWER), open_room(OPERATOR)
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        mosquitto_peer.publish(
            f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 22.0, "ts": now - ago})
        )
    for room in (viewer, operator):  # no reload: the stream brings both changes
        expect(room.page.locator("path.sensor-wl-1.state-alarm")).to_have_count(1, timeout=TIMEOUT)
        expect(room.page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    viewer.screenshot("flood-viewer")

    # A viewer is offered no control that would only answer 403.
    expect(viewer.page.locator("li.incident .ack")).to_have_count(0)
    expect(viewer.page.locator("li.actuator button")).to_have_count(0)
    expect(operator.page.locator("li.incident .ack")).to_have_count(1)
    expect(viewer.page.locator("#who")).to_contain_text("wall")

    operator.page.click("li.incident .ack")
    expect(operator.page.locator("li.incident.state-acknowledged")).to_contain_text("desk-1")
    # The viewer's page learns of it from the stream.
    expect(viewer.page.locator("li.incident.state-acknowledged")).to_have_count(1, timeout=TIMEOUT)
    operator.page.click("li.incident")
    expect(operator.page.locator("#detail")).to_be_visible()
    operator.page.locator("path.sensor-wl-1").dispatch_event("click")
    expect(operator.page.locator("#chart path.line")).to_have_count(1, timeout=TIMEOUT)
    operator.screenshot("flood-acknowledged")
    assert viewer.errors == []
    assert operator.errors == []


def test_a_barrier_command_is_confirmed_first(open_room: Callable[[str], Room]) -> None:
    room = open_room(OPERATOR)
    page = room.page
    page.click("#lang")  # English, to read the question
    commands: list[str] = []
    page.on("request", lambda r: commands.append(r.url) if "/command" in r.url else None)

    page.click("li.actuator[data-id=bar-1] .command-close")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_have_text("Close barrier North gate at up-1?")
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert commands == []  # cancelled: nothing was sent

    page.click("li.actuator[data-id=bar-1] .command-close")
    with page.expect_response(lambda r: r.url.endswith("/api/actuators/bar-1/command")) as sent:
        room.screenshot("barrier-confirm")
        page.click("#confirm-ok")
    assert sent.value.status == 202
    body = sent.value.json()
    assert body["command"]["action"] == "close"
    assert body["command"]["actor"] == "desk-1"
    expect(page.locator("#toast")).to_contain_text("Command sent")
    assert room.errors == []


def test_a_korean_font_is_installed_for_the_screenshots() -> None:
    """Labels are Korean by default: without a Hangul font the screenshots show boxes."""
    found = subprocess.run(
        ["fc-list", ":lang=ko", "family"], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip(), "no font with Hangul: scripts/install adds Debian's fonts-nanum"
