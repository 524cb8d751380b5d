"""The rules' state and journal in the store across a crash: what was dispatched is not asked
for again, what was journalled but not dispatched goes out once after the restart, what the
broker will not deliver again waits for a durable state, and a store that refuses a write
holds events and acknowledgements back instead of losing them.

A crash is a service dropped without its drain, and the next one is built on the store's file
opened afresh: a SIGKILL leaves what was committed. The readings the broker would deliver
again are fed again by hand."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.actions import ActionDispatcher
from hub.rules import event_to_dict
from hub.rules import service as rules_service
from hub.rules.engine.core import Engine
from hub.rules.events import ActionRequested
from hub.rules.keyed import saved_state
from hub.rules.service import DISPATCHED, EVENTS, SNAPSHOT, STATE, RuleService
from hub.store import Changes, StoreError
from hub.store.sqlite import SqliteStore
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


class FlakyStore(SqliteStore):
    """A store that refuses the next `refuse` commits and fails the next `fail_syncs` syncs,
    as a full disk does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.refuse = 0
        self.fail_syncs = 0

    def commit(self, changes: Changes) -> None:
        if self.refuse:
            self.refuse -= 1
            raise StoreError(f"{self.path}: commit failed, nothing of it kept: disk is full")
        super().commit(changes)

    async def sync(self) -> None:
        if self.fail_syncs:
            self.fail_syncs -= 1
            raise OSError(28, "No space left on device")
        await super().sync()


@pytest.fixture
async def reopen(tmp_path: Path) -> AsyncIterator[Callable[[], FlakyStore]]:
    """Opens the store's file afresh, as a restarted hub does; all are closed at the end."""
    opened: list[FlakyStore] = []

    def open_again() -> FlakyStore:
        opened.append(FlakyStore(tmp_path / "hub.db"))
        return opened[-1]

    yield open_again
    for store in opened:
        await store.aclose()


@asynccontextmanager
async def service(
    store: SqliteStore, out: Recorder, acks: list[object], legacy_dir: Path | None = None
) -> AsyncIterator[RuleService]:
    """A dispatching rule service on `store`; left without a drain (a crash)."""
    dispatcher = ActionDispatcher()
    dispatcher.register("actuate", out)
    svc = RuleService(
        rules(FLOOD),
        INVENTORY,
        store=store,
        legacy_dir=legacy_dir,
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


def journal(store: SqliteStore) -> dict[int, str]:
    """The journal's events by sequence number: their kinds."""
    return {int(key): event["event"] for key, event in store.load(EVENTS).items()}


def snapshot(store: SqliteStore) -> dict[str, Any] | None:
    return saved_state(store.load(STATE))


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("rules-"))


async def idle(svc: RuleService) -> None:
    await eventually(svc._idle.is_set, "the outbox to be dispatched")


async def test_an_action_dispatched_before_a_crash_is_not_asked_for_again(
    reopen: Callable[[], FlakyStore],
) -> None:
    first, acks = Recorder(), []
    store = reopen()
    async with service(store, first, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        svc.hold(["message-1"])
        await idle(svc)
    assert len(first.actions) == 1
    assert acks == [], "acknowledged before the state that reflects the reading was saved"
    assert snapshot(store) is None
    assert journal(store) == {1: "opened", 2: "action"}
    assert store.get(STATE, DISPATCHED) == {"seq": 2}

    # The broker delivers the unacknowledged reading again to the restarted hub.
    second, acks = Recorder(), []
    async with service(reopen(), second, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        assert [i.id for i in svc.engine.incidents()] == [first.actions[0].rpartition(".")[0]]
    assert second.actions == [], "the barrier command was asked for twice"
    # The incident goes out again (a retained message and a stored point are replaced): what
    # the killed process held in memory only is not lost.
    assert {t for t, _ in second.published} == {t for t, _ in first.published}
    assert set(second.lines) == set(first.lines)


async def test_an_action_cut_short_by_a_crash_is_asked_for_again_once(
    reopen: Callable[[], FlakyStore],
) -> None:
    first = Recorder()
    dispatcher_blocked = asyncio.Event()

    async def stuck(action: ActionRequested) -> None:
        dispatcher_blocked.set()
        await asyncio.Event().wait()  # the process dies while the command is on its way

    store = reopen()
    async with service(store, first, []) as svc:
        svc.dispatcher.register("actuate", type("Stuck", (), {"execute": staticmethod(stuck)})())
        svc.on_readings([r("wl-2", 0.40, 10)])
        await asyncio.wait_for(dispatcher_blocked.wait(), 5)
    # Actions go before the journal's commit (the executor keeps its own record, and knows
    # the action's id): nothing of this reading was journalled, nothing acknowledged.
    assert journal(store) == {}
    assert snapshot(store) is None

    second = Recorder()
    async with service(reopen(), second, []) as svc:
        svc.on_readings([r("wl-2", 0.40, 10)])  # delivered again by the broker
        await idle(svc)
        assert len(second.actions) == 1, "the action was not asked for again after the start"
        svc.on_readings([r("wl-2", 0.40, 10)])  # and once more
        await idle(svc)
    assert len(second.actions) == 1, "the action went out twice"


async def test_a_stalled_broker_does_not_hold_events_and_a_crash_loses_no_incident(
    reopen: Callable[[], FlakyStore],
) -> None:
    """The incident's message waits at a broker that never answers: the events behind it
    (the action, the history, the listeners) go on; the process dies; after the start the
    incident goes out, and the action is not asked for again."""
    first = Recorder()
    publishing = asyncio.Event()

    async def stuck(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        publishing.set()
        await asyncio.Event().wait()  # the broker never answers; the process dies

    store = reopen()
    async with service(store, first, []) as svc:
        # After the start's republication of what the store held (nothing here).
        await eventually(lambda: not svc._republish, "the dispatch to start")
        svc.publisher = type("Stuck", (), {"publish": staticmethod(stuck)})()
        svc.on_readings([r("wl-2", 0.40, 10)])
        await asyncio.wait_for(publishing.wait(), 5)
        await idle(svc)  # not held up by the publication that waits
        assert len(first.lines) == 1, "the incident's history waited for the broker"
    assert len(first.actions) == 1
    assert journal(store) == {1: "opened", 2: "action"}

    second = Recorder()
    async with service(reopen(), second, []) as svc:
        svc.on_readings([r("wl-2", 0.40, 10)])  # delivered again by the broker
        await idle(svc)
        assert [t for t, _ in second.published if "/incidents/" in t], "no incident went out"
    assert second.actions == [], "the journalled action was asked for again"


async def test_the_state_covers_the_journal_and_acknowledges_what_it_reflects(
    reopen: Callable[[], FlakyStore],
) -> None:
    out, acks = Recorder(), []
    store = reopen()
    async with service(store, out, acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        svc.hold(["message-1"])
        await idle(svc)
        await svc.persist_if_needed()
        assert acks == ["message-1"]
        assert journal(store) == {}, "the state's commit left the journal's events it covers"
        svc.on_readings([r("wl-2", 0.40, 20)])  # after the state: in the journal only
        svc.hold(["message-2"])
        await idle(svc)
    state = snapshot(store)
    assert state is not None
    assert state["seq"] == 2
    assert state["outbox"] == []
    assert sorted(journal(store)) == [3, 4]
    assert acks == ["message-1"]

    again = Recorder()
    async with service(reopen(), again, []) as svc:
        await idle(svc)
        assert again.actions == [], "an action the state or the journal marks done went out"
        assert len(svc.engine.incidents()) == 1, "the state reflects the first reading only"
        svc.on_readings([r("wl-2", 0.40, 20)])
        await idle(svc)
        assert len(svc.engine.incidents()) == 2
    assert again.actions == []


async def test_a_state_save_keeps_the_journals_events_that_come_after_it(
    reopen: Callable[[], FlakyStore],
) -> None:
    out = Recorder()
    store = reopen()
    async with service(store, out, []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        svc.on_readings([r("wl-2", 0.40, 20)])
        await idle(svc)
        assert sorted(journal(store)) == [1, 2, 3, 4]
        await svc.persist_if_needed()  # covers everything: the journal is emptied
        assert journal(store) == {}
        svc.on_readings([r("wl-1", 0.05, 30)])  # clears: one more event, after the state
        await idle(svc)
    assert journal(store) == {5: "cleared"}
    assert store.get(STATE, DISPATCHED) == {"seq": 5}


async def test_an_undispatched_event_in_the_state_goes_out_after_a_crash(
    reopen: Callable[[], FlakyStore],
) -> None:
    first = Recorder()
    blocked = asyncio.Event()

    async def stuck(action: ActionRequested) -> None:
        blocked.set()
        await asyncio.Event().wait()

    store = reopen()
    async with service(store, first, []) as svc:
        svc.dispatcher.register("actuate", type("Stuck", (), {"execute": staticmethod(stuck)})())
        svc.on_readings([r("wl-1", 0.30, 10)])
        await asyncio.wait_for(blocked.wait(), 5)
        await svc.persist()  # the outbox, the action still in it, moves into the state
    state = snapshot(store)
    assert state is not None
    assert [event["event"] for _, event in state["outbox"]] == ["opened", "action"]
    assert journal(store) == {}

    second = Recorder()
    async with service(reopen(), second, []) as svc:
        await idle(svc)
        svc.on_readings([r("wl-1", 0.30, 10)])  # the state reflects it: nothing new
        await idle(svc)
    assert len(second.actions) == 1


async def test_an_operators_acknowledgement_is_saved_before_it_goes_out(
    reopen: Callable[[], FlakyStore],
) -> None:
    out = Recorder()
    store = reopen()
    async with service(store, out, []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        incident = svc.engine.incidents()[0].id
        store.refuse = 1  # the first save is refused: the acknowledgement waits for the next
        svc.acknowledge(incident, "operator-7")
        await idle(svc)
        acked = [orjson.loads(p) for _, p in out.published if b'"acknowledged"' in p]
        assert acked, "the acknowledgement did not go out"
    # Nothing brings the acknowledgement about again after a crash, so it is in the state.
    state = snapshot(store)
    assert state is not None
    assert orjson.dumps(state["engine"]).count(b"operator-7") == 1


async def test_a_refused_journal_commit_holds_the_events_back_and_tries_again(
    reopen: Callable[[], FlakyStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(rules_service, "RETRY_FIRST", 0.01)
    out = Recorder()
    store = reopen()

    async def publish(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        assert 1 in journal(store), "the incident left before the store held it"
        out.published.append((topic, payload))

    async with service(store, out, []) as svc:
        await eventually(lambda: not svc._republish, "the dispatch to start")
        svc.publisher = type("Checked", (), {"publish": staticmethod(publish)})()
        store.refuse = 2
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
    # The barrier's command went at once: its executor keeps its own record of it.
    assert len(out.actions) == 1
    assert len(out.published) == 1
    refused = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(refused) == 2
    assert "1 events wait" in refused[0]
    assert "disk is full" in refused[0]


async def test_a_failed_save_acknowledges_nothing_until_a_save_succeeds(
    reopen: Callable[[], FlakyStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.rules")
    acks: list[object] = []
    store = reopen()
    async with service(store, Recorder(), acks) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        svc.hold(["message-1"])
        await idle(svc)
        store.refuse = 1
        await svc.persist_if_needed()
        store.fail_syncs = 1  # committed, but not durable: not enough to acknowledge
        await svc.persist_if_needed()
        assert acks == []
        assert not svc.engine.dirty, "the test needs the snapshot to have marked it clean"
        await svc.persist_if_needed()
    assert acks == ["message-1"]
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "hub.rules"]
    assert sum("state not saved, 1 readings wait" in m for m in messages) == 1
    assert "rules: state saved again" in messages


async def test_a_refused_save_is_tried_again_with_nothing_new_to_save(
    reopen: Callable[[], FlakyStore],
) -> None:
    store = reopen()
    async with service(store, Recorder(), []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        store.refuse = 1
        await svc.persist_if_needed()  # the snapshot taken marks the engine clean regardless
        await svc.persist_if_needed()
    state = snapshot(store)
    assert state is not None, "the refused save was not tried again"
    assert state["seq"] == 2


def _old_state(engine: Engine, outbox: list[dict[str, Any]], seq: int) -> bytes:
    snapshot = orjson.loads(orjson.dumps(engine.snapshot(encoded=True)))
    return orjson.dumps({"version": 2, "engine": snapshot, "outbox": outbox, "seq": seq})


def _old_journal(*records: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


async def test_an_older_hubs_state_file_is_imported_once(
    tmp_path: Path, reopen: Callable[[], FlakyStore], caplog: pytest.LogCaptureFixture
) -> None:
    # The older hub saved its state with both events undispatched, journalled them before,
    # and was killed after handing on the first: the action is still to go out.
    engine = Engine(rules(FLOOD), INVENTORY)
    events = [event_to_dict(e) for e in engine.on_readings([r("wl-1", 0.30, 10)])]
    (tmp_path / "rules-state.json").write_bytes(_old_state(engine, events, 2))
    (tmp_path / "rules-events.jsonl").write_bytes(
        _old_journal({"seq": 1, "event": events[0]}, {"seq": 2, "event": events[1]})
        + b'{"done": '  # torn by the kill
    )

    out = Recorder()
    with caplog.at_level(logging.INFO, logger="hub.rules"):
        async with service(reopen(), out, [], legacy_dir=tmp_path) as svc:
            await idle(svc)
            assert [i.id for i in svc.engine.incidents()] == [events[0]["incident"]["id"]]
            svc.on_readings([r("wl-1", 0.30, 10)])  # the state reflects it: nothing new
            await idle(svc)
    assert len(out.actions) == 1
    assert files(tmp_path) == [
        "rules-events.jsonl.imported",
        "rules-state.json.imported",
    ]
    imported = [rec.getMessage() for rec in caplog.records if "imported" in rec.getMessage()]
    assert len(imported) == 1
    assert "rules-state.json (up to event 2, 2 undispatched)" in imported[0]

    again = Recorder()
    async with service(reopen(), again, [], legacy_dir=tmp_path) as svc:
        await eventually(lambda: not svc._republish, "the dispatcher to start")
        await idle(svc)
        assert len(svc.engine.incidents()) == 1
    assert again.actions == []


async def test_an_older_hubs_journal_alone_is_imported_with_what_it_dispatched(
    tmp_path: Path, reopen: Callable[[], FlakyStore]
) -> None:
    # Killed before its first state save, after dispatching both events.
    engine = Engine(rules(FLOOD), INVENTORY)
    events = [event_to_dict(e) for e in engine.on_readings([r("wl-1", 0.30, 10)])]
    (tmp_path / "rules-events.jsonl").write_bytes(
        _old_journal({"seq": 1, "event": events[0]}, {"seq": 2, "event": events[1]}, {"done": 2})
    )

    out = Recorder()
    async with service(reopen(), out, [], legacy_dir=tmp_path) as svc:
        await eventually(lambda: not svc._republish, "the dispatcher to start")
        await idle(svc)
        assert out.published == [], "a dispatched event went out again"
        svc.on_readings([r("wl-1", 0.30, 10)])  # delivered again by the broker
        await idle(svc)
        assert len(svc.engine.incidents()) == 1
    assert out.actions == [], "the journalled action was asked for twice"
    assert out.published, "the incident did not go out again"
    assert (tmp_path / "rules-events.jsonl.imported").exists()


async def test_old_files_are_left_alone_when_the_store_has_the_rules_state(
    tmp_path: Path, reopen: Callable[[], FlakyStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = reopen()
    async with service(store, Recorder(), []) as svc:
        svc.on_readings([r("wl-1", 0.30, 10)])
        await idle(svc)
        await svc.persist()
    (tmp_path / "rules-state.json").write_bytes(_old_state(Engine(rules(FLOOD), INVENTORY), [], 0))
    async with service(reopen(), Recorder(), [], legacy_dir=tmp_path) as svc:
        assert len(svc.engine.incidents()) == 1
    assert (tmp_path / "rules-state.json").exists()
    assert "not imported" in caplog.text


async def test_a_state_this_hub_cannot_read_is_refused_with_the_remedy(
    tmp_path: Path, reopen: Callable[[], FlakyStore]
) -> None:
    (tmp_path / "rules-state.json").write_bytes(orjson.dumps({"version": 7}))
    with pytest.raises(RuntimeError, match=r"rules-state\.json: state version 7.*move the file"):
        RuleService(
            rules(FLOOD),
            INVENTORY,
            store=reopen(),
            legacy_dir=tmp_path,
            publisher=Recorder(),
            sink=Recorder(),
            dispatcher=ActionDispatcher(),
            ack=print,
        )
    store = reopen()
    store.commit(Changes().put(STATE, SNAPSHOT, {"version": 9}))
    with pytest.raises(
        RuntimeError, match=f"{re.escape(store.location)}: .*version 9.*delete the spaces"
    ):
        RuleService(
            rules(FLOOD),
            INVENTORY,
            store=store,
            publisher=Recorder(),
            sink=Recorder(),
            dispatcher=ActionDispatcher(),
            ack=print,
        )


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
