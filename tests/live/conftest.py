"""A live camera for the relay's tests: one fixture, so that the source is easy to repoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.services import LocalMosquitto
from tests.helpers import Peer
from tests.live.support import camera_stream


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[str]:
    """The RTSP URL of a camera on this machine (H.264, 640x360, a keyframe a second)."""
    with camera_stream(tmp_path) as url:
        yield url


@pytest.fixture
def sensors(mosquitto: LocalMosquitto, uid: str) -> Iterator[Peer]:
    """Sensors' side of the broker."""
    peer = Peer(mosquitto.url, f"sensors-{uid}")
    yield peer
    peer.close()
