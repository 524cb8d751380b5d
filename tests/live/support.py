"""What the live-view tests share: the camera they watch, and ffmpeg processes pulling it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil

from hub.live.feed import redact
from tests.cameras.support import LocalCameras


@contextlib.contextmanager
def camera_stream(tmp: Path) -> Iterator[str]:
    """An RTSP camera on this machine for the length of the block; yields its URL.

    The one place the live tests get a camera from: point it at another server here.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    with LocalCameras(tmp) as cameras:  # the GStreamer server of the sample clips
        yield cameras.url("street-pan")


def ffmpeg_pulling(url: str) -> list[int]:
    """PIDs of the ffmpeg processes on this machine whose input is `url`, with or without
    credentials in it (the camera's upstream connections)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "ffmpeg" and url in [redact(arg) for arg in cmdline]:
            found.append(proc.pid)
    return found
