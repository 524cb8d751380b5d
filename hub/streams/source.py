"""A camera's stream as frames: an ffmpeg child decodes it (off the event loop, in a process
of its own) and writes raw frames of a fixed size, at the analysed rate, to a pipe.

Frames come as the decoder makes them (I420: a full-size grey plane, then quarter-size colour
planes), half the bytes of BGR. Motion gating reads the grey plane as it is; the colour
picture is made only for the frames the detector or a snapshot needs (about one in ten).

A stream that ends, fails to open or stalls (no frame for `stall_after`) is restarted with
exponential backoff and jitter; the camera's state (up or down, since when, why) is kept for
health reports and stream events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger("hub.streams.source")

Image = npt.NDArray[np.uint8]
# How much of ffmpeg's complaint is kept as the reason a stream is down.
_REASON_CHARS = 300


@dataclass(slots=True)
class Frame:
    """One decoded frame: `grey` at once, `bgr()` made on first use and kept."""

    planes: Image  # I420, (height * 3 / 2) rows of `width`
    width: int
    height: int
    _bgr: Image | None = None

    @property
    def grey(self) -> Image:
        """The luma plane: the frame in grey, no copy."""
        return self.planes[: self.height]

    def bgr(self) -> Image:
        """The frame in colour (BGR, height x width x 3)."""
        if self._bgr is None:
            self._bgr = np.asarray(cv2.cvtColor(self.planes, cv2.COLOR_YUV2BGR_I420), np.uint8)
        return self._bgr


@dataclass(slots=True)
class StreamState:
    """What is known of one camera's stream, for health and events."""

    up: bool = False
    since: float = 0.0  # epoch seconds of the last change
    reason: str = "not opened yet"
    frames: int = 0
    reconnects: int = 0
    ups: int = 0  # times it came up: a report sampled now and then misses no return


def ffmpeg_command(url: str, fps: float, width: int, height: int, timeout: float) -> list[str]:
    """The ffmpeg command line that decodes `url` to raw I420 frames on stdout (`width` and
    `height` even)."""
    scheme = urlsplit(url).scheme.lower()
    source: list[str] = []
    if scheme in ("rtsp", "rtsps"):
        # TCP: a camera across a city loses UDP packets; timeout in microseconds.
        source = ["-rtsp_transport", "tcp", "-timeout", str(int(timeout * 1e6))]
    elif scheme in ("http", "https"):
        source = ["-rw_timeout", str(int(timeout * 1e6))]
    else:
        # A local file (tests, demos) plays at its own rate, round and round, like a camera.
        source = ["-re", "-stream_loop", "-1"]
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1",
        # A second of probing: a camera's stream is one known video track.
        "-analyzeduration", "1000000", *source, "-i", url, "-an", "-sn", "-dn",
        "-vf", f"fps={fps:g},scale={width}:{height}",
        "-pix_fmt", "yuv420p", "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip


class Stream:
    """Frames of one camera for as long as it is iterated; never raises for the camera's faults."""

    def __init__(
        self,
        camera: str,
        url: str,
        *,
        fps: float,
        width: int,
        height: int,
        stall_after: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.camera = camera
        self.url = url
        self.fps = fps
        self.width = width
        self.height = height
        self.stall_after = stall_after
        self.backoff = (backoff_min, backoff_max)
        self.state = StreamState(since=time.time())
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height}: width and height must be even")
        self._frame_bytes = width * height * 3 // 2

    def _down(self, reason: str) -> None:
        if self.state.up or self.state.reason != reason:
            log.warning("camera %s: stream down: %s", self.camera, reason)
        if self.state.up:
            self.state.since = time.time()
        self.state.up = False
        self.state.reason = reason

    async def frames(self) -> AsyncIterator[tuple[Frame, float]]:
        """Frames and the time each was read (epoch seconds), reconnecting for ever."""
        attempt = 0
        while True:
            began = time.monotonic()
            async for item in self._session():
                yield item
            self.state.reconnects += 1
            if time.monotonic() - began > self.backoff[1]:
                attempt = 0  # it held for a while: start the backoff again
            low, high = self.backoff
            delay = random.uniform(low / 2, min(high, low * 2 ** min(attempt, 20)))
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> AsyncIterator[tuple[Frame, float]]:
        command = ffmpeg_command(self.url, self.fps, self.width, self.height, self.stall_after)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=self._frame_bytes * 2,
            )
        except OSError as exc:
            self._down(f"cannot start ffmpeg: {exc}")
            return
        assert proc.stdout is not None
        assert proc.stderr is not None
        errors = asyncio.create_task(proc.stderr.read(), name=f"ffmpeg-stderr-{self.camera}")
        try:
            while True:
                try:
                    async with asyncio.timeout(self.stall_after):
                        data = await proc.stdout.readexactly(self._frame_bytes)
                except TimeoutError:
                    self._down(f"no frame for {self.stall_after:g}s (stalled)")
                    return
                except asyncio.IncompleteReadError:
                    break
                now = time.time()
                if not self.state.up:
                    log.info("camera %s: stream up", self.camera)
                    self.state.up, self.state.since, self.state.reason = True, now, ""
                    self.state.ups += 1
                self.state.frames += 1
                planes = np.frombuffer(data, np.uint8).reshape(self.height * 3 // 2, self.width)
                yield Frame(planes, self.width, self.height), now
            # ffmpeg ended the stream: what it said last is the reason.
            code = await proc.wait()
            try:
                async with asyncio.timeout(2):
                    said = (await errors).decode(errors="replace").strip()
            except TimeoutError:
                said = ""
            tail = said.splitlines()[-1][:_REASON_CHARS] if said else ""
            self._down(f"ffmpeg exited with code {code}" + (f": {tail}" if tail else ""))
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await proc.wait()
            errors.cancel()
