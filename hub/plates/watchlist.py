"""The hub's wanted-vehicle watch-list: kept in the store (space `plates.watchlist`, keyed by
the normalised plate), every change audited, and published to the stream workers retained on
`{prefix}/plates/watchlist` as keyed digests (hub.plates.listed) after each change, at every
connection to the broker, and when an entry's `until` passes. A component (hub.app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

from hub.mqtt import MqttError
from hub.plates.config import PlatesConfig
from hub.plates.listed import encode, watchlist_topic
from hub.plates.text import normalize
from hub.store import Changes, Store

log = logging.getLogger("hub.plates")

SPACE = "plates.watchlist"
WAKE_S = 60.0  # the longest the expiry loop sleeps, so a clock set forward is noticed


class WatchlistError(ValueError):
    """A plate or an entry the list cannot take, in a sentence."""


class Publisher(Protocol):
    def publish_nowait(self, topic: str, payload: bytes, retain: bool = False) -> object: ...


class Auditor(Protocol):
    """The audit trail (hub.audit.AuditLog): durable records for changes, plain ones for
    refusals."""

    def record(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> object: ...

    async def record_durable(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """A wanted plate: why, by whom, since and until when (epoch seconds; None: no end)."""

    plate: str
    reason: str
    added_by: str
    added_at: float
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the store and the API."""
        return asdict(self)


class Watchlist:
    """The watch-list and its publication; `add` and `remove` are durable and audited before
    they return."""

    name = "plates"
    topic_prefix: str | None = None
    subscriptions: Sequence[tuple[str, int]] = ()

    def __init__(
        self,
        settings: PlatesConfig,
        *,
        store: Store,
        audit: Auditor,
        publisher: Publisher,
        prefix: str,
        tokens: Sequence[Any] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.publisher = publisher
        self.topic = watchlist_topic(prefix)
        self.tokens = tuple(tokens)
        self.clock = clock
        self.pattern = re.compile(settings.pattern)
        self.entries = {k: Entry(**v) for k, v in store.load(SPACE).items()}
        self._changed = asyncio.Event()

    def plate(self, text: str) -> str:
        """`text` normalised, or WatchlistError if that is not a plate."""
        plate = normalize(text)
        if not self.pattern.fullmatch(plate):
            raise WatchlistError(
                f"{text!r} is not a plate: after spaces and hyphens are left out it must match "
                f"{self.settings.pattern} (such as 12가3456 or 123가4567)"
            )
        return plate

    def listed(self, plate: str) -> bool:
        """Whether the normalised `plate` is wanted now."""
        entry = self.entries.get(plate)
        return entry is not None and (entry.until is None or self.clock() < entry.until)

    def current(self) -> list[Entry]:
        """The entries not past their `until`, by plate."""
        return [self.entries[p] for p in sorted(self.entries) if self.listed(p)]

    async def add(self, text: str, reason: str, until: float | None, by: str) -> tuple[Entry, bool]:
        """List a plate (or change its reason and `until`); the entry, and whether it is new."""
        plate = self.plate(text)
        now = self.clock()
        if until is not None and until <= now:
            raise WatchlistError("'until' has passed already: give a time to come")
        new = plate not in self.entries
        if new and len(self.entries) >= self.settings.max_entries:
            raise WatchlistError(
                f"the watch-list holds {len(self.entries)} plates, plates.max_entries; "
                "remove some first"
            )
        entry = Entry(plate, reason, by, now, until)
        await self.store.commit_durable(Changes().put(SPACE, plate, entry.to_dict()))
        self.entries[plate] = entry
        await self.audit.record_durable(
            "watchlist", by, f"{'listed' if new else 'changed'} plate {plate}: {reason}",
            action="add" if new else "change", plate=plate, reason=reason, until=until,
        )  # fmt: skip
        self.publish()
        return entry, new

    async def remove(self, text: str, reason: str, by: str) -> Entry | None:
        """Take a plate off the list; the entry it had, or None when it was not listed."""
        plate = self.plate(text)
        entry = self.entries.get(plate)
        if entry is None:
            return None
        await self.store.commit_durable(Changes().delete(SPACE, plate))
        del self.entries[plate]
        detail = f"removed plate {plate}" + (f": {reason}" if reason else "")
        await self.audit.record_durable(
            "watchlist", by, detail, action="remove", plate=plate, reason=reason or None
        )
        self.publish()
        return entry

    def publish(self) -> None:
        """Send the current list's digests to the workers (retained); without a secret there
        is nothing to send (no camera reads plates)."""
        self._changed.set()
        key = self.settings.key
        if key is None:
            return
        plates = [(e.plate, e.until) for e in self.current()]
        try:
            self.publisher.publish_nowait(self.topic, encode(key, plates, self.clock()), True)
        except MqttError as exc:  # the broker is away: the next connection publishes it
            log.warning("plate watch-list not published: %s", exc)

    def on_connected(self, _connections: int) -> None:
        """A (re)connection: the broker may have lost the retained list."""
        self.publish()

    async def _expire(self) -> None:
        """Drop entries past their `until` (audited), and publish the list without them."""
        while True:
            now = self.clock()
            ends = [e.until for e in self.entries.values() if e.until is not None]
            wait = min([WAKE_S, *(max(0.0, u - now) for u in ends)])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 0.01):
                    await self._changed.wait()
            self._changed.clear()
            now = self.clock()
            gone = [e for e in self.entries.values() if e.until is not None and e.until <= now]
            for entry in gone:
                await self.store.commit_durable(Changes().delete(SPACE, entry.plate))
                del self.entries[entry.plate]
                await self.audit.record_durable(
                    "watchlist", "hub", f"plate {entry.plate} expired from the watch-list",
                    action="expire", plate=entry.plate,
                )  # fmt: skip
            if gone:
                self.publish()
                self._changed.clear()

    # -- a component -----------------------------------------------------------------------------

    def on_messages(self, messages: list[Any]) -> None:
        """No topics of its own."""

    def add_routes(self, app: web.Application) -> None:
        """The watch-list's API (hub.plates.api)."""
        from hub.plates.api import add_routes  # noqa: PLC0415

        add_routes(app, self)

    def jobs(self) -> list[Any]:
        """Nothing on the scheduler: expiry runs in `run`."""
        return []

    async def run(self) -> None:
        """Publish the list, then expire entries as their times pass."""
        await self._expire()

    async def close(self) -> None:
        """Nothing to close."""
