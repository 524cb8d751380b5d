"""The audit log: who did what and when, for every command, acknowledgement, override and
notification. Stored in InfluxDB's `audit` measurement and kept in memory for the API."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.storage.line import point_line


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
        """JSON-ready form for the API."""
        return {
            "ts": self.ts_ns,
            "kind": self.kind,
            "actor": self.actor,
            "detail": self.detail,
            **self.fields,
        }


class AuditLog:
    """Appends entries to storage (spooled like readings when InfluxDB is down)."""

    def __init__(
        self, sink: Sink, *, keep: int = 10_000, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.recent: collections.deque[AuditEntry] = collections.deque(maxlen=keep)
        self._last_ns = 0

    def record(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> AuditEntry:
        """Audit one act; `actor` is a person's token name, or `hub` / a rule id for automation."""
        # Two entries in the same nanosecond with the same tags would overwrite each other.
        ts = max(self.clock(), self._last_ns + 1)
        self._last_ns = ts
        kept = {k: v for k, v in fields.items() if v is not None}
        entry = AuditEntry(ts, kind, actor, detail, kept)
        self.recent.append(entry)
        self.sink.submit(
            point_line("audit", {"kind": kind, "actor": actor}, {"detail": detail, **kept}, ts), 1
        )
        return entry
