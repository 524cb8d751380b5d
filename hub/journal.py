"""Journals: append-only files of JSON lines, fsynced before anything acts on them.

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

log = logging.getLogger("hub.journal")


async def _uncancelled(write: Callable[[Any], object], data: Any) -> None:
    """Run a blocking write in a thread; if cancelled, still wait for the thread to finish, so
    that the caller's lock keeps a second write off the file until this one is whole."""
    task = asyncio.ensure_future(asyncio.to_thread(write, data))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class Journal:
    """JSON records appended in order; what they mean is the owner's business."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self._out: IO[bytes] | None = None
        # Appends take `_lock`, so that records reach the file in order. A sync of what is
        # written already takes only `_sync_lock`: an unsynced append (a barrier's command on
        # its way out) does not wait for someone else's fdatasync. Replacing or closing the
        # file takes both.
        self._lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._written = 0  # unsynced appends made so far
        self._synced = 0  # how many of them are known to be durable

    @property
    def unsynced(self) -> bool:
        """Whether records were written that are not yet fdatasynced."""
        return self._written > self._synced

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

    async def append(self, records: Iterable[dict[str, Any]], *, sync: bool = True) -> None:
        """Append records; with `sync`, make them durable before returning.

        Without it the records are in the kernel's hands when this returns: they survive the
        process being killed but not a power loss. The write is then made on the event loop,
        since a few hundred bytes into the page cache cost less than a hop to a thread.
        """
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        if not data:
            return
        async with self._lock:
            if sync:
                before = self._written
                await _uncancelled(self._write, data)
                self._synced = max(self._synced, before)  # the earlier records went with it
            else:
                self._write_unsynced(data)
                self._written += 1
            self.records += data.count(b"\n")

    async def sync(self) -> None:
        """Make every record appended so far durable; nothing to do if they are."""
        async with self._sync_lock:
            target = self._written
            if target > self._synced and self._out is not None:
                await _uncancelled(os.fdatasync, self._out.fileno())
                self._synced = max(self._synced, target)

    def _write(self, data: bytes) -> None:
        out = self._write_unsynced(data)
        os.fdatasync(out.fileno())

    async def open(self) -> None:
        """Open (or create) the file in a thread, so that the first unsynced append, made on
        the event loop, does not wait for the folder's fsync."""
        async with self._lock:
            if self._out is None:
                await asyncio.to_thread(self._open)

    def _open(self) -> IO[bytes]:
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
        return self._out

    def _write_unsynced(self, data: bytes) -> IO[bytes]:
        out = self._open()
        out.write(data)
        out.flush()
        return out

    async def rewrite(
        self, records: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
    ) -> None:
        """Replace the journal by `records` (what is still needed), atomically.

        A callable is called once no append is under way, so that what it returns includes
        every record appended before the rewrite.
        """
        async with self._sync_lock, self._lock:
            kept = records() if callable(records) else records
            data = b"".join(orjson.dumps(r) + b"\n" for r in kept)
            written = self._written
            await _uncancelled(self._replace, data)
            self._synced = max(self._synced, written)
            self.records = len(kept)

    def _replace(self, data: bytes) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        write_atomic(self.path, data)

    async def aclose(self) -> None:
        """Close the file once a write under way is done, and what was written is durable."""
        async with self._sync_lock, self._lock:
            if self._out is not None:
                if self.unsynced:
                    written = self._written
                    await _uncancelled(os.fdatasync, self._out.fileno())
                    self._synced = max(self._synced, written)
                self._out.close()
                self._out = None
