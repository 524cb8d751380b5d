"""The audit log in the store: committed as it is recorded, read back newest first by kind,
bounded, and loud when the store refuses an entry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import hub.audit
from hub.audit import SPACE, AuditLog
from hub.store import Changes, StoreError
from hub.store.sqlite import SqliteStore
from tests.notify.support import Lines


class Clock:
    """Nanoseconds that move on by one microsecond at each call."""

    def __init__(self, start: int = 1_784_000_000_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


class Refusing(SqliteStore):
    """A store whose disk is full."""

    def commit(self, changes: Changes) -> None:
        raise StoreError(
            f"{self.path}: commit failed, nothing of it kept: database or disk is full"
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "hub.db")
    yield opened
    await opened.aclose()


async def test_entries_are_committed_and_read_newest_first_by_kind(store: SqliteStore) -> None:
    lines = Lines()
    audit = AuditLog(lines, store, clock=Clock())
    for n in range(5):
        audit.record("command", "desk-1", f"close {n}", command_id=f"c{n}")
        audit.record("ack", "bar-1", f"ack {n}", status="done", note=None)
    assert len(lines.lines) == 10, "every entry still goes to InfluxDB"
    other = SqliteStore(store.path)  # what a SIGKILL would leave: commits, no close
    try:
        assert other.count(SPACE) == 10
    finally:
        await other.aclose()
    latest = await audit.entries(3)
    assert [e.detail for e in latest] == ["ack 4", "close 4", "ack 3"]
    acks = await audit.entries(100, {"ack"})
    assert [e.detail for e in acks] == [f"ack {n}" for n in range(4, -1, -1)]
    assert acks[0].fields == {"status": "done"}
    assert latest[1].fields == {"command_id": "c4"}
    assert latest[0].to_dict()["ts"] == latest[0].ts_ns


async def test_a_rare_kind_is_found_across_pages(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.audit, "PAGE", 4)
    audit = AuditLog(Lines(), store, clock=Clock())
    audit.record("override", "desk-1", "open during a flood")
    for n in range(10):
        audit.record("state", "bar-1", f"state {n}")
    (found,) = await audit.entries(10, {"override"})
    assert found.detail == "open during a flood"
    assert len(await audit.entries(100)) == 11


async def test_the_oldest_entries_are_pruned_beyond_keep(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.audit, "PRUNE_EVERY", 4)
    audit = AuditLog(Lines(), store, keep=5, clock=Clock())
    for n in range(11):
        audit.record("state", "bar-1", f"state {n}")
        assert store.count(SPACE) <= 5 + 4
    assert store.count(SPACE) == 8  # pruned to 5 at the 8th record; 3 since
    # Pruned from the oldest: the newest are all there.
    assert [e.detail for e in await audit.entries(5)] == [f"state {n}" for n in range(10, 5, -1)]


async def test_keys_go_on_from_the_newest_kept_when_the_clock_is_set_back(
    store: SqliteStore,
) -> None:
    first = AuditLog(Lines(), store, clock=Clock())
    kept = first.record("ack", "desk-1", "before the restart")
    second = AuditLog(Lines(), store, clock=Clock(start=kept.ts_ns - 10**12))
    later = second.record("ack", "desk-1", "after the restart")
    assert later.ts_ns > kept.ts_ns
    assert [e.detail for e in await second.entries(10)] == [
        "after the restart",
        "before the restart",
    ]


async def test_an_entry_the_store_refuses_is_logged_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Refusing(tmp_path / "hub.db")
    lines = Lines()
    try:
        entry = AuditLog(lines, store).record("command", "desk-1", "close bar-1", command_id="c1")
    finally:
        await store.aclose()
    assert len(lines.lines) == 1, "not written to InfluxDB either"
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "entry not stored" in logged.getMessage()
    assert '"command_id":"c1"' in logged.getMessage()
    assert str(entry.ts_ns) in logged.getMessage()
    assert logged.exc_info is not None
