"""The relay against a real RTSP camera and real ffmpeg processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.live.feed import Source
from hub.live.relay import RelaySettings, build_relay_app
from hub.live.tickets import sign
from hub.live.ts import PAT_PID, pid
from hub.services import free_port
from tests.helpers import eventually
from tests.live.support import camera_stream, ffmpeg_pulling

SECRET = "relay-test-secret"


class RelayUnderTest:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    def url(self, camera: str, purpose: str = "view") -> str:
        ticket = sign(SECRET, purpose, camera, int(time.time()) + 60)
        if purpose == "status":
            return f"{self.base}/status?t={ticket}"
        if purpose == "warm":
            return f"{self.base}/live/{camera}/warm?t={ticket}"
        return f"{self.base}/live/{camera}.ts?t={ticket}"

    async def status(self) -> dict[str, object]:
        async with self.session.get(self.url("*", "status")) as resp:
            assert resp.status == 200
            return dict(await resp.json())


async def start_relay(
    sources: Mapping[str, Source], **settings: float
) -> AsyncIterator[RelayUnderTest]:
    port = free_port()
    app = build_relay_app(RelaySettings(dict(sources), SECRET, **settings))  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield RelayUnderTest(f"http://127.0.0.1:{port}", session)
    await runner.cleanup()


@pytest.fixture
async def relay(camera: str) -> AsyncIterator[RelayUnderTest]:
    sources = {
        "open": Source("open", camera, blur=False),
        "private": Source("private", camera, blur=True),
        "gone": Source("gone", "rtsp://admin:hunter2@127.0.0.1:1/stream", blur=False),
        "snapshot": Source("snapshot", "http://admin:hunter2@10.0.0.9/snap.jpg", blur=False),
    }
    async for r in start_relay(sources, idle_after=1.0, private_width=160):
        yield r


async def read(resp: aiohttp.ClientResponse, size: int) -> bytes:
    return await asyncio.wait_for(resp.content.readexactly(size), 10)


def probe(data: bytes, tmp: Path) -> dict[str, object]:
    path = tmp / "sample.ts"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=20,
    )
    streams = json.loads(out.stdout)["streams"]
    return dict(streams[0])


async def test_two_viewers_share_one_upstream_and_start_on_a_keyframe(
    relay: RelayUnderTest, camera: str, tmp_path: Path
) -> None:
    async with (
        relay.session.get(relay.url("open")) as first,
        relay.session.get(relay.url("open")) as second,
    ):
        assert (first.status, second.status) == (200, 200), await first.text()
        assert first.headers["Content-Type"] == "video/mp2t"
        a, b = await read(first, 188 * 100), await read(second, 188 * 100)
        assert pid(a[:188]) == PAT_PID  # the tables first, then the cached keyframe
        assert pid(b[:188]) == PAT_PID
        assert len(ffmpeg_pulling(camera)) == 1
        status = await relay.status()
        assert status["upstreams_started"] == 1
        assert status["feeds"]["open"]["viewers"] == 2  # type: ignore[index]
        stream = probe(a + await read(first, 188 * 200), tmp_path)
        # Copied as the camera sends it: same codec, same size, no second encoding.
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)


async def test_a_camera_whose_faces_must_be_blurred_is_shown_small(
    relay: RelayUnderTest, tmp_path: Path
) -> None:
    async with relay.session.get(relay.url("private")) as resp:
        assert resp.status == 200, await resp.text()
        stream = probe(await read(resp, 188 * 300), tmp_path)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 160, 90)


async def test_an_idle_feed_stops_and_its_upstream_goes(relay: RelayUnderTest, camera: str) -> None:
    async with relay.session.get(relay.url("open")) as resp:
        await read(resp, 188 * 10)
        assert len(ffmpeg_pulling(camera)) == 1
    await eventually(lambda: not ffmpeg_pulling(camera), "the idle upstream to stop", timeout=10)
    status = await relay.status()
    assert status["feeds"] == {}


async def test_no_ticket_no_stream(relay: RelayUnderTest, camera: str) -> None:
    for url, status, words in [
        (f"{relay.base}/live/open.ts", 403, "a ticket is"),
        (relay.url("private").replace("/private.", "/open."), 403, "not for view on camera open"),
        (relay.url("open", "warm").replace("/warm", ".ts"), 403, "not for view"),
        (relay.url("nowhere"), 404, "no camera 'nowhere'"),
        (f"{relay.base}/status?t=1.x", 403, "not for status"),
    ]:
        async with relay.session.get(url) as resp:
            assert resp.status == status, url
            assert words in (await resp.json())["error"]
    assert not ffmpeg_pulling(camera)  # nothing refused reached the camera


async def test_a_camera_that_fails_says_why_without_its_password(relay: RelayUnderTest) -> None:
    async with relay.session.get(relay.url("gone")) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "camera gone gave no picture" in message
    assert "Connection refused" in message
    assert "hunter2" not in message
    assert "admin" not in message
    async with relay.session.get(relay.url("snapshot")) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert (
        message
        == "camera snapshot has no live stream: its url http://10.0.0.9/snap.jpg is not rtsp://"
    )
    async with relay.session.get(relay.url("open")) as resp:  # the others are untouched
        assert resp.status == 200


async def test_over_a_websocket_the_handshake_does_not_wait_for_the_picture(
    relay: RelayUnderTest,
) -> None:
    """A browser lets one WebSocket to a host be connecting at a time: the handshake comes
    at once (a wall's cold cameras start together), and a camera with no picture closes the
    socket saying why."""
    ws_url = relay.url("gone").replace("http", "ws", 1)
    # The handshake succeeds although the camera has no picture (waiting for it first would
    # answer the handshake with a 502, and ws_connect would raise).
    async with relay.session.ws_connect(ws_url) as ws:
        message = await asyncio.wait_for(ws.receive(), 15)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == aiohttp.WSCloseCode.INTERNAL_ERROR
    assert "camera gone gave no picture" in str(message.extra)
    assert "hunter2" not in str(message.extra)


async def test_a_camera_that_dies_ends_the_stream_and_the_next_view_says_why(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(camera_stream(tmp_path))
        relays = start_relay({"cam": Source("cam", url, blur=False)}, first_picture=3.0)
        relay = await anext(relays)
        try:
            async with relay.session.get(relay.url("cam")) as resp:
                await read(resp, 188 * 10)
                stack.close()  # the camera goes away while it is watched

                async def to_the_end() -> None:
                    while await resp.content.read(65536):
                        pass

                # ffmpeg gives a silent camera 5 s; the viewer's stream then ends.
                await asyncio.wait_for(to_the_end(), 15)
            async with relay.session.get(relay.url("cam")) as resp:
                assert resp.status == 502
                assert "camera cam gave no picture" in (await resp.json())["error"]
        finally:
            await relays.aclose()
