"""A hub of an active/standby pair: campaign, act while leader, stand by otherwise.

The store is opened as a reader and kept current by its watch for as long as the process
runs: that is the standby's warm state. A hub that wins the leader key leads the store
(`lead`: its memory holds everything written before the epoch), builds the active hub's
parts from it (rules, commands in flight, notifications, incidents: each part restores
itself from the store as after a restart) and runs them. The MQTT client connects with the
fixed client id, which takes the session, and whatever the old active left unacknowledged,
over from a stale active hub.

Leadership lost (the keepalive failed, the local watchdog fired, a write was fenced): the
MQTT connection is closed first, then the parts are cancelled, the store follows etcd again
(its queue dropped) and the hub campaigns again. Every send of the active parts asks the
leadership (`valid()`) first as well, so a hub that wakes from a pause sends nothing even
before this task has run.

The standby answers `/api/health` (`role: standby`, `active: <name>`) and `/metrics`;
every other path answers 503 with the active hub's name, so that a client or a proxy tries
the other hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from hub import metrics
from hub.api import serve_http
from hub.config import HubConfig
from hub.ha.leader import Leadership
from hub.store.etcd import EtcdStore, open_etcd_store
from hub.store.etcd_client import EtcdError

log = logging.getLogger("hub.ha")

LEADER_KEY = "_ha/leader"


class ActiveHub(Protocol):
    """What the pair needs of the active hub's parts (hub.app.Hub)."""

    async def run(self, stop: asyncio.Event) -> None: ...
    async def abort(self) -> None: ...


# Builds the active hub's parts on the led store, their sends gated by the leadership.
BuildActive = Callable[[EtcdStore, Callable[[], bool]], ActiveHub]


def standby_app(name: str, leader: Callable[[], Awaitable[str | None]]) -> web.Application:
    """The standby's HTTP: health and metrics, and 503 naming the active hub for the rest."""

    async def active_name() -> str | None:
        with contextlib.suppress(EtcdError, TimeoutError):
            return await leader()
        return None

    async def health(_: web.Request) -> web.Response:
        active = await active_name()
        return web.json_response({"ok": True, "role": "standby", "name": name, "active": active})

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain")

    async def elsewhere(request: web.Request) -> web.Response:
        active = await active_name()
        where = f"the active hub is {active}" if active else "no hub is active just now"
        return web.json_response(
            {
                "error": f"{name} is the standby; {where}: send {request.method} "
                f"{request.path} there",
                "role": "standby",
                "active": active,
            },
            status=503,
            headers={"Retry-After": "1"},
        )

    app = web.Application()
    app.router.add_get("/api/health", health)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app


async def run_pair(config: HubConfig, build: BuildActive, stop: asyncio.Event) -> None:
    """Run one hub of a pair until `stop` is set; step down on the way out."""
    store = open_etcd_store(config.store, mode="reader")
    leadership = Leadership(
        store.client, store.prefix + LEADER_KEY, config.ha.name, ttl=config.ha.ttl
    )
    standby = standby_app(config.ha.name, leadership.leader)
    metrics.HA_ACTIVE.set(0)
    upkeep = asyncio.create_task(store.run(), name="store-upkeep")
    try:
        while not stop.is_set():
            async with serve_http(standby, config.api.listen):
                log.info("ha: %s is the standby; campaigning", config.ha.name)
                if not await _until(leadership.campaign(), stop):
                    break
                await store.lead(leadership)
            hub = build(store, leadership.valid)
            metrics.HA_ACTIVE.set(1)
            stopped = await _act(hub, leadership, stop)
            metrics.HA_ACTIVE.set(0)
            if stopped:
                break
            await store.follow()
    finally:
        if leadership.valid():
            await leadership.resign()
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await store.aclose()


async def _act(hub: ActiveHub, leadership: Leadership, stop: asyncio.Event) -> bool:
    """Run the active hub until stopped (True: drained, leadership given up) or until the
    leadership is lost (False: off the broker at once, the parts cancelled)."""
    hub_stop = asyncio.Event()
    running = asyncio.create_task(hub.run(hub_stop), name="active-hub")
    holding = asyncio.create_task(leadership.hold(), name="leadership")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait([running, holding, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if stop.is_set() and not holding.done():
        hub_stop.set()
        with contextlib.suppress(Exception):
            await running
        holding.cancel()
        await leadership.resign()
        return True
    reason = holding.result() if holding.done() else "the active hub's parts stopped"
    log.warning("ha: %s is no longer the active hub: %s", leadership.name, reason)
    # Off the broker first: nothing more goes out, and the session waits for the next
    # active hub. Then the lease goes, if it is still held, so the standby need not wait it.
    await _quietly(hub.abort())
    running.cancel()
    holding.cancel()
    for task in (running, holding):
        with contextlib.suppress(BaseException):
            await task
    await _quietly(leadership.resign())
    return False


async def _until(campaign: Awaitable[int], stop: asyncio.Event) -> bool:
    """Await the campaign unless `stop` comes first (False then)."""
    won = asyncio.ensure_future(campaign)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([won, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if won.done():
        won.result()
        return True
    won.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await won
    return False


async def _quietly(step: Awaitable[None]) -> None:
    try:
        async with asyncio.timeout(5.0):
            await step
    except Exception:
        log.exception("ha: stepping down")
