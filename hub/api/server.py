"""aiohttp application: health and Prometheus metrics (the situation room's API builds on it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, field

from aiohttp import web

from hub import __version__, metrics
from hub.api.auth import Actor, authorized


@dataclass(slots=True)
class HealthReport:
    """What /api/health says; `ok` is false while any part the hub needs is down."""

    ok: bool
    mqtt_connected: bool
    influx_up: bool
    spooled_points: int
    # Topic filters the broker refused, with the reason: the hub misses what they carry.
    subscriptions_refused: dict[str, str] = field(default_factory=dict)
    # False while the storage buffer is full: the broker holds new messages for the hub.
    taking_readings: bool = True
    # Why the on-disk spool refuses points (full, its disk full or failing), while it does.
    spool_refused: str | None = None
    rules_loaded: int = 0
    # Problems of the rule files on disk when a reload failed; the last good rules run.
    rule_errors: list[str] = field(default_factory=list)
    version: str = __version__
    # In a pair of hubs (docs/ha.md): "active" or "standby"; None for a hub on its own.
    role: str | None = None


HealthSource = Callable[[], HealthReport]
HEALTH: web.AppKey[HealthSource] = web.AppKey("health")


async def _health(request: web.Request) -> web.Response:
    report = request.app[HEALTH]()
    return web.json_response(asdict(report), status=200 if report.ok else 503)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(
        body=metrics.exposition(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors are JSON with a message, so clients never parse an HTML error page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason, "status": exc.status}, status=exc.status)


def build_app(
    health: Callable[[], HealthReport], public: Collection[str] = ("health", "metrics")
) -> web.Application:
    """The HTTP application; `health` reports the state of the hub's parts. Health and metrics
    need no token when `public` names them, else a viewer's (see `api.public`)."""
    app = web.Application(middlewares=[_json_errors])
    app[HEALTH] = health
    app.router.add_get("/api/health", _health if "health" in public else _viewer(_health))
    app.router.add_get("/metrics", _metrics if "metrics" in public else _viewer(_metrics))
    return app


def _viewer(handler: Handler) -> Handler:
    @authorized("viewer")
    async def checked(request: web.Request, _actor: Actor) -> web.StreamResponse:
        return await handler(request)

    return checked


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@contextlib.asynccontextmanager
async def serve_http(app: web.Application, listen: str) -> AsyncIterator[web.AppRunner]:
    """Serve `app` on `listen` ("host:port") until the block exits."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = _split_listen(listen)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        yield runner
    finally:
        await runner.cleanup()
