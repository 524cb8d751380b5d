"""The outbox in the store: each change committed at once, an older hub's outbox file imported
once, and what is past keeping deleted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from hub.notify.outbox import ARCHIVED, NOTES, PENDING, SENT, Note, Outbox, note_key
from hub.store.sqlite import SqliteStore
from tests.notify.support import incident

DAY = 86400.0
NOW = 1_784_000_000.0


def note(iid: str, channel: str = "duty-officer", created: float = NOW) -> Note:
    """A note about an incident's opening, accepted at `created`."""
    return Note(
        note_key(iid, "active", channel),
        channel,
        iid,
        "active",
        "alert",
        f"flooding at {iid}",
        incident(iid),
        created,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "hub.db")
    yield opened
    await opened.aclose()


async def test_each_change_is_committed_before_it_returns(store: SqliteStore) -> None:
    outbox = Outbox(store, keep=DAY, clock=lambda: NOW)
    first = note("a")
    assert outbox.accept(first)
    assert not outbox.accept(note("a")), "the same key accepted twice"
    outbox.finish(first, SENT)
    outbox.archive("a")
    # Another connection sees what a SIGKILL would leave: every commit, no close, no sync.
    other = SqliteStore(store.path)
    try:
        stored = other.load(NOTES)
        assert list(stored) == ["a/active/duty-officer"]
        assert stored["a/active/duty-officer"]["status"] == SENT
        assert other.load(ARCHIVED) == {"a": NOW}
    finally:
        await other.aclose()
    again = Outbox(store, keep=DAY, clock=lambda: NOW)
    assert again.notes["a/active/duty-officer"].status == SENT
    assert again.accept(note("b"))
    assert again.notes["b/active/duty-officer"].seq == 2, "acceptance order not carried on"


async def test_what_is_past_keeping_is_deleted(store: SqliteStore) -> None:
    now = [NOW - 2 * DAY]
    outbox = Outbox(store, keep=DAY, clock=lambda: now[0])
    delivered, waiting = note("old", created=now[0]), note("stuck", created=now[0])
    outbox.accept(delivered)
    outbox.accept(waiting)
    outbox.finish(delivered, SENT)
    outbox.archive("old")
    now[0] = NOW
    outbox.accept(note("new"))
    outbox.prune()
    assert set(outbox.notes) == {"stuck/active/duty-officer", "new/active/duty-officer"}
    assert set(store.load(NOTES)) == set(outbox.notes)
    assert outbox.notes["stuck/active/duty-officer"].status == PENDING
    assert outbox.archived == {}
    assert store.load(ARCHIVED) == {}


async def test_an_older_outbox_file_is_imported_once_and_renamed(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "notify-outbox.jsonl"
    sent, waiting = note("a"), note("b")
    sent.seq, waiting.seq = 1, 2
    lines = [
        {"op": "put", "note": sent.to_dict()},
        {"op": "put", "note": waiting.to_dict()},
        {"op": "done", "key": sent.key, "status": SENT, "at": NOW + 1, "error": None},
        {"op": "archived", "incident": "z", "at": NOW},
    ]
    old.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines) + b'{"op": "pu')
    with caplog.at_level(logging.INFO, logger="hub.notify"):
        outbox = Outbox(store, keep=DAY, clock=lambda: NOW, legacy_path=old)
    assert not old.exists()
    assert old.with_name("notify-outbox.jsonl.imported").exists()
    assert [r.message for r in caplog.records if "imported" in r.message] == [
        f"notify: imported 2 notes and 1 archived incidents from {old} into {store.location}"
    ]
    assert store.synced == store.commits, "not synced before the file was renamed"
    assert outbox.notes[sent.key].status == SENT
    assert outbox.notes[sent.key].done_at == NOW + 1
    assert [n.key for n in outbox.pending("duty-officer")] == [waiting.key]
    assert outbox.archived == {"z": NOW}
    assert outbox.accept(note("c"))
    assert outbox.notes["c/active/duty-officer"].seq == 3

    old.write_bytes(orjson.dumps({"op": "put", "note": note("x").to_dict()}) + b"\n")
    again = Outbox(store, keep=DAY, clock=lambda: NOW, legacy_path=old)
    assert "x/active/duty-officer" not in again.notes, "imported into a store in use"
    assert old.exists()
    assert any("left alone" in r.message for r in caplog.records)
