"""The hub's check of camera events, field by field, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.detection.camera_events import EventError, parse
from hub.inventory import Inventory, load_inventory
from tests.streams.support import camera_site


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory([camera_site(tmp_path, {"cam-1": {"url": "rtsp://cam/1"}})])


def test_a_stream_down_keeps_why_cut_to_length(inventory: Inventory) -> None:
    body = {"camera": "cam-1", "kind": "stream_down", "ts": 1.0, "detail": "refused " * 200}
    event = parse("p/camera-events/suwon/cam-1", json.dumps(body).encode(), inventory, "p")
    assert event.fields["detail"].startswith("refused refused")
    assert len(event.fields["detail"]) == 500
    body["detail"] = 12
    with pytest.raises(EventError, match="'detail' must be text or null"):
        parse("p/camera-events/suwon/cam-1", json.dumps(body).encode(), inventory, "p")
