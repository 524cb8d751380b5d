"""The rules' state and journal across a crash: what was dispatched is not asked for again,
what was journalled but not dispatched goes out once after the restart, and what the broker
will not deliver again waits for the full state.

A crash is a service dropped without its drain: the next one is built from the same files,
which is all a SIGKILL leaves (written data stays in the kernel's page cache). The readings
the broker would deliver again are fed again by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.actions import ActionDispatcher
from hub.journal import Journal
from hub.rules import service as rules_service
from hub.rules.engine.core import Engine
from hub.rules.events import ActionRequested
from hub.rules.service import RuleService
from tests.helpers import eventually
from tests.rules.helpers import INVENTORY, at, r, rules

FLOOD = """
rules:
  - id: flood
    severity: severe
    sensors: [wl-1, wl-2]
    trigger: {above: 15 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close}
"""


class Recorder:
    """What left the service: incident messages, stored lines, and actions executed."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.lines: list[bytes] = []
        self.actions: list[str] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload))

    def submit(self, lines: bytes, count: int, token: object | None = None) -> None:
        self.lines.append(lines)

    async def execute(self, action: ActionRequested) -> None:
        self.actions.append(action.action_id)


@asynccontextmanager
async def service(data: Path, out: Recorder, acks: list[object]) -> AsyncIterator[RuleService]:
    """A dispatching rule service on the files under `data`; left without a drain (a crash)."""
    dispatcher = ActionDispatcher()
    dispatcher.register("actuate", out)
    svc = RuleService(
        rules(FLOOD),
        INVENTORY,
        state_path=data / "rules-state.json",
        publisher=out,
        sink=out,
        dispatcher=dispatcher,
        ack=acks.append,
        clock=lambda: at(100),
    )
    task = asyncio.create_task(svc.dispatch_forever())
    try:
        yield svc
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def journal(data: Path) -> list[dict[str, Any]]:
    return Journal(data / "rules-events.jsonl").read()


async def idle(svc: RuleService) -> None:
    await eventually(svc._idle.is_set, "the outbox to be dispatched")


async def test_an_action_dispatched_before_a_crash_is_not_asked_for_again(
    tmp_path: Path,
) -> None:
    first, acks = Recorder(), []
    async with service(tmp_path, first, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        svc.hold(["message-1"])
        await idle(svc)
    assert len(first.actions) == 1
    assert acks == [], "acknowledged before the state that reflects the reading was saved"
    assert not (tmp_path / "rules-state.json").exists()
    records = journal(tmp_path)
    assert [rec["event"]["event"] for rec in records if "event" in rec] == ["opened", "action"]
    assert records[-1] == {"done": 2}

    # The broker delivers the unacknowledged reading again to the restarted hub.
    second, acks = Recorder(), []
    async with service(tmp_path, second, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        assert [i.id for i in svc.engine.incidents()] == [first.actions[0].rpartition(".")[0]]
    assert second.actions == [], "the barrier command was asked for twice"
    # The incident goes out again (a retained message and a stored point are replaced): what
    # the killed process held in memory only is not lost.
    assert {t for t, _ in second.published} == {t for t, _ in first.published}
    assert set(second.lines) == set(first.lines)


async def test_events_journalled_but_not_dispatched_go_out_once_after_a_crash(
    tmp_path: Path,
) -> None:
    first = Recorder()
    dispatcher_blocked = asyncio.Event()

    async def stuck(action: ActionRequested) -> None:
        dispatcher_blocked.set()
        await asyncio.Event().wait()  # the process dies while the command is on its way

    async with service(tmp_path, first, []) as svc:
        svc.dispatcher.register("actuate", type("Stuck", (), {"execute": staticmethod(stuck)})())
        svc.on_readings([r("wl-2", 0.40, 10)])
        await asyncio.wait_for(dispatcher_blocked.wait(), 5)
    assert [rec["event"]["event"] for rec in journal(tmp_path)] == ["opened", "action"]

    second = Recorder()
    async with service(tmp_path, second, []) as svc:
        await idle(svc)
        assert len(second.actions) == 1, "the journalled action did not go out after the start"
        svc.on_readings([r("wl-2", 0.40, 10)])  # delivered again by the broker
        await idle(svc)
    assert len(second.actions) == 1, "the action went out twice"


async def test_the_state_covers_the_journal_and_acknowledges_what_it_reflects(
    tmp_path: Path,
) -> None:
    out, acks = Recorder(), []
    async with service(tmp_path, out, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        svc.hold(["message-1"])
        await idle(svc)
        await svc.persist_if_needed()
        assert acks == ["message-1"]
        svc.on_readings([r("wl-2", 0.40, 20)])  # after the state: in the journal only
        svc.hold(["message-2"])
        await idle(svc)
    state = orjson.loads((tmp_path / "rules-state.json").read_bytes())
    assert state["seq"] == 2
    assert state["outbox"] == []
    assert acks == ["message-1"]

    again = Recorder()
    async with service(tmp_path, again, []) as svc:
        await idle(svc)
        assert again.actions == [], "an action the state or the journal marks done went out"
        assert len(svc.engine.incidents()) == 1, "the state reflects the first reading only"
        svc.on_readings([r("wl-2", 0.40, 20)])
        await idle(svc)
        assert len(svc.engine.incidents()) == 2
    assert again.actions == []


async def test_an_operators_acknowledgement_is_saved_before_it_goes_out(tmp_path: Path) -> None:
    out = Recorder()
    async with service(tmp_path, out, []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        incident = svc.engine.incidents()[0].id
        svc.acknowledge(incident, "operator-7")
        await idle(svc)
        acked = [orjson.loads(p) for _, p in out.published if b'"acknowledged"' in p]
        assert acked, "the acknowledgement did not go out"
    # Nothing brings the acknowledgement about again after a crash, so it is in the state.
    state = orjson.loads((tmp_path / "rules-state.json").read_bytes())
    assert orjson.dumps(state["engine"]).count(b"operator-7") == 1


async def test_compaction_keeps_the_events_the_state_does_not_cover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules_service, "JOURNAL_COMPACT", 3)
    out = Recorder()
    async with service(tmp_path, out, []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        await svc.persist_if_needed()  # covers seq 1-2; the journal had 3 records: kept
        svc.on_readings([r("wl-2", 0.40, 20)])
        await idle(svc)
        assert svc._journal.records == 6
        await svc.persist_if_needed()  # covers everything: the journal is rewritten empty
        assert journal(tmp_path) == []
        svc.on_readings([r("wl-1", 0.05, 30)])  # clears: one more event, after the state
        await idle(svc)
    records = journal(tmp_path)
    assert [rec.get("event", {}).get("event") for rec in records] == ["cleared", None]
    assert records[0]["seq"] == 5


@pytest.mark.parametrize("sync", [True, False])
async def test_journal_records_survive_a_reopen_and_sync_makes_them_durable(
    tmp_path: Path, sync: bool
) -> None:
    path = tmp_path / "j.jsonl"
    log = Journal(path)
    await log.append([{"a": 1}, {"b": 2}], sync=sync)
    assert log.unsynced is not sync
    await log.sync()
    assert not log.unsynced
    path.write_bytes(path.read_bytes() + b'{"torn": ')  # a crash in the middle of a write
    assert Journal(path).read() == [{"a": 1}, {"b": 2}]


async def test_an_unsynced_append_does_not_wait_for_a_sync_under_way(tmp_path: Path) -> None:
    log = Journal(tmp_path / "j.jsonl")
    await log.append([{"n": 1}], sync=False)
    syncing = asyncio.create_task(log.sync())
    await asyncio.sleep(0)  # one step: the sync's fdatasync runs in a thread
    await log.append([{"n": 2}], sync=False)  # a barrier's command on its way out
    assert not syncing.done()
    await syncing
    assert log.unsynced  # the sync covered the first record only
    await log.sync()
    assert not log.unsynced
    assert log.read() == [{"n": 1}, {"n": 2}]


async def test_a_rewrite_evaluates_what_to_keep_once_appends_under_way_are_done(
    tmp_path: Path,
) -> None:
    log = Journal(tmp_path / "j.jsonl")
    first = asyncio.create_task(log.append([{"n": 1}]))
    await asyncio.sleep(0)  # one step: the append holds the lock, its write in a thread
    kept = [{"n": 1}]
    rewrite = asyncio.create_task(log.rewrite(lambda: list(kept)))
    await asyncio.sleep(0)  # one step: the rewrite waits for the lock
    kept.append({"n": 2})  # recorded by the owner meanwhile
    await first
    await rewrite
    assert log.read() == [{"n": 1}, {"n": 2}]


def test_a_state_saved_in_the_first_format_is_still_read() -> None:
    engine = Engine(rules(FLOOD), INVENTORY)
    engine.on_readings([r("wl-1", 0.30, 10), r("wl-2", 0.05, 11)])
    state = orjson.loads(orjson.dumps(engine.snapshot(encoded=True)))
    old = {
        **{k: v for k, v in state.items() if k != "values"},
        "format": 1,
        "seen": {sid: [ts, state["values"].get(sid)] for sid, ts in state["seen"].items()},
    }
    restored = Engine(rules(FLOOD), INVENTORY, old)
    assert restored.snapshot() == engine.snapshot()
    # A late reading is still recognised as late: the times came back.
    assert restored.on_readings([r("wl-2", 0.40, 5)]) == []
