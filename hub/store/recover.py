"""Opening the store at start, and what happens when its file is damaged.

SQLite in WAL mode does not tear on a crash: a commit cut short is rolled back when the
file is next opened. A damaged file comes from elsewhere (a failing disk, a copy made while
the hub wrote, a hand edit). Policy, the same for every kind of data:

1. At start the file is checked (`PRAGMA quick_check`). A file that cannot be opened or
   fails the check is never used, and never deleted: it is moved aside with its `-wal` and
   `-shm` companions, to `hub.db.damaged-<UTC time>`, and the log says what was found.
2. A new store is made, and every document that can still be read from the moved file is
   copied into it (rows are read from both ends, so a damaged page in the middle loses
   only what it holds). The log gives the count per space, and names what could not be read.
3. What could not be read is derived again where the hub can (see docs/store.md): the
   rules' state from the readings the broker delivers again and the incidents' retained
   messages; a command whose job is lost is asked for again by its rule with the same id,
   and controllers deduplicate by id. The audit trail is also in InfluxDB's `audit`.
4. `hub store restore FILE` copies into the store, with the hub stopped, what can be read
   of a moved file (for example after repairing it with `sqlite3 FILE .recover`); documents
   the store holds already are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from hub.config import ConfigError, load_config
from hub.store import Changes, StoreCorruptError, StoreError
from hub.store.sqlite import SqliteStore, crc

log = logging.getLogger("hub.store")
COMPANIONS = ("-wal", "-shm")


@dataclass
class Salvage:
    """What was read back from a damaged file."""

    source: Path
    copied: dict[str, int] = field(default_factory=dict)  # space -> documents copied
    kept: int = 0  # documents the store held already
    unreadable: list[str] = field(default_factory=list)  # what went wrong, in words

    def summary(self) -> str:
        spaces = ", ".join(f"{space} {n}" for space, n in sorted(self.copied.items()))
        text = f"copied {sum(self.copied.values())} documents from {self.source}"
        text += f" ({spaces})" if spaces else ""
        if self.kept:
            text += f"; {self.kept} already in the store were kept"
        if self.unreadable:
            text += "; could not read: " + "; ".join(self.unreadable)
        return text


def open_store(path: Path, *, lock: bool = True) -> SqliteStore:
    """The store at `path`, created if there is none; a damaged file is moved aside and what
    can be read of it copied into a new one. StoreError when even that cannot be done.

    With `lock`, the store holds `<path>.lock` until it is closed: a second hub on the same
    data folder, or a restore while the hub runs, is refused."""
    held = take_lock(path) if lock else None
    try:
        store = _open(path)
    except BaseException:
        if held is not None:
            held.close()
        raise
    store.lock = held
    return store


def _open(path: Path) -> SqliteStore:
    try:
        return SqliteStore(path)
    except StoreCorruptError as exc:
        found = str(exc)
    log.error("store: %s", found)
    try:
        moved = quarantine(path)
    except OSError as exc:
        raise StoreError(
            f"{path}: damaged ({found}), and it cannot be moved aside ({exc}); move it away "
            f"by hand (with its -wal and -shm files) and start again, then run "
            f"`hub store restore <moved file>`"
        ) from exc
    log.error(
        "store: moved the damaged store to %s; starting a new one and copying into it what "
        "can still be read",
        moved,
    )
    store = SqliteStore(path)
    report = salvage(moved, store)
    store.sync_now()
    log.error("store: %s", report.summary())
    log.error(
        "store: what was lost is derived again where it can be: the rules' state from the "
        "readings the broker delivers again and the incidents' retained messages; rules ask "
        "again for lost commands with the same ids. To copy more from the moved file later "
        "(after `sqlite3 %s .recover`, say), stop the hub and run `hub store restore FILE`",
        moved,
    )
    return store


def quarantine(path: Path) -> Path:
    """Move the store's file and its companions aside; the new name of the main file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.replace(moved)
    for suffix in COMPANIONS:
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.replace(Path(f"{moved}{suffix}"))
    return moved


def _rows(source: Path, report: Salvage) -> Iterator[tuple[str, str, bytes] | None]:
    """Every row that can be read, from the front and then from the back of the table."""
    try:
        db = sqlite3.connect(source, isolation_level=None)
    except sqlite3.Error as exc:
        report.unreadable.append(f"the file cannot be opened ({exc})")
        return
    try:
        for order in ("ASC", "DESC"):
            sql = f"SELECT space, key, value, crc FROM docs ORDER BY space {order}, key {order}"  # noqa: S608 - no input in it
            try:
                for space, key, value, check in db.execute(sql):
                    ok = isinstance(space, str) and isinstance(key, str)
                    ok = ok and isinstance(value, bytes) and crc(space, key, value) == check
                    # None: a row that a damaged page changed.
                    yield (space, key, value) if ok else None
            except sqlite3.Error as exc:
                report.unreadable.append(f"rows past a damaged page, reading {order} ({exc})")
    finally:
        db.close()


def salvage(source: Path, store: SqliteStore) -> Salvage:
    """Copy what can be read of `source` into `store`; what the store holds is kept."""
    report = Salvage(source)
    seen: set[tuple[str, str]] = set()
    changes = Changes()
    bad = 0
    for row in _rows(source, report):
        if row is None:
            bad += 1
            continue
        space, key, value = row
        if (space, key) in seen:
            continue
        seen.add((space, key))
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if store.get(space, key) is not None:
            report.kept += 1
            continue
        changes.put_json(space, key, value)
        report.copied[space] = report.copied.get(space, 0) + 1
    if bad:
        report.unreadable.append(f"{bad} documents with damaged contents")
    store.commit(changes)
    return report


def take_lock(path: Path) -> IO[bytes]:
    """The store's lock file, held: one hub (or one restore) at a time on a store. The
    kernel lets go of it when the process ends, however it ends."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = lock_path.open("ab")
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        out.close()
        raise StoreError(
            f"{path}: in use by another hub process (it holds {lock_path}); stop it first"
        ) from None
    out.truncate(0)
    out.write(f"{os.getpid()}\n".encode())
    out.flush()
    return out


# -- the `hub store` command --------------------------------------------------------------------


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`hub store check` and `hub store restore FILE`."""
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="hub.yaml (default: $HUB_CONFIG, else ./hub.yaml)"
    )
    sub = parser.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    sub.add_parser("check", help="check the store's file and count its documents per space")
    restore = sub.add_parser(
        "restore", help="copy what can be read of a moved (damaged) store file into the store"
    )
    restore.add_argument("file", help="the moved file, e.g. var/hub.db.damaged-20261205T101500Z")


def store_main(args: argparse.Namespace) -> int:
    """Run `hub store ...` on the configured data folder's store; the hub must be stopped."""
    try:
        config = load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    path = Path(config.data_dir) / "hub.db"
    try:
        if args.store_command == "check":
            return _check(path)
        source = Path(args.file)
        if not source.is_file():
            print(f"hub store restore: {source}: no such file", file=sys.stderr)
            return 1
        store = open_store(path)
        try:
            report = salvage(source, store)
            store.sync_now()
        finally:
            asyncio.run(store.aclose())
        print(report.summary())
    except StoreError as exc:
        print(f"hub store: {exc}", file=sys.stderr)
        return 1
    return 0


def _check(path: Path) -> int:
    if not path.exists():
        print(f"{path}: no store yet")
        return 0
    held = take_lock(path)
    try:
        store = SqliteStore(path)  # raises StoreCorruptError with what it found
    except BaseException:
        held.close()
        raise
    store.lock = held
    spaces = store.spaces()
    asyncio.run(store.aclose())
    for space, n in spaces.items():
        print(f"{space}: {n}")
    print(f"{path}: ok, {sum(spaces.values())} documents")
    return 0
