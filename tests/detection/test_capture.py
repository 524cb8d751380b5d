"""Frame capture in worker processes from real RTSP, HTTP and MJPEG servers and local files."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web

from hub.detection.capture import CaptureError, CapturePool, Frame, grab_image
from hub.services import free_port
from tests.cameras.support import HEIGHT, WIDTH, LocalCameras
from tests.helpers import eventually


def picture(width: int = 160, height: int = 120) -> np.ndarray:  # type: ignore[type-arg]
    """A test image: a blue left half and a red right half."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    image[:, width // 2 :] = (0, 0, 255)
    return image


def jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", picture())
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def pool() -> Iterator[CapturePool]:
    with CapturePool(2, connect_timeout=2, read_timeout=2, deadline=6) as p:
        yield p


@pytest.fixture
async def http_camera() -> AsyncIterator[str]:
    """A camera's web server: /snapshot.jpg, /mjpeg (a stream), /broken and /missing."""

    async def snapshot(request: web.Request) -> web.Response:
        return web.Response(body=jpeg(), content_type="image/jpeg")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(body=b"not a jpeg", content_type="image/jpeg")

    async def mjpeg(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "multipart/x-mixed-replace; boundary=frame"
        await resp.prepare(request)
        data = jpeg()
        while True:  # until the client hangs up
            part = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
            await resp.write(part.encode() + data + b"\r\n")
            await asyncio.sleep(0.1)  # a 10 fps camera

    app = web.Application()
    app.router.add_get("/snapshot.jpg", snapshot)
    app.router.add_get("/broken", broken)
    app.router.add_get("/mjpeg", mjpeg)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def assert_picture(result: object) -> None:
    assert isinstance(result, Frame), result
    assert result.image.shape == (120, 160, 3)
    # JPEG is lossy: compare colours roughly (BGR: blue on the left, red on the right).
    assert tuple(result.image[60, 20]) == pytest.approx((255, 0, 0), abs=30)
    assert tuple(result.image[60, 140]) == pytest.approx((0, 0, 255), abs=30)


async def test_an_rtsp_stream(pool: CapturePool, local_cameras: LocalCameras) -> None:
    before = time.time()
    result = await pool.capture("cam-1", local_cameras.url("street-pan"))
    assert isinstance(result, Frame), result
    assert result.camera_id == "cam-1"
    assert result.image.shape == (HEIGHT, WIDTH, 3)
    assert result.image.dtype == np.uint8
    assert result.image.std() > 20  # a picture, not a grey or green decoder placeholder
    assert before <= result.ts <= time.time()


async def test_several_clients_of_one_stream_at_once(
    pool: CapturePool, local_cameras: LocalCameras
) -> None:
    url = local_cameras.url("people-pan")
    frames = await pool.capture_many([("a", url), ("b", url)])
    assert all(isinstance(f, Frame) and f.image.shape == (HEIGHT, WIDTH, 3) for f in frames)


def test_a_stream_that_is_not_served_is_an_error(
    pool: CapturePool, local_cameras: LocalCameras
) -> None:
    result = pool.grab("nowhere", local_cameras.url("no-such-clip"))
    assert result == CaptureError(
        "nowhere",
        "could not open the stream: the server answers but sent no stream "
        "(not found at this path, or not H.264/H.265?)",
    )


async def test_the_http_snapshot_camera_moves(
    pool: CapturePool, local_cameras: LocalCameras
) -> None:
    url = local_cameras.snapshot_url("people-zoom")
    first = await pool.capture("snap", url)
    assert isinstance(first, Frame), first
    assert first.image.shape == (HEIGHT, WIDTH, 3)

    async def moved() -> bool:
        later = await pool.capture("snap", url)
        assert isinstance(later, Frame), later
        return float(np.abs(later.image.astype(int) - first.image).mean()) > 1

    await eventually(moved, "a later snapshot that differs", timeout=5)


async def test_an_http_snapshot_and_an_mjpeg_stream(pool: CapturePool, http_camera: str) -> None:
    snapshot, stream = await pool.capture_many(
        [("snap", f"{http_camera}/snapshot.jpg"), ("mjpeg", f"{http_camera}/mjpeg")]
    )
    assert_picture(snapshot)
    assert_picture(stream)
    assert (snapshot.camera_id, stream.camera_id) == ("snap", "mjpeg")  # type: ignore[union-attr]


async def test_http_errors_say_what_went_wrong(pool: CapturePool, http_camera: str) -> None:
    missing, broken = await pool.capture_many(
        [("a", f"{http_camera}/missing"), ("b", f"{http_camera}/broken")]
    )
    assert missing == CaptureError("a", "HTTP 404 Not Found")
    assert isinstance(broken, CaptureError)
    assert "not an image" in broken.reason


def test_local_image_and_video_files(pool: CapturePool, tmp_path: Path) -> None:
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), picture())
    video = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=160x120:rate=5:duration=1", "-c:v", "libx264", str(video)],
        check=True, timeout=30,
    )  # fmt: skip
    assert_picture(pool.grab("still", str(image)))
    from_video = pool.grab("clip", f"file://{video}")
    assert isinstance(from_video, Frame), from_video
    assert from_video.image.shape == (120, 160, 3)
    assert pool.grab("gone", str(tmp_path / "gone.jpg")) == CaptureError(
        "gone", f"no such file: {tmp_path / 'gone.jpg'}"
    )


def test_a_dead_camera_is_refused_quickly(pool: CapturePool) -> None:
    port = free_port()  # nothing listens there
    start = time.monotonic()
    http = pool.grab("dead", f"http://127.0.0.1:{port}/snapshot.jpg")
    stream = pool.grab("dead", f"rtsp://127.0.0.1:{port}/cam")
    assert time.monotonic() - start < pool.deadline
    assert http == CaptureError("dead", "HTTP: connection refused")
    assert stream == CaptureError("dead", "could not open the stream: connection refused")


def test_a_silent_http_camera_times_out(pool: CapturePool, silent_server: int) -> None:
    start = time.monotonic()
    result = pool.grab("silent", f"http://127.0.0.1:{silent_server}/snapshot.jpg")
    assert result == CaptureError("silent", "HTTP: timed out")
    assert time.monotonic() - start < pool.read_timeout + 1.5


def test_a_hanging_camera_is_killed_at_the_deadline_and_the_pool_recovers(
    silent_server: int, tmp_path: Path
) -> None:
    image = tmp_path / "still.jpg"
    image.write_bytes(jpeg())
    # Socket timeouts longer than the deadline: only the worker's kill can end the capture.
    with CapturePool(1, connect_timeout=60, read_timeout=60, deadline=1.0) as pool:
        assert isinstance(pool.grab("warm", str(image)), Frame)
        start = time.monotonic()
        result = pool.grab("hung", f"rtsp://127.0.0.1:{silent_server}/cam")
        assert time.monotonic() - start < 2.5
        assert result == CaptureError("hung", "no frame within the 1 s deadline")
        assert_picture(pool.grab("after", str(image)))


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(Exception, match="unsupported URL scheme 'ftp'"):
        grab_image("ftp://camera/x.jpg", connect_timeout=1, read_timeout=1)
