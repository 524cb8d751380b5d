"""The command journal: an append-only file of JSON lines, fsynced before anything acts on it.

Appending one line and one fdatasync costs a fraction of a millisecond, where rewriting a
state file costs two fsyncs and grows with the number of jobs; so every change is appended
and the file is rewritten (atomically, via hub.statefile) only when it grows long. A torn
last line (a crash in the middle of a write) is skipped when the journal is read back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from hub.statefile import write_atomic

log = logging.getLogger("hub.actuators")


async def _uncancelled(write: Callable[[bytes], None], data: bytes) -> None:
    """Run a blocking write in a thread; if cancelled, still wait for the thread to finish, so
    that the caller's lock keeps a second write off the file until this one is whole."""
    task = asyncio.ensure_future(asyncio.to_thread(write, data))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class Journal:
    """Records of the form {"job": {...}} or {"state": {...}}; the last one per key wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self._out: IO[bytes] | None = None
        self._lock = asyncio.Lock()

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first (blocking; at start)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found: list[dict[str, Any]] = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                found.append(dict(orjson.loads(line)))
            except orjson.JSONDecodeError:
                # Only the last line can be torn by a crash; anything else is worth a word.
                log.warning("%s:%d: skipped an unreadable record", self.path, number)
        self.records = len(found)
        return found

    async def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records and make them durable before returning."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        if not data:
            return
        async with self._lock:
            await _uncancelled(self._write, data)
            self.records += data.count(b"\n")

    def _write(self, data: bytes) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._out = self.path.open("ab")
            if created:  # the new file's name must reach the disk too
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._out.write(data)
        self._out.flush()
        os.fdatasync(self._out.fileno())

    async def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the journal by `records` (what is still needed), atomically."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        async with self._lock:
            await _uncancelled(self._replace, data)
            self.records = len(records)

    def _replace(self, data: bytes) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        write_atomic(self.path, data)

    async def aclose(self) -> None:
        """Close the file once a write under way is done (the records are already durable)."""
        async with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None
