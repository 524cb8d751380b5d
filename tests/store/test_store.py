"""The SQLite store: batches are atomic, a kill inside a commit keeps all of it or none, and a
damaged file is moved aside with what can be read of it copied into a new store."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import Changes, StoreCorruptError, StoreError, seq_key
from hub.store.recover import open_store, take_lock
from hub.store.sqlite import CRASH_ENV, SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "hub.db")
    yield opened
    asyncio.run(opened.aclose())


def test_a_batch_is_read_back_in_key_order(store: SqliteStore) -> None:
    store.commit(Changes().put("jobs", "b", {"n": 2}).put("jobs", "a", {"n": 1}))
    store.commit(Changes().put("other", "a", [1]))
    assert store.load("jobs") == {"a": {"n": 1}, "b": {"n": 2}}
    assert list(store.load("jobs")) == ["a", "b"]
    assert store.get("other", "a") == [1]
    assert store.get("other", "zz") is None
    assert store.spaces() == {"jobs": 2, "other": 1}


def test_ranges_are_deleted_and_scanned_by_key(store: SqliteStore) -> None:
    changes = Changes()
    for seq in range(1, 11):
        changes.put("log", seq_key(seq), seq)
    store.commit(changes)
    store.commit(Changes().delete_range("log", last=seq_key(3)).delete("log", seq_key(5)))
    assert [v for _, v in store.scan("log")] == [4, 6, 7, 8, 9, 10]
    assert [v for _, v in store.scan("log", reverse=True, limit=2)] == [10, 9]
    assert [v for _, v in store.scan("log", before=seq_key(7), reverse=True)] == [6, 4]
    store.commit(Changes().delete_range("log", seq_key(9)))
    assert store.count("log") == 4  # 4, 6, 7, 8


def test_a_full_disk_fails_the_whole_batch_and_the_store_goes_on(store: SqliteStore) -> None:
    store.commit(Changes().put("a", "kept", 1))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from here on
    broken = Changes().put("a", "small", 2).put("a", "large", "x" * 100_000)
    with pytest.raises(StoreError, match="commit failed, nothing of it kept: database or disk"):
        store.commit(broken)
    assert store.load("a") == {"kept": 1}
    store._db.execute("PRAGMA max_page_count=1000000")  # room again
    store.commit(broken)
    assert set(store.load("a")) == {"kept", "small", "large"}


def test_a_store_from_a_newer_hub_is_refused_with_the_remedy(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    asyncio.run(SqliteStore(path).aclose())
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreCorruptError, match=r"schema version 99, newer than this hub's"):
        SqliteStore(path)


def test_sync_makes_commits_durable_and_close_folds_the_wal(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "hub.db")

        def unsynced() -> bool:
            return store.unsynced

        store.commit(Changes().put("a", "k", 1))
        assert unsynced()
        await store.sync()
        assert not unsynced()
        store.commit(Changes().put("a", "k2", 2))
        await store.commit_durable(Changes().put("a", "k3", 3))
        assert not unsynced()
        await store.checkpoint()
        await store.aclose()

    asyncio.run(scenario())
    assert not Path(f"{tmp_path / 'hub.db'}-wal").exists()
    assert SqliteStore(tmp_path / "hub.db").load("a") == {"k": 1, "k2": 2, "k3": 3}


def test_a_second_hub_on_the_same_store_is_refused(tmp_path: Path) -> None:
    first = open_store(tmp_path / "hub.db")
    with pytest.raises(StoreError, match="in use by another hub process"):
        open_store(tmp_path / "hub.db")
    asyncio.run(first.aclose())
    asyncio.run(open_store(tmp_path / "hub.db").aclose())  # free again once closed
    take_lock(tmp_path / "hub.db").close()


# -- a kill inside commits ----------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from hub.store import Changes
from hub.store.sqlite import SqliteStore

store = SqliteStore(Path(sys.argv[1]))
start = len(store.load("a"))
for i in range(start, start + 100_000):
    # Two documents and a range delete per batch: the batch is whole after a kill, or absent.
    store.commit(
        Changes().put("a", f"{i:08d}", i).put("b", f"{i:08d}", -i).delete_range("c")
        .put("c", "last", i)
    )
    print(i, flush=True)
"""


@pytest.mark.parametrize("seed", range(6))
def test_a_kill_inside_a_commit_keeps_the_whole_batch_or_none_of_it(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "hub.db"
    for run in range(3):
        env = {**os.environ, CRASH_ENV: f"{seed}-{run}:0.0005"}
        done = subprocess.run(
            [sys.executable, "-c", WRITER, str(path)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        acknowledged = [int(line) for line in done.stdout.split()]
        store = SqliteStore(path)
        a, b, c = store.load("a"), store.load("b"), store.load("c")
        asyncio.run(store.aclose())
        assert {k: -v for k, v in a.items()} == b, f"seed {seed}: a batch was torn"
        keys = sorted(int(k) for k in a)
        assert keys == list(range(len(keys))), f"seed {seed}: a batch in the middle is missing"
        if acknowledged:
            # Every commit that returned is there; the one cut short is not, or whole.
            assert keys[-1] >= acknowledged[-1], f"seed {seed}: a committed batch was lost"
            assert keys[-1] <= acknowledged[-1] + 1
        assert c == ({"last": keys[-1]} if keys else {})


# -- damaged files ------------------------------------------------------------------------------


def _filled(path: Path, n: int = 400) -> dict[str, dict[str, object]]:
    """A closed store with `n` documents in three spaces, the WAL folded into the file."""
    store = SqliteStore(path)
    wanted: dict[str, dict[str, object]] = {"rules.state": {}, "actuators.jobs": {}, "audit": {}}
    changes = Changes()
    for i in range(n):
        space = list(wanted)[i % 3]
        doc = {"i": i, "text": f"document {i} " + "x" * (i % 200)}
        wanted[space][f"{i:06d}"] = doc
        changes.put(space, f"{i:06d}", doc)
    store.commit(changes)
    asyncio.run(store.aclose())
    return wanted


def _damage(path: Path, rng: random.Random) -> str:
    size = path.stat().st_size
    data = bytearray(path.read_bytes())
    how = rng.choice(["truncate", "garbage", "zeros"])
    at = rng.randrange(size)
    if how == "truncate":
        del data[at:]
    else:
        n = rng.randrange(1, 4096)
        filler = rng.randbytes(n) if how == "garbage" else bytes(n)
        data[at : at + n] = filler[: len(data) - at]
    path.write_bytes(bytes(data))
    return f"{how} at byte {at} of {size}"


@pytest.mark.parametrize("seed", range(25))
def test_a_damaged_store_is_moved_aside_and_what_can_be_read_is_kept(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    wanted = _filled(path)
    damage = _damage(path, random.Random(seed))

    store = open_store(path)  # never refuses to start over a damaged file
    try:
        moved = sorted(tmp_path.glob("hub.db.damaged-*"))
        if moved:
            # It said what it found and what it did, naming both files and the remedy.
            text = caplog.text
            assert str(path) in text, damage
            assert f"moved the damaged store to {moved[0]}" in text, damage
            assert "hub store restore" in text, damage
        for space, docs in wanted.items():
            got = store.load(space)
            # Nothing wrong is ever read back: a document is the one written, or absent.
            assert all(docs[k] == v for k, v in got.items()), f"{damage}: {space} altered"
            if not moved:
                assert got == docs, f"{damage}: undetected damage lost documents"
    finally:
        asyncio.run(store.aclose())


def test_restore_copies_a_repaired_file_back_and_keeps_what_the_store_has(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.db"
    wanted = _filled(old, 30)
    path = tmp_path / "data" / "hub.db"
    store = SqliteStore(path)
    store.commit(Changes().put("audit", "000002", {"newer": True}))
    asyncio.run(store.aclose())
    (tmp_path / "hub.yaml").write_text(f"data_dir: {tmp_path / 'data'}\n")

    done = subprocess.run(
        [sys.executable, "-m", "hub", "store", "-c", str(tmp_path / "hub.yaml"), "restore",
         str(old)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "copied 29 documents" in done.stdout
    assert "1 already in the store were kept" in done.stdout
    store = SqliteStore(path)
    assert store.get("audit", "000002") == {"newer": True}
    assert store.load("actuators.jobs") == wanted["actuators.jobs"]
    asyncio.run(store.aclose())

    check = subprocess.run(
        [sys.executable, "-m", "hub", "store", "-c", str(tmp_path / "hub.yaml"), "check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "ok, 30 documents" in check.stdout
