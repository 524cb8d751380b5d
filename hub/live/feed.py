"""One camera's upstream: an ffmpeg process that pulls its RTSP stream and remuxes it to
MPEG-TS, and the viewers it fans out to.

However many viewers watch, a camera has one ffmpeg and so one connection to the camera.
H.264 is copied as it comes (no decoding); a camera whose faces must be blurred is scaled
down to `private_width` pixels wide and encoded again, so that nobody is recognisable in it.
A viewer that reads too slowly is dropped (its player reconnects at the next keyframe)
rather than letting the relay's memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hub.live.ts import PMT_PID, VIDEO_PID, GopCache, StreamError

log = logging.getLogger("hub.live")

READ = 64 * 1024
VIEWER_QUEUE = (
    512  # reads (about 64 KiB at most each) a viewer may fall behind before it is dropped
)


class FeedError(RuntimeError):
    """The camera gave no picture: why, in words, without its credentials."""


@dataclass(frozen=True, slots=True)
class Source:
    """A camera as the relay knows it: its stream URL (credentials included) and privacy."""

    camera: str
    url: str
    blur: bool = True

    def check(self) -> None:
        """Raise FeedError unless the URL is one the relay can pull."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("rtsp", "rtsps"):
            shown = redact(self.url)
            raise FeedError(
                f"camera {self.camera} has no live stream: its url {shown} is not rtsp://"
            )


def redact(text: str) -> str:
    """Text with any `user:password@` of a URL in it removed."""
    out = []
    for word in text.split():
        parts = urlsplit(word) if "://" in word else None
        if parts is not None and "@" in parts.netloc:
            out.append(parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl())
        else:
            out.append(word)
    return " ".join(out)


def ffmpeg_command(source: Source, private_width: int) -> list[str]:
    """The ffmpeg that pulls `source` and writes MPEG-TS to its stdout."""
    if source.blur:
        # Faces must not be recognisable: the picture is made small enough, then encoded
        # with a keyframe a second so that viewers start quickly.
        video = [
            "-vf", f"scale={private_width}:-2",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", "25", "-keyint_min", "1", "-force_key_frames", "expr:gte(t,n_forced*1)",
        ]  # fmt: skip
    else:
        video = ["-c:v", "copy"]
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-flags", "low_delay",
        # The SDP names the codec and carries SPS and PPS: probing the stream only delays the
        # first picture (2.9 s instead of 0.3 s measured against the test camera).
        "-analyzeduration", "0", "-probesize", "32",
        "-rtsp_transport", "tcp", "-timeout", "5000000",  # a camera silent 5 s is gone
        "-i", source.url,
        "-map", "0:v:0", *video,
        "-f", "mpegts", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
        "-mpegts_pmt_start_pid", str(PMT_PID), "-mpegts_start_pid", str(VIDEO_PID),
        "pipe:1",
    ]  # fmt: skip


@dataclass(eq=False)
class Viewer:
    """One player's queue of MPEG-TS; None ends it."""

    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE))
    dropped: bool = False

    def put(self, data: bytes | None) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Feed:
    """A camera's ffmpeg, its keyframe cache and its viewers."""

    def __init__(self, source: Source, *, private_width: int = 320) -> None:
        self.source = source
        self.private_width = private_width
        self.viewers: set[Viewer] = set()
        self.cache = GopCache()
        self.error: str | None = None
        self.started_at = time.monotonic()
        self.idle_since = time.monotonic()
        self.bytes_out = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first = asyncio.Event()
        self._done = asyncio.Event()
        self._stderr: deque[str] = deque(maxlen=5)

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    @property
    def starting(self) -> bool:
        """Alive and still waiting for its first picture (not idle, whoever watches)."""
        return self.alive and not self._first.is_set()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start ffmpeg (FeedError if it cannot be started)."""
        self.source.check()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *ffmpeg_command(self.source, self.private_width),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise FeedError(f"camera {self.source.camera}: cannot start ffmpeg: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"feed-{self.source.camera}"),
            asyncio.create_task(self._errors(), name=f"feed-errors-{self.source.camera}"),
        ]

    async def first_picture(self, within: float) -> None:
        """Wait until a viewer would get a keyframe; FeedError if the camera gives none."""
        wait_first = asyncio.ensure_future(self._first.wait())
        wait_done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait(
                [wait_first, wait_done], timeout=within, return_when="FIRST_COMPLETED"
            )
        finally:
            wait_first.cancel()
            wait_done.cancel()
        if self._first.is_set() and self.alive:
            return
        if self._done.is_set():
            raise FeedError(self._why())
        raise FeedError(
            f"camera {self.source.camera} gave no picture within {within:g}s"
            + (f": {self._stderr[-1]}" if self._stderr else "")
        )

    def subscribe(self) -> Viewer:
        """A new viewer, starting at the cached keyframe."""
        viewer = Viewer()
        if (start := self.cache.start) is not None:
            viewer.put(start)
        self.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers:
            self.idle_since = time.monotonic()

    async def stop(self) -> None:
        """Stop ffmpeg (SIGTERM, then SIGKILL) and end every viewer's stream."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end()

    def _why(self) -> str:
        detail = "; ".join(self._stderr) or "the stream ended"
        if self._proc is not None and self._proc.returncode not in (None, 0):
            detail += f" (ffmpeg exit {self._proc.returncode})"
        return f"camera {self.source.camera} gave no picture: {redact(detail)}"

    def _end(self) -> None:
        if self._done.is_set():
            return
        if self.error is None:
            self.error = self._why()
        self._done.set()
        for viewer in self.viewers:
            viewer.put(None)

    async def _pump(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while data := await stdout.read(READ):
                whole = self.cache.feed(data)
                if not whole:
                    continue
                if not self._first.is_set() and self.cache.start is not None:
                    self.idle_since = time.monotonic()  # idle from its first picture on
                    self._first.set()
                for viewer in list(self.viewers):
                    viewer.put(whole)
                    self.bytes_out += len(whole)
            await self._proc.wait()
        except StreamError as exc:
            self._stderr.append(str(exc))
        finally:
            self._end()
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()

    async def _errors(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        async for line in self._proc.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr.append(redact(text))
                log.warning("live: %s: %s", self.source.camera, redact(text))
