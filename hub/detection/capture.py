"""Frame capture from cameras (RTSP, HTTP snapshot or MJPEG, local files) in worker processes.

Decoding video is CPU work and a camera can hang in ways no socket timeout catches (a stream
that trickles bytes, a stuck decoder), so every capture runs in a worker process under a hard
deadline: a worker that misses it is killed and replaced, and the caller gets a
`CaptureError` naming the camera and the reason, never a hang.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import queue
import signal
import socket
import ssl
import threading
import time
from base64 import b64encode
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeAlias
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import numpy.typing as npt

Image: TypeAlias = npt.NDArray[np.uint8]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_BODY = 32 * 1024 * 1024  # a snapshot or one MJPEG part; more is not a camera image
MAX_PARTS = 5  # MJPEG parts tried before giving up on a stream that sends no valid JPEG


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: a BGR image (height x width x 3) and when it was grabbed (epoch seconds)."""

    camera_id: str
    image: Image
    ts: float


@dataclass(frozen=True, slots=True)
class CaptureError:
    """A capture that failed, with the reason in words."""

    camera_id: str
    reason: str


CaptureResult: TypeAlias = Frame | CaptureError


class CaptureFailedError(Exception):
    """Raised inside a worker when a camera gives no frame; the message is the reason."""


# -- grabbing one frame (runs in a worker) --------------------------------------------------


def grab_image(url: str, *, connect_timeout: float, read_timeout: float) -> Image:
    """One BGR frame from `url`, in this process; raises CaptureFailedError."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _http(url, connect_timeout, read_timeout)
    if scheme in ("rtsp", "rtsps"):
        return _stream(url, connect_timeout, read_timeout)
    if scheme == "file":
        return _file(Path(unquote(urlsplit(url).path)))
    # A one-letter "scheme" is a Windows drive; anything else unknown is a mistake.
    if scheme and len(scheme) > 1:
        raise CaptureFailedError(f"unsupported URL scheme {scheme!r} (rtsp, http, https, file)")
    return _file(Path(url))


def _bgr(image: npt.NDArray[np.generic]) -> Image:
    # OpenCV's stubs type images loosely; its 8-bit colour images are uint8 already (no copy).
    return np.asarray(image, dtype=np.uint8)


def _decode(data: bytes, what: str) -> Image:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CaptureFailedError(f"{what} is not an image OpenCV can decode ({len(data)} bytes)")
    return _bgr(image)


def _file(path: Path) -> Image:
    if not path.is_file():
        raise CaptureFailedError(f"no such file: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _decode(path.read_bytes(), str(path))
    capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok or image is None:
        raise CaptureFailedError(f"{path} is neither an image nor a video OpenCV can read")
    return _bgr(image)


def _stream(url: str, connect_timeout: float, read_timeout: float) -> Image:
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(connect_timeout * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout * 1000),
    ]
    start = time.monotonic()
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    try:
        if not capture.isOpened():
            if time.monotonic() - start >= 0.9 * connect_timeout:
                # Connected (or not) but nothing came back: a hung camera, not a wrong path.
                raise CaptureFailedError(
                    f"could not open the stream: timed out after {connect_timeout:g} s"
                )
            raise CaptureFailedError(f"could not open the stream: {_why_not(url, connect_timeout)}")
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok or image is None:
        raise CaptureFailedError("the stream opened but gave no frame in time")
    return _bgr(image)


def _why_not(url: str, connect_timeout: float) -> str:
    """Why a stream did not open, in words: OpenCV only says that it did not."""
    parts = urlsplit(url)
    try:
        port = parts.port or 554
        with socket.create_connection((parts.hostname or "", port), timeout=connect_timeout):
            pass
    except (OSError, ValueError) as exc:
        return _describe(exc)
    return "the server answers but sent no stream (not found at this path, or not H.264/H.265?)"


def _http(url: str, connect_timeout: float, read_timeout: float) -> Image:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
    headers = {"Accept": "image/jpeg, multipart/x-mixed-replace, */*"}
    if parts.username is not None:
        # Cameras commonly take their credentials in the URL: user:password@host.
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + b64encode(token).decode("ascii")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise CaptureFailedError(f"HTTP {resp.status} {resp.reason}")
        kind = resp.getheader("Content-Type", "").lower()
        if kind.startswith("multipart/"):
            return _mjpeg(resp)
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise CaptureFailedError(f"snapshot larger than {MAX_BODY} bytes")
        return _decode(body, "the snapshot")
    except (OSError, http.client.HTTPException) as exc:
        raise CaptureFailedError(f"HTTP: {_describe(exc)}") from None
    finally:
        conn.close()


def _mjpeg(resp: http.client.HTTPResponse) -> Image:
    # Read the multipart stream ourselves: the response is already open and its content type
    # said what it is, so a second connection through OpenCV would only add a round trip.
    # Parts are found by their "--" line rather than the declared boundary, which some
    # cameras get wrong.
    for _ in range(MAX_PARTS):
        line = resp.readline(1024)
        while line and not line.startswith(b"--"):
            line = resp.readline(1024)
        if not line:
            break
        length = None
        while (line := resp.readline(1024).strip()) != b"":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value)
        if length is not None and length <= MAX_BODY:
            data = resp.read(length)
        else:
            data, line = b"", resp.readline(MAX_BODY)
            while line and not line.startswith(b"--") and len(data) <= MAX_BODY:
                data, line = data + line, resp.readline(MAX_BODY)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return _bgr(image)
    raise CaptureFailedError("the MJPEG stream gave no decodable JPEG")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return str(exc) or type(exc).__name__


def _serve(conn: Connection) -> None:
    """A worker's loop: take (url, connect timeout, read timeout), answer a frame or a reason."""
    # Ctrl-C is for the parent, which stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # RTSP over TCP: cameras behind NAT or firewalls rarely get UDP through, and interleaved
    # TCP never loses a packet in the middle of a keyframe. A 1 s probe instead of 5 s: one
    # frame is wanted, not the stream's exact frame rate.
    os.environ.setdefault(
        "OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;1000000"
    )
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        url, connect_timeout, read_timeout = job
        try:
            image = grab_image(url, connect_timeout=connect_timeout, read_timeout=read_timeout)
            conn.send(("frame", image, time.time()))
        except CaptureFailedError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:  # a bug or an OpenCV error still gets an answer
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


# -- the worker pool (runs in the hub) --------------------------------------------------------


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self) -> None:
        # spawn, not fork: the hub has threads and an event loop that a fork would copy.
        context = get_context("spawn")
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        if not self.ready and self.conn.poll(timeout):
            try:
                self.ready = self.conn.recv() == "ready"
            except EOFError:
                return False
        return self.ready

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class CapturePool:
    """Worker processes that grab frames, each capture under a hard deadline."""

    def __init__(
        self,
        workers: int = 2,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 3.0,
        deadline: float = 8.0,
        start_timeout: float = 60.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        # A fresh worker imports OpenCV first; that time is not the camera's fault.
        self.start_timeout = start_timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._closed = False
        for _ in range(workers):
            self._idle.put(self._spawn())
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="capture")

    def _spawn(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._workers.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        with self._lock:
            self._workers.discard(worker)
        return self._spawn()

    def grab(self, camera_id: str, url: str) -> CaptureResult:
        """One frame from a camera, or why not; blocks for at most about `deadline` seconds."""
        if self._closed:
            return CaptureError(camera_id, "the capture pool is closed")
        worker = self._idle.get()
        try:
            if not worker.wait_ready(self.start_timeout):
                worker = self._replace(worker)
                return CaptureError(camera_id, "capture worker did not start")
            worker.conn.send((url, self.connect_timeout, self.read_timeout))
            if not worker.conn.poll(self.deadline):
                worker = self._replace(worker)
                return CaptureError(camera_id, f"no frame within the {self.deadline:g} s deadline")
            try:
                answer = worker.conn.recv()
            except EOFError:
                code = worker.process.exitcode
                worker = self._replace(worker)
                return CaptureError(camera_id, f"capture worker died (exit code {code})")
        except BaseException:
            worker = self._replace(worker)
            raise
        finally:
            self._idle.put(worker)
        if answer[0] == "frame":
            return Frame(camera_id, answer[1], answer[2])
        return CaptureError(camera_id, answer[1])

    async def capture(self, camera_id: str, url: str) -> CaptureResult:
        """`grab` off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.grab, camera_id, url)

    async def capture_many(self, cameras: Iterable[tuple[str, str]]) -> list[CaptureResult]:
        """Frames from several (camera id, url) pairs at once, in their order."""
        return list(await asyncio.gather(*(self.capture(cid, url) for cid, url in cameras)))

    def close(self) -> None:
        """Stop every worker; captures under way end with an error."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.kill()

    def __enter__(self) -> CapturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
