"""The operator's workflow in a real headless Chromium, against a hub process, a real barrier
controller and a notification channel on the broker: the detail opens beside the list, the
timeline follows the barrier as it closes and the message as it is delivered, a refused
command is overridden with a reason, every actuator kind offers its commands, the sensors
stay clickable where they crowd, the alarm sounds once and the CSV export downloads."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.actuators.controller import Controller
from tests.api.support import OPERATOR
from tests.browser.conftest import NO_LIVE, Room
from tests.helpers import Peer, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 20_000  # ms: the hub, the broker and the browser share two busy cores
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
"""


@pytest.fixture
def rules_text() -> str:
    return RULES


@pytest.fixture
def extra_sections() -> dict[str, Any]:
    channel = {"type": "mqtt", "topic": "{prefix}/notify/situation-room"}
    notify = {"channels": {"situation-room": channel}, "group_window": "100ms"}
    return {**NO_LIVE, "notify": notify}


def _gauge(peer: Peer, prefix: str, value: float) -> None:
    now = time.time()
    for ago in (2.0, 1.0, 0.0):
        peer.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": value, "ts": now - ago}))


def test_the_timeline_follows_the_barrier_and_the_message_and_an_override_needs_a_reason(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str, controller: Controller
) -> None:
    mosquitto_peer.subscribe(f"{prefix}/notify/#")
    room = open_room(OPERATOR)
    page = room.page
    page.click("#lang")
    _gauge(mosquitto_peer, prefix, 22.0)
    expect(page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    page.click("li.incident")

    # The detail opens beside the list, on screen, not below it.
    detail, incidents = page.locator("#detail"), page.locator("#incidents")
    expect(detail).to_be_visible()
    there, list_box = detail.bounding_box(), incidents.bounding_box()
    assert there is not None
    assert list_box is not None
    assert there["x"] >= list_box["x"] + list_box["width"]
    assert there["y"] < 300  # the top of the page, at 1400 x 900
    # The reading that tripped the rule, with its value and (canonical) unit.
    expect(page.locator("#detail .evidence .kind-reading")).to_contain_text("wl-1: 0.22 m")

    # The timeline follows the barrier as it closes and the message as it is delivered.
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-kind=command]", has_text="close bar-1: done")).to_have_count(
        1, timeout=TIMEOUT
    )
    delivered = timeline.locator("li[data-kind=notification]", has_text="situation-room")
    expect(delivered.first).to_contain_text("sent", timeout=TIMEOUT)
    assert any(t.endswith("/notify/situation-room") for t, _ in mosquitto_peer.received)
    site = page.locator("#detail-actuators")
    expect(site.locator("li.actuator[data-id=bar-1]")).to_contain_text("closed", timeout=TIMEOUT)
    assert controller.state == "closed"

    # Every kind offers the commands it takes: the sign its own.
    sign = site.locator("li.actuator[data-id=sign-1]")
    expect(sign.locator("button.command")).to_have_text(["Show", "Clear"])

    # Opening during the flood is refused by the interlock; an override needs a reason.
    site.locator("li.actuator[data-id=bar-1] .command-open").click()
    page.click("#confirm-ok")
    dialog = page.locator("#override")
    expect(dialog).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#override-why")).to_contain_text("interlock")
    page.click("#override-ok")  # no reason given: the dialog stays and says so
    expect(page.locator("#override-why")).to_have_text("Give a reason")
    expect(dialog).to_be_visible()
    page.fill("#override-reason", "crew trapped, opening by hand")
    page.click("#override-ok")
    override = timeline.locator("li[data-kind=override]")
    expect(override).to_contain_text("crew trapped, opening by hand", timeout=TIMEOUT)
    expect(override).to_contain_text("desk-1")
    wait_for(lambda: controller.state == "open", "the overridden open at the barrier")
    room.screenshot("workflow-override")

    page.click("#detail-close")
    expect(detail).to_be_hidden()
    # Chromium logs every answer >= 400 as an error; the interlock's 409 is the only one.
    assert room.errors == [
        "Failed to load resource: the server responded with a status of 409 (Conflict)"
    ]


def test_crowded_sensors_stay_clickable(open_room: Callable[[str], Room]) -> None:
    """A hundred gauges 90 m apart along one road: at the default zoom each has a marker of its
    own, none within 10 px of another, and each one clicked shows its own chart."""
    room = open_room(OPERATOR)
    page = room.page
    expect(page.locator("path.sensor")).to_have_count(104, timeout=TIMEOUT)
    centres: dict[str, tuple[float, float]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('path.sensor')].map((p) => {
            const r = p.getBoundingClientRect();
            const id = [...p.classList].find((c) => c.startsWith('sensor-')).slice(7);
            return [id, [r.x + r.width / 2, r.y + r.height / 2]];
        }))"""
    )
    points = list(centres.values())
    nearest = min(math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1 :])
    assert nearest >= 10, f"two sensors only {nearest:.1f} px apart"
    for sensor in ("wl-100", "wl-150", "wl-199"):
        page.locator(f"path.sensor-{sensor}").click()
        expect(page.locator("#chart-title")).to_contain_text(sensor)
    assert room.errors == []


def test_the_alarm_sounds_once_and_the_export_downloads(
    open_room: Callable[[str], Room], mosquitto_peer: Peer, prefix: str
) -> None:
    room = open_room(OPERATOR)
    page = room.page
    page.check("#sound")
    _gauge(mosquitto_peer, prefix, 22.0)
    expect(page.locator("li.incident.state-active")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("body")).to_have_attribute("data-alarms", "1", timeout=TIMEOUT)
    # Updates of the same incident (its actions going out) do not sound again.
    expect(page.locator("li.incident .badge")).to_be_visible()
    assert page.locator("body").get_attribute("data-alarms") == "1"

    with page.expect_download() as download:
        page.click("#export")
    path = download.value.path()
    text = path.read_text(encoding="utf-8-sig")
    header, *rows = text.splitlines()
    assert header.startswith("incident_id,rule,title")
    assert any(",underpass-flood,Flooding at" in row and ",opened," in row for row in rows)
    assert download.value.suggested_filename.startswith("incidents-")
    assert room.errors == []
