"""The embedded store: one SQLite file in WAL mode, one writer, on the event loop.

Measured on the development machine: a commit of one small document costs 8 us at the
median (25 us p99) with `synchronous=NORMAL` and automatic checkpoints off, less than a hop
to a thread; an fsync costs 0.3-30 ms. So commits are made on the event loop and never
wait for a disk: in WAL mode a commit appends its pages, with checksums, to the `-wal` file
through the page cache, which a killed process cannot lose, and a torn append is rolled
back when the file is next opened. Durability against a power loss is an fdatasync of the
`-wal` file, in a thread, without holding up the writer (`sync`); checkpoints, which copy
the WAL into the database and fsync both, run in a thread on a connection of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from hub.store import Changes, StoreCorruptError, StoreError

log = logging.getLogger("hub.store")

# Each entry brings the schema from version i to i + 1; PRAGMA user_version says where a file is.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        # crc: CRC-32 of space, key and value. SQLite checks its pages' structure but not
        # their contents; a damaged value must be found, not read back as another value.
        "CREATE TABLE docs (space TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
        " crc INTEGER NOT NULL, PRIMARY KEY (space, key)) WITHOUT ROWID",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
CHECKPOINT_EVERY = 1.0  # seconds between checkpoints, when something was committed
WAL_LIMIT = 64 * 1024 * 1024  # the -wal file is cut back to this after a checkpoint

# Fault injection for the crash tests: HUB_STORE_CRASH="SEED:P" kills the process with
# probability P at each step SQLite takes inside a commit (and between its statements).
CRASH_ENV = "HUB_STORE_CRASH"


def crc(space: str, key: str, value: bytes) -> int:
    """The checksum kept beside each document."""
    return zlib.crc32(value, zlib.crc32(f"{space}\0{key}\0".encode()))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class SqliteStore:
    """The `Store` protocol on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _open_checked(path)
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints are the upkeep's
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._migrate()
        self._wal_fd: int | None = None
        self._commits = 0  # commits made so far
        self._synced = 0  # how many of them are known to be durable
        self._checkpointed = 0
        self._sync_lock = asyncio.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._crash = _crash_hook()
        self._closed = False
        self.lock: IO[bytes] | None = None  # the lock file a hub holds (hub.store.recover)

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def commits(self) -> int:
        """Commits made since the store was opened."""
        return self._commits

    @property
    def synced(self) -> int:
        """How many of those commits are known to survive a power loss."""
        return self._synced

    @property
    def unsynced(self) -> bool:
        """Whether commits were made that are not yet known to survive a power loss."""
        return self._commits > self._synced

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreCorruptError(
                f"{self.path}: schema version {version}, newer than this hub's "
                f"{SCHEMA_VERSION}; run the newer hub, or move the file away to start afresh"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for steps in MIGRATIONS[version:]:
                for sql in steps:
                    self._db.execute(sql)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        log.info("store: %s at schema version %d", self.path, SCHEMA_VERSION)

    # -- reads --------------------------------------------------------------------------------

    def load(self, space: str) -> dict[str, Any]:
        sql = "SELECT key, value, crc FROM docs WHERE space = ? ORDER BY key"
        return dict(self._decoded(space, self._read(sql, (space,))))

    def get(self, space: str, key: str) -> Any | None:
        sql = "SELECT key, value, crc FROM docs WHERE space = ? AND key = ?"
        rows = self._decoded(space, self._read(sql, (space, key)))
        return rows[0][1] if rows else None

    def scan(
        self,
        space: str,
        *,
        before: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[str, Any]]:
        sql = "SELECT key, value, crc FROM docs WHERE space = ?"
        args: list[Any] = [space]
        if before is not None:
            sql += " AND key < ?"
            args.append(before)
        sql += " ORDER BY key DESC" if reverse else " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self._decoded(space, self._read(sql, tuple(args)))

    def _decoded(self, space: str, rows: list[Any]) -> list[tuple[str, Any]]:
        out = []
        for key, value, check in rows:
            if crc(space, key, value) != check:
                raise StoreCorruptError(f"{self.path}: document {space}/{key} is damaged")
            out.append((key, orjson.loads(value)))
        return out

    def spaces(self) -> dict[str, int]:
        """How many documents each space holds."""
        rows = self._read("SELECT space, count(*) FROM docs GROUP BY space ORDER BY space", ())
        return {str(space): int(n) for space, n in rows}

    def count(self, space: str) -> int:
        return int(self._read("SELECT count(*) FROM docs WHERE space = ?", (space,))[0][0])

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _error(exc, f"{self.path}: reading failed: {exc}") from exc

    # -- writes -------------------------------------------------------------------------------

    def commit(self, changes: Changes) -> None:
        if not changes:
            return
        db = self._db
        if self._crash is not None:
            db.set_progress_handler(self._crash, 1)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for op, space, key, value in changes:
                    if op == "put":
                        db.execute(
                            "INSERT OR REPLACE INTO docs (space, key, value, crc)"
                            " VALUES (?, ?, ?, ?)",
                            (space, key, value, crc(space, key, value)),  # type: ignore[arg-type]
                        )
                    elif op == "del":
                        db.execute("DELETE FROM docs WHERE space = ? AND key = ?", (space, key))
                    elif value is None:
                        db.execute("DELETE FROM docs WHERE space = ? AND key >= ?", (space, key))
                    else:
                        db.execute(
                            "DELETE FROM docs WHERE space = ? AND key >= ? AND key <= ?",
                            (space, key, value),
                        )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _error(exc, f"{self.path}: commit failed, nothing of it kept: {exc}") from exc
        finally:
            if self._crash is not None:
                db.set_progress_handler(None, 0)
        self._commits += 1

    async def sync(self) -> None:
        async with self._sync_lock:
            target = self._commits
            if target <= self._synced:
                return
            await _uncancelled(self._fsync_wal)
            self._synced = max(self._synced, target)

    async def commit_durable(self, changes: Changes) -> None:
        self.commit(changes)
        await self.sync()

    def sync_now(self) -> None:
        self._fsync_wal()
        self._synced = self._commits

    def _fsync_wal(self) -> None:
        if self._wal_fd is None:
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        os.fdatasync(self._wal_fd)

    # -- upkeep -------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            if self._commits != self._checkpointed:
                await self.checkpoint()

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file (in a thread, beside the writer)."""
        target = self._commits
        try:
            await _uncancelled(self._checkpoint)
        except sqlite3.Error as exc:
            log.warning("store: checkpoint of %s failed: %s", self.path, exc)
            return
        self._checkpointed = target

    def _checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = _connect(self.path)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._sync_lock:
            await _uncancelled(self._close)

    def _close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        # Closing the last connection checkpoints the WAL into the file and removes it.
        self._db.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
        if self.lock is not None:
            self.lock.close()


def _open_checked(path: Path) -> sqlite3.Connection:
    """Open the file and check it; StoreCorruptError names what is wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = _connect(path)
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(f"{path}: cannot be opened as a store: {exc}") from exc
    try:
        found = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        if found == ["ok"]:
            found = _bad_checksums(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreCorruptError(f"{path}: damaged: {exc}") from exc
    if found != ["ok"]:
        db.close()
        raise StoreCorruptError(f"{path}: damaged: {'; '.join(found[:5])}")
    if mode != "wal":
        db.close()
        raise StoreError(f"{path}: WAL mode could not be set (journal_mode {mode})")
    return db


def _error(exc: sqlite3.DatabaseError, message: str) -> StoreError:
    """StoreCorruptError when SQLite found the file damaged, else StoreError (a full disk)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code, without extensions
    damaged = code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return StoreCorruptError(message) if damaged else StoreError(message)


def _bad_checksums(db: sqlite3.Connection) -> list[str]:
    """["ok"], or the documents whose contents do not match their checksums (one pass over
    the file at start: 0.1 s for 100,000 documents)."""
    has_docs = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'docs'").fetchone()
    if not has_docs:
        return ["ok"]
    bad = [
        f"document {space}/{key} does not match its checksum"
        for space, key, value, check in db.execute("SELECT space, key, value, crc FROM docs")
        if not isinstance(value, bytes) or crc(space, key, value) != check
    ]
    return bad or ["ok"]


async def _uncancelled(call: Callable[[], object]) -> None:
    """Run blocking I/O in a thread; if cancelled, wait for the thread before going on."""
    task = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _crash_hook() -> Callable[[], int] | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    seed, _, probability = spec.partition(":")
    rng = random.Random(seed)  # the same seed kills at the same step: a failure replays
    p = float(probability or "0.001")
    log.warning("store: %s set: this process kills itself inside commits (p=%s)", CRASH_ENV, p)

    def maybe_die() -> int:
        if rng.random() < p:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    return maybe_die
