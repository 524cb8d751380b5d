"""Server-Sent Events for the situation room: one bounded queue per client.

A client that reads too slowly is not allowed to hold memory: when its queue is full, the
queue is emptied, the client is told to `resync` and its stream ends. The page then fetches
the current state again and reconnects, which costs one request instead of unbounded memory.
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
    dropped: bool = False


@dataclass(slots=True)
class Broadcaster:
    """Fans events out to every connected client without ever blocking the publisher."""

    queue_size: int = 256
    subscribers: set[Subscriber] = field(default_factory=set)
    resyncs: int = 0

    def subscribe(self) -> Subscriber:
        """A new client's queue."""
        sub = Subscriber(asyncio.Queue(maxsize=self.queue_size))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a client that went away."""
        self.subscribers.discard(sub)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for every client; a client whose queue is full is told to resync."""
        encoded = orjson.dumps(data)
        for sub in list(self.subscribers):
            if sub.dropped:
                continue
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


async def serve(request: web.Request, broadcaster: Broadcaster, hello: bytes) -> web.StreamResponse:
    """Stream events to one client until it leaves, falls behind or the hub stops."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
        }
    )
    await response.prepare(request)
    sub = broadcaster.subscribe()
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
