"""A camera's stream through its ffmpeg child: frames at the set size and rate, and a camera
that hangs (accepts, then sends nothing) is restarted while another goes on giving frames."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.streams.source import Stream
from tests.helpers import eventually
from tests.streams.support import walking_clip


@pytest.fixture
def silent_camera() -> Iterator[str]:
    """An HTTP 'camera' that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/video.ts"
    server.close()


async def test_frames_at_the_set_size_and_rate(tmp_path: Path) -> None:
    stream = Stream("walk", str(walking_clip(tmp_path)), fps=5, width=320, height=180)
    times = []
    # Closed on leaving, as a cancelled watch closes it: its ffmpeg is killed and reaped.
    async with contextlib.aclosing(stream.frames()) as frames:
        async for frame, ts in frames:
            assert frame.grey.shape == (180, 320)
            assert frame.bgr().shape == (180, 320, 3)
            times.append(ts)
            if len(times) == 11:
                break
    # Ten intervals at 5 fps, the clip playing in real time like a camera.
    assert 1.5 < times[-1] - times[0] < 2.6
    assert stream.state.up
    assert stream.state.frames == 11


async def test_a_hanging_camera_is_restarted_and_stops_no_other(
    tmp_path: Path, silent_camera: str
) -> None:
    hanging = Stream("hangs", silent_camera, fps=2, width=160, height=90, stall_after=1.0,
                     backoff_min=0.1, backoff_max=0.2)  # fmt: skip
    good = Stream("walk", str(walking_clip(tmp_path)), fps=5, width=160, height=90)
    frames: list[float] = []

    async def read(stream: Stream, into: list[float] | None) -> None:
        async for _, ts in stream.frames():
            if into is not None:
                into.append(ts)

    tasks = [asyncio.create_task(read(hanging, None)), asyncio.create_task(read(good, frames))]
    try:
        await eventually(lambda: hanging.state.reconnects >= 2, "the hanging camera restarted")
        assert not hanging.state.up
        assert "stalled" in hanging.state.reason or "ffmpeg exited" in hanging.state.reason
        count = len(frames)
        began = time.monotonic()
        await eventually(lambda: len(frames) >= count + 5, "frames from the good camera")
        assert time.monotonic() - began < 3
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
