"""The relay server (`hub relay`): serves each camera's live MPEG-TS to ticket holders.

    GET  /live/{camera}.ts?t=TICKET      the stream (video/mp2t), from the last keyframe on;
                                         a WebSocket upgrade gets it as binary messages
    POST /live/{camera}/warm?t=TICKET    start the camera's upstream before anyone watches
    GET  /status?t=TICKET                feeds, their viewers and ffmpeg PIDs (ticket for "*")
    GET  /health                         200 once the relay serves

A feed starts with its first viewer (or a warm-up) and stops `idle_after` after its last
viewer left. A camera that fails answers 502 with the reason, and touches no other camera.
The hub starts a relay as a child process and hands it the cameras and the secret on stdin;
a site can run relays on their own with `hub relay -c hub.yaml --listen HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO

import orjson
from aiohttp import WSCloseCode, web

from hub.live.feed import Feed, FeedError, Source
from hub.live.tickets import TicketError, check

log = logging.getLogger("hub.live")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """What a relay needs: the cameras, the ticket secret and its timings."""

    sources: Mapping[str, Source]
    secret: str
    idle_after: float = 30.0
    first_picture: float = 10.0
    private_width: int = 320

    def to_json(self) -> bytes:
        """The settings as the hub hands them to its child relay (on stdin, never argv)."""
        return orjson.dumps(
            {
                "cameras": {c: {"url": s.url, "blur": s.blur} for c, s in self.sources.items()},
                "secret": self.secret,
                "idle_after": self.idle_after,
                "first_picture": self.first_picture,
                "private_width": self.private_width,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> RelaySettings:
        raw = orjson.loads(data)
        sources = {c: Source(c, str(v["url"]), bool(v["blur"])) for c, v in raw["cameras"].items()}
        return cls(
            sources,
            str(raw["secret"]),
            float(raw["idle_after"]),
            float(raw["first_picture"]),
            int(raw["private_width"]),
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": message, "status": status},
        status=status,
        headers={"Access-Control-Allow-Origin": "*"},
    )


class Relay:
    """The feeds of one relay, started on demand and stopped when idle."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.feeds: dict[str, Feed] = {}
        self.upstreams_started = 0
        self._lock = asyncio.Lock()

    async def feed(self, camera: str) -> Feed:
        """The camera's running feed, started if needed; FeedError if it has no picture."""
        async with self._lock:
            feed = self.feeds.get(camera)
            if feed is None or not feed.alive:
                if feed is not None:
                    await feed.stop()
                feed = Feed(
                    self.settings.sources[camera], private_width=self.settings.private_width
                )
                await feed.start()
                self.feeds[camera] = feed
                self.upstreams_started += 1
        await feed.first_picture(self.settings.first_picture)
        return feed

    async def reap(self) -> None:
        """Stop feeds nobody has watched for `idle_after`, and forget dead ones."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.idle_after / 4))
            now = time.monotonic()
            for camera, feed in list(self.feeds.items()):
                idle = (
                    not feed.viewers
                    and not feed.starting
                    and now - feed.idle_since >= self.settings.idle_after
                )
                # One that never gave a picture is not kept for the next viewer to wait on.
                stale = feed.starting and now - feed.started_at > 2 * self.settings.first_picture
                if idle or stale or not feed.alive:
                    self.feeds.pop(camera, None)
                    await feed.stop()

    async def close(self) -> None:
        for feed in list(self.feeds.values()):
            await feed.stop()
        self.feeds.clear()

    def status(self) -> dict[str, object]:
        return {
            "upstreams_started": self.upstreams_started,
            "feeds": {
                c: {
                    "alive": f.alive,
                    "viewers": len(f.viewers),
                    "pid": f.pid,
                    "keyframes": f.cache.keyframes,
                    "bytes_out": f.bytes_out,
                    "error": f.error if not f.alive else None,
                }
                for c, f in self.feeds.items()
            },
        }


RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)


def _checked(request: web.Request, purpose: str, camera: str) -> web.Response | None:
    relay = request.app[RELAY]
    try:
        check(relay.settings.secret, request.query.get("t", ""), purpose, camera, time.time())
    except TicketError as exc:
        return _error(403, f"{exc}")
    if camera != "*" and camera not in relay.settings.sources:
        return _error(404, f"no camera {camera!r} at this relay")
    return None


async def _stream(request: web.Request) -> web.StreamResponse:
    camera = request.match_info["camera"]
    if (refused := _checked(request, "view", camera)) is not None:
        return refused
    relay = request.app[RELAY]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _over_websocket(request, relay, camera)
    try:
        feed = await relay.feed(camera)
    except FeedError as exc:
        return _error(502, str(exc))
    viewer = feed.subscribe()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "video/mp2t",
                "Cache-Control": "no-store",
                "Access-Control-Allow-Origin": "*",
            }
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the player went away
            while (data := await viewer.queue.get()) is not None:
                await response.write(data)
        return response
    finally:
        feed.unsubscribe(viewer)


async def _over_websocket(request: web.Request, relay: Relay, camera: str) -> web.WebSocketResponse:
    """The same stream as binary WebSocket messages: a browser opens at most six HTTP/1.1
    connections to one host, and a wall holds more tiles than that.

    The handshake completes before the camera's first picture is waited for: a browser lets
    only one WebSocket to a host be connecting at a time, so a wall of cold cameras whose
    handshakes each waited for a picture would start one camera after another. A camera that
    gives no picture closes the socket with the reason (code 1011)."""
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    try:
        feed = await relay.feed(camera)
    except FeedError as exc:
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=str(exc)[:120].encode())
        return ws
    viewer = feed.subscribe()
    try:
        with contextlib.suppress(ConnectionResetError):
            while (data := await viewer.queue.get()) is not None and not ws.closed:
                await ws.send_bytes(data)
        await ws.close()
    finally:
        feed.unsubscribe(viewer)
    return ws


async def _warm(request: web.Request) -> web.Response:
    camera = request.match_info["camera"]
    if (refused := _checked(request, "warm", camera)) is not None:
        return refused
    relay = request.app[RELAY]
    try:
        feed = await relay.feed(camera)
    except FeedError as exc:
        return _error(502, str(exc))
    feed.idle_since = time.monotonic()  # warm for `idle_after` from now
    return web.json_response({"camera": camera, "warm": True})


async def _status(request: web.Request) -> web.Response:
    if (refused := _checked(request, "status", "*")) is not None:
        return refused
    return web.json_response(request.app[RELAY].status())


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_relay_app(settings: RelaySettings) -> web.Application:
    """The relay's aiohttp application; its feeds stop with it."""
    app = web.Application()
    relay = Relay(settings)
    app[RELAY] = relay

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        reaper = asyncio.create_task(relay.reap(), name="relay-reaper")
        yield
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        await relay.close()

    app.cleanup_ctx.append(lifetime)
    app.router.add_get("/live/{camera}.ts", _stream)
    app.router.add_post("/live/{camera}/warm", _warm)
    app.router.add_get("/status", _status)
    app.router.add_get("/health", _health)
    return app


async def serve(
    settings: RelaySettings, host: str, port: int, *, parent: IO[bytes] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, or until `parent` (the hub's pipe) closes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if parent is not None:
        # The hub keeps the pipe open while it lives: killed, it leaves no relay behind.
        def watch() -> None:
            parent.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, name="relay-parent", daemon=True).start()
    runner = web.AppRunner(build_relay_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("relay serving %d cameras on %s:%d", len(settings.sources), host, port)
    await stop.wait()
    await runner.cleanup()


def add_relay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="hub.yaml (default: $HUB_CONFIG, else ./hub.yaml)"
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", default="127.0.0.1:8081", help="where to serve"
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the cameras and the secret as a JSON line on stdin, and stop when stdin "
        "closes (how the hub starts its relay)",
    )


def relay_main(args: argparse.Namespace) -> int:
    """`hub relay`: serve the cameras of hub.yaml's inventory (or of stdin) live."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = None
    if args.stdin:
        settings = RelaySettings.from_json(sys.stdin.buffer.readline())
        parent = sys.stdin.buffer
    else:
        # Only a relay on its own reads hub.yaml (and so the whole configuration model).
        from hub.live.config import settings_from_file  # noqa: PLC0415

        try:
            settings = settings_from_file(args.config)
        except ValueError as exc:
            print(f"hub relay: not starting: {exc}", file=sys.stderr)
            return 1
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(settings, host or "127.0.0.1", int(port), parent=parent))
    return 0
