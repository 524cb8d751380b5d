"""Real cameras for tests: the GStreamer RTSP server of `hub cameras serve` on free ports.

    from tests.cameras.support import LocalCameras

    def test_something(local_cameras: LocalCameras) -> None:  # the fixture, in tests/conftest.py
        url = local_cameras.url("people-pan")            # rtsp://127.0.0.1:PORT/people-pan
        snap = local_cameras.snapshot_url("street-pan")  # http://127.0.0.1:PORT/street-pan.jpg

`local_cameras` is one server for the whole test session (tests/conftest.py makes it known to
every test package). For a server of your own (to stop it mid-test), use
`with LocalCameras(tmp_path) as cameras: ...` or `start()` / `stop()`. Streams: people-pan
(two people, faces in view), street-pan (a bus and people), people-zoom; 640x360 H.264 at
10 frames/s with a keyframe every second. Tests that need them fail, naming the Debian
packages to install, when GStreamer's RTSP server is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.cameras.local import LocalCameras

__all__ = ["STREAMS", "LocalCameras", "local_cameras"]

STREAMS = ("people-pan", "people-zoom", "street-pan")
WIDTH, HEIGHT = 640, 360


@pytest.fixture(scope="session")
def local_cameras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCameras]:
    """The sample cameras, served for the whole session on free loopback ports."""
    with LocalCameras(tmp_path_factory.mktemp("cameras")) as cameras:
        yield cameras
