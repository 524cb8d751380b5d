"""The hub's durable state, behind one small interface.

Everything the hub must not lose or repeat after a crash lives here: the rules' state and
their journal of events, the actuators' command jobs, the notification outbox and the audit
trail. Each owner keeps its documents in spaces of its own (`rules.state`, `actuators.jobs`,
...): JSON documents under string keys, changed in atomic batches (`Changes`).

Two levels of durability, chosen per write:

- `commit(changes)`: atomic, and survives the process being killed (SIGKILL at any
  instruction) as soon as it returns. It never waits for a disk, so it is made on the event
  loop, on the way from a reading to a barrier command.
- `sync()`: every commit made so far also survives a power loss (an fsync, in a thread).
  `commit_durable(changes)` is both. An operator's command, and the state that gates a
  broker acknowledgement, are durable before they count.

The embedded store is SQLite (`hub.store.sqlite`). A networked store for a pair of hubs
implements the same protocol: `commit` writes locally (or queues), and `sync` returns once
the changes are replicated, which is what gates acknowledgements there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import orjson


class StoreError(Exception):
    """A write or read that the store could not make (a full disk, a broken file)."""


class StoreCorruptError(StoreError):
    """The store's file is damaged; the message names the file, what was found and the remedy."""


def seq_key(seq: int) -> str:
    """A sequence number as a key that sorts like the number."""
    return f"{seq:020d}"


class Changes:
    """Puts and deletes committed as one: a crash leaves all of them or none."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        # ("put", space, key, json bytes) | ("del", space, key, None)
        # | ("range", space, first or "", last or None)
        self.ops: list[tuple[str, str, str, bytes | str | None]] = []

    def put(self, space: str, key: str, value: Any) -> Changes:
        """Store `value` (anything orjson writes, orjson fragments included) under `key`."""
        self.ops.append(("put", space, key, orjson.dumps(value)))
        return self

    def put_json(self, space: str, key: str, data: bytes) -> Changes:
        """Store JSON that is already encoded."""
        self.ops.append(("put", space, key, data))
        return self

    def delete(self, space: str, key: str) -> Changes:
        """Remove one document (nothing if there is none)."""
        self.ops.append(("del", space, key, None))
        return self

    def delete_range(self, space: str, first: str = "", last: str | None = None) -> Changes:
        """Remove the documents whose keys are between `first` and `last`, both included
        (`last` None: to the end of the space)."""
        self.ops.append(("range", space, first, last))
        return self

    def extend(self, other: Changes) -> Changes:
        """Add another batch's changes after these."""
        self.ops.extend(other.ops)
        return self

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[tuple[str, str, str, bytes | str | None]]:
        return iter(self.ops)


class Store(Protocol):
    """What the services need of durable storage; the SQLite store is the embedded one."""

    @property
    def location(self) -> str:
        """Where the store lives, for messages (a path or a URL without credentials)."""
        ...

    def load(self, space: str) -> dict[str, Any]:
        """Every document of a space by key, in key order (at start; may block)."""
        ...

    def get(self, space: str, key: str) -> Any | None:
        """One document, or None."""
        ...

    def scan(
        self,
        space: str,
        *,
        before: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[str, Any]]:
        """Documents in key order (newest first with `reverse`), keys below `before`."""
        ...

    def count(self, space: str) -> int:
        """How many documents a space holds."""
        ...

    def commit(self, changes: Changes) -> None:
        """Apply the changes atomically; they survive the process being killed once this
        returns. Raises StoreError when they could not be made (nothing of them is kept)."""
        ...

    async def sync(self) -> None:
        """Every commit made so far survives a power loss (or, networked, a machine's loss)."""
        ...

    async def commit_durable(self, changes: Changes) -> None:
        """`commit`, then `sync`."""
        ...

    def sync_now(self) -> None:
        """`sync`, blocking: at start (importing old files) and in tools, not on the loop."""
        ...

    async def run(self) -> None:
        """Upkeep until cancelled (the embedded store's checkpoints)."""
        ...

    async def aclose(self) -> None:
        """Make everything durable and close."""
        ...
