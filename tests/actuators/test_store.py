"""The actuators' jobs and states in the store: an older hub's journal imported once, and
finished jobs pruned past `keep_finished`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.actuators import jobs as J
from hub.actuators.config import ActuatorsConfig
from hub.actuators.service import JOBS, STATES, ActuatorService
from hub.store import Changes
from hub.store.sqlite import SqliteStore

NOW = 1_784_000_000 * J.S


def job(cid: str, state: str = "queued", *, at: int = NOW, **fields: Any) -> J.CommandJob:
    """A command to bar-1 issued at `at`, last changed then."""
    return J.CommandJob(
        command_id=cid,
        actuator="bar-1",
        region="suwon",
        site="up-1",
        action="close",
        expect="closed",
        actor="desk-1",
        reason="test",
        issued_at=at,
        expires_at=at + 600 * J.S,
        state=state,
        updated_at=at,
        **fields,
    )


def service(store: SqliteStore, legacy_dir: Path | None = None, **config: Any) -> ActuatorService:
    """The service with only what loading and pruning use (no rules, broker or reports)."""
    return ActuatorService(
        ActuatorsConfig.model_validate(config),
        None,  # type: ignore[arg-type]
        rules=None,  # type: ignore[arg-type]
        mqtt=None,  # type: ignore[arg-type]
        reporter=None,  # type: ignore[arg-type]
        store=store,
        legacy_dir=legacy_dir,
        clock=lambda: NOW,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "hub.db")
    yield opened
    await opened.aclose()


async def test_an_older_journal_is_imported_once_and_renamed(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "actuators" / "commands.jsonl"
    old.parent.mkdir()
    records = [
        {"state": {"actuator": "bar-1", "state": "open", "ts": None, "at": NOW - 5}},
        {"job": job("c1", at=NOW - 3).to_dict()},
        {"job": job("c2", at=NOW - 2).to_dict()},
        {"job": job("c1", "sent", at=NOW - 3, sends=1).to_dict()},  # a later record of c1
        {"state": {"actuator": "bar-1", "state": "closing", "ts": None, "at": NOW - 1}},
    ]
    old.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + b'{"job": {"comm')
    with caplog.at_level(logging.INFO, logger="hub.actuators"):
        first = service(store, tmp_path)
    assert not old.exists()
    assert old.with_name("commands.jsonl.imported").exists()
    assert [r.message for r in caplog.records if "imported" in r.message] == [
        f"actuators: imported 2 commands and 1 states from {old} into {store.location}"
    ]
    assert first.commands["c1"].state == "sent"
    assert first.commands["c1"].sends == 1
    assert [j.command_id for j in first.commands_list()] == ["c1", "c2"]
    assert first.states == {"bar-1": {"state": "closing", "ts": None, "at": NOW - 1}}
    assert store.synced == store.commits, "not synced before the file was renamed"

    await store.aclose()
    again = SqliteStore(store.path)
    try:
        assert set(again.load(JOBS)) == {"c1", "c2"}
        assert again.get(STATES, "bar-1") == {"state": "closing", "ts": None, "at": NOW - 1}
        second = service(again, tmp_path)  # nothing left to import
        assert second.commands["c1"].state == "sent"
    finally:
        await again.aclose()


async def test_an_older_journal_is_left_alone_when_the_store_holds_commands(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.commit(Changes().put(JOBS, "c9", job("c9").to_dict()))
    old = tmp_path / "actuators" / "commands.jsonl"
    old.parent.mkdir()
    old.write_bytes(orjson.dumps({"job": job("c1").to_dict()}) + b"\n")
    restored = service(store, tmp_path)
    assert set(restored.commands) == {"c9"}
    assert old.exists()
    assert any("left alone" in r.message for r in caplog.records)


async def test_finished_jobs_past_keeping_are_pruned(store: SqliteStore) -> None:
    hour = 3600 * J.S
    actuators = service(store, keep_finished="1h", compact_after=3)
    made = [
        job("old-done", "done", at=NOW - 3 * hour),
        job("old-live", "timed_out", at=NOW - 3 * hour),
        job("new-done", "done", at=NOW - hour // 2),
        job("new-live", at=NOW - 60 * J.S),
    ]
    for each in made:
        actuators._keep(each)
    await actuators._persist(made, sync=False)
    assert len(actuators.commands) > actuators._prune_above
    await actuators._prune()
    kept = {"old-live", "new-done", "new-live"}
    assert set(actuators.commands) == kept
    assert set(store.load(JOBS)) == kept
    assert [j.command_id for j in actuators._by_actuator["bar-1"]] == [
        "old-live",
        "new-done",
        "new-live",
    ]
    # The next look waits for `compact_after` more commands, not the next tick of the clock.
    assert actuators._prune_above == len(kept) + 3


async def test_a_rules_command_is_committed_unsynced_and_an_operators_synced(
    store: SqliteStore,
) -> None:
    actuators = service(store)
    rules = job("from-rule", action_id="a1")
    actuators._keep(rules)
    await actuators._persist([rules], sync=False)
    assert store.get(JOBS, "from-rule") is not None
    assert store.synced < store.commits
    operator = job("from-desk")
    actuators._keep(operator)
    actuators.states["bar-1"] = {"state": "open", "ts": None, "at": NOW}
    await actuators._persist([operator], ["bar-1"])
    assert store.synced == store.commits
    assert store.get(STATES, "bar-1") == {"state": "open", "ts": None, "at": NOW}
