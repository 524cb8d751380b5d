"""The audit log: who did what and when, for every command, acknowledgement, override and
notification. Each entry is committed to the store (space `audit`, keyed by its time) before
`record` returns, where the API reads it, and written to InfluxDB's `audit` measurement.
The store keeps the latest `keep` entries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from hub.storage.line import point_line
from hub.store import Changes, Store, StoreError, seq_key

log = logging.getLogger("hub.audit")

SPACE = "audit"  # seq_key(ts_ns) -> AuditEntry.to_dict()
PRUNE_EVERY = 1000  # records between prunings of the oldest entries
PAGE = 1000  # entries read at a time, the event loop free between pages


class Sink(Protocol):
    def submit(self, lines: bytes, count: int, token: object | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited act; `kind` is e.g. command, ack, state, notification, override."""

    ts_ns: int
    kind: str
    actor: str
    detail: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the store and the API."""
        return {
            "ts": self.ts_ns,
            "kind": self.kind,
            "actor": self.actor,
            "detail": self.detail,
            **self.fields,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        """The entry that `to_dict` gave."""
        rest = dict(data)
        ts, kind, actor, detail = (rest.pop(k) for k in ("ts", "kind", "actor", "detail"))
        return cls(int(ts), str(kind), str(actor), str(detail), rest)


class AuditLog:
    """Commits entries to the store and hands them to storage (spooled like readings when
    InfluxDB is down)."""

    def __init__(
        self,
        sink: Sink,
        store: Store,
        *,
        keep: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.sink = sink
        self.store = store
        self.keep = keep
        self.clock = clock
        newest = store.scan(SPACE, reverse=True, limit=1)
        # Keys follow on from the newest kept, so that a clock set back across a restart
        # cannot overwrite an entry.
        self._last_ns = int(newest[0][0]) if newest else 0
        self._count = store.count(SPACE)
        self._since_prune = 0

    def record(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> AuditEntry:
        """Audit one act; `actor` is a person's token name, or `hub` / a rule id for automation."""
        return self._record(kind, actor, detail, fields, must_store=False)

    async def record_durable(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> AuditEntry:
        """Audit an act that is nothing but its entry (an operator's note): the entry is
        synced before this returns, and StoreError (or OSError) is raised when the store does
        not take it, rather than logged."""
        entry = self._record(kind, actor, detail, fields, must_store=True)
        await self.store.sync()
        return entry

    def _record(
        self,
        kind: str,
        actor: str,
        detail: str,
        fields: dict[str, str | int | float | bool | None],
        *,
        must_store: bool,
    ) -> AuditEntry:
        # Two entries in the same nanosecond would share a key (and, in InfluxDB, a point).
        ts = max(self.clock(), self._last_ns + 1)
        self._last_ns = ts
        kept = {k: v for k, v in fields.items() if v is not None}
        entry = AuditEntry(ts, kind, actor, detail, kept)
        try:
            self.store.commit(Changes().put(SPACE, seq_key(ts), entry.to_dict()))
        except StoreError:
            if must_store:
                raise
            # The act is done already (a command sent, an incident acknowledged): what is
            # left is to say so where an operator will see it, with the whole entry.
            log.exception("audit: entry not stored: %s", orjson.dumps(entry.to_dict()).decode())
        else:
            self._count += 1
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self._prune()
        self.sink.submit(
            point_line("audit", {"kind": kind, "actor": actor}, {"detail": detail, **kept}, ts), 1
        )
        return entry

    def _prune(self) -> None:
        """Delete the oldest entries beyond `keep`: one range, every PRUNE_EVERY records."""
        self._since_prune = 0
        excess = self._count - self.keep
        if excess <= 0:
            return
        try:
            # Bounded, so that a lowered `keep` is reached over several prunings, not one long one.
            oldest = self.store.scan(SPACE, limit=min(excess, 10 * PRUNE_EVERY))
            if oldest:
                self.store.commit(Changes().delete_range(SPACE, "", oldest[-1][0]))
        except StoreError as exc:
            log.warning("audit: pruning old entries failed (tried again later): %s", exc)
            return
        self._count = self._count - len(oldest) if oldest else 0

    async def entries(
        self,
        limit: int = 100,
        kinds: Collection[str] = (),
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[AuditEntry]:
        """The latest entries, newest first; only those of `kinds` if any are given, and only
        those whose stored form `where` passes if it is given (a token's regions)."""
        found: list[AuditEntry] = []
        before: str | None = None
        while len(found) < limit:
            size = PAGE if kinds or where else min(PAGE, limit - len(found))
            page = self.store.scan(SPACE, before=before, limit=size, reverse=True)
            for _, data in page:
                if (not kinds or data.get("kind") in kinds) and (where is None or where(data)):
                    found.append(AuditEntry.from_dict(data))
            if len(page) < size:
                break
            before = page[-1][0]
            # A rare kind can mean reading the whole space: not in one go on the event loop.
            await asyncio.sleep(0)
        return found[:limit]

    async def about(self, incident_id: str, since_ns: int = 0) -> list[AuditEntry]:
        """The entries about one incident, oldest first, from `since_ns` on: those that carry
        its `incident_id`, and those of the commands that these name (`command_id`: their
        status changes and the actuators' acknowledgements carry no incident id)."""
        return by_incident(await self.about_incidents(since_ns)).get(incident_id, [])

    async def about_incidents(self, since_ns: int = 0) -> list[AuditEntry]:
        """Every entry from `since_ns` on that may be about an incident (it carries an
        `incident_id` or a `command_id`), oldest first; `by_incident` sorts them out."""
        found: list[AuditEntry] = []
        before: str | None = None
        done = False
        while not done:
            page = self.store.scan(SPACE, before=before, limit=PAGE, reverse=True)
            for _, data in page:
                if int(data["ts"]) < since_ns:
                    done = True
                    break
                if "incident_id" in data or "command_id" in data:
                    found.append(AuditEntry.from_dict(data))
            if len(page) < PAGE:
                break
            before = page[-1][0]
            await asyncio.sleep(0)  # the whole space, at worst: not in one go on the loop
        found.reverse()
        return found


def by_incident(entries: Iterable[AuditEntry]) -> dict[str, list[AuditEntry]]:
    """Entries (oldest first) by the incident they are about, in order: those that carry its
    `incident_id`, and those of the commands that these name (`command_id`)."""
    entries = list(entries)
    owner = {
        e.fields["command_id"]: e.fields["incident_id"]
        for e in entries
        if e.fields.get("incident_id") and "command_id" in e.fields
    }
    out: dict[str, list[AuditEntry]] = {}
    for e in entries:
        incident = e.fields.get("incident_id") or owner.get(e.fields.get("command_id"))
        if incident:
            out.setdefault(incident, []).append(e)
    return out
