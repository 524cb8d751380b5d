"""Server-Sent Events for the situation room: one bounded queue per client.

A client that reads too slowly is not allowed to hold memory: when its queue is full, the
queue is emptied, the client is told to `resync` and its stream ends. The page then fetches
the current state again and reconnects, which costs one request instead of unbounded memory.

A client whose token has regions (a city's desk) gets only those regions' events: an event
published with a region goes to the clients that see it, and `publish_items` gives each such
client only its regions' items of a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("hub.api.stream")

_END = ("", b"")


@dataclass(eq=False, slots=True)
class Subscriber:
    """One connected client's queue of encoded events."""

    queue: asyncio.Queue[tuple[str, bytes]]
    regions: frozenset[str] | None = None  # None: every region's events
    dropped: bool = False


@dataclass(slots=True)
class Broadcaster:
    """Fans events out to every connected client without ever blocking the publisher."""

    queue_size: int = 256
    subscribers: set[Subscriber] = field(default_factory=set)
    resyncs: int = 0

    def subscribe(self, regions: frozenset[str] | None = None) -> Subscriber:
        """A new client's queue; with `regions`, it gets only events of those regions."""
        sub = Subscriber(asyncio.Queue(maxsize=self.queue_size), regions)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a client that went away."""
        self.subscribers.discard(sub)

    def publish(self, event: str, data: dict[str, Any], region: str | None = None) -> None:
        """Queue `event` for every client (with `region`: every client that sees it); a client
        whose queue is full is told to resync."""
        encoded = orjson.dumps(data)
        for sub in list(self.subscribers):
            if region is None or sub.regions is None or region in sub.regions:
                self._put(sub, event, encoded)

    def publish_items(self, event: str, key: str, items: list[dict[str, Any]]) -> None:
        """Queue `{key: items}` for every client; a client with regions gets only the items
        whose `region` it sees, and nothing when none is left."""
        encoded = orjson.dumps({key: items})
        some: dict[frozenset[str], bytes | None] = {}  # encoded once per set of regions
        for sub in list(self.subscribers):
            if sub.regions is None:
                self._put(sub, event, encoded)
                continue
            if sub.regions not in some:
                mine = [i for i in items if i.get("region") in sub.regions]
                some[sub.regions] = orjson.dumps({key: mine}) if mine else None
            part = some[sub.regions]
            if part is not None:
                self._put(sub, event, part)

    def _put(self, sub: Subscriber, event: str, encoded: bytes) -> None:
        if sub.dropped:
            return
        try:
            sub.queue.put_nowait((event, encoded))
        except asyncio.QueueFull:
            self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        self.resyncs += 1
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(("resync", b'{"reason": "the client read too slowly"}'))
        sub.queue.put_nowait(_END)

    def close(self) -> None:
        """End every stream (the hub is stopping)."""
        for sub in list(self.subscribers):
            if not sub.dropped:
                sub.dropped = True
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(_END)


def frame(event: str, data: bytes) -> bytes:
    """One SSE frame; JSON never holds a raw newline, so one `data:` line is enough."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


async def serve(
    request: web.Request,
    broadcaster: Broadcaster,
    hello: bytes,
    regions: frozenset[str] | None = None,
) -> web.StreamResponse:
    """Stream events to one client until it leaves, falls behind or the hub stops; with
    `regions`, only the events of those regions (and those of none, the heartbeat)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
        }
    )
    await response.prepare(request)
    sub = broadcaster.subscribe(regions)
    try:
        await response.write(b"retry: 2000\n\n" + frame("hello", hello))
        while True:
            event, data = await sub.queue.get()
            if not event:
                break
            await response.write(frame(event, data))
    except ConnectionResetError:
        return response  # the client went away: nothing to tell anyone
    finally:
        broadcaster.unsubscribe(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
