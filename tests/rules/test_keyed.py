"""The rules' state as keys of their own: a save writes what changed, a save bigger than one
transaction is split, and a load after a crash in the middle of a split save reads the state
of the save before it, never a mix. HUB_KEYED_SEED=<n> replays the randomised test."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson

from hub.actions import ActionDispatcher
from hub.inventory import Inventory, Region, Site
from hub.rules.engine.core import Engine
from hub.rules.keyed import STATE, KeyedState, bucket, saved_state
from hub.rules.service import RuleService
from hub.services import EtcdCluster
from hub.store import Changes
from hub.store.etcd import EtcdStore
from hub.store.etcd_client import EtcdClient
from hub.store.sqlite import SqliteStore
from tests.rules.helpers import _sensor, r, rules

HELD = """
rules:
  - id: rising
    severity: minor
    sensors: {kind: water_level}
    trigger: {above: 15 cm, for: 10m}
"""


def big_inventory(n: int) -> Inventory:
    sensors = [_sensor(f"wl-{i:05d}", "water_level", "u1", "r1") for i in range(n)]
    return Inventory(
        {"r1": Region("r1", "Region one", ())},
        {"u1": Site("u1", "r1", "underpass", "Underpass one", 127.0, 37.0)},
        {s.id: s for s in sensors},
    )


def plain(engine: Engine) -> bytes:
    return orjson.dumps(engine.snapshot(), option=orjson.OPT_SORT_KEYS)


def test_a_save_writes_only_the_keys_that_changed(tmp_path: Path) -> None:
    inventory = big_inventory(200)
    engine = Engine(rules(HELD, inventory), inventory)
    engine.on_readings([r(s, 0.3, 10, inventory) for s in inventory.sensors])
    store = SqliteStore(tmp_path / "hub.db")
    keyed = KeyedState(store.load(STATE), location=store.location)
    commits = keyed.save(engine.snapshot(encoded=True), [], 1, Changes())
    assert len(commits) == 1, "SQLite takes any save in one commit"
    assert len(commits[0]) > 200
    store.commit(commits[0])
    keyed.saved()

    engine.on_readings([r("wl-00007", 0.1, 20, inventory)])
    (second,) = keyed.save(engine.snapshot(encoded=True), [], 2, Changes())
    written = sorted(key for op, _, key, _ in second if op == "put")
    # The head and the bucket of the reading; the subject that fell back has no state left.
    assert written == ["head", bucket("wl-00007")]
    assert [key for op, _, key, _ in second if op == "del"] == ["s/rising/wl-00007"]


def test_a_crash_in_the_middle_of_a_split_save_reads_the_save_before(tmp_path: Path) -> None:
    seed = int(os.environ.get("HUB_KEYED_SEED") or random.randrange(2**32))
    print(f"seed {seed} (HUB_KEYED_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    inventory = big_inventory(120)
    engine = Engine(rules(HELD, inventory), inventory)
    store = SqliteStore(tmp_path / "hub.db")
    limit = (10, 4096)
    keyed = KeyedState(store.load(STATE), location=store.location, limit=limit)
    for step in range(6):
        sensors = rng.sample(sorted(inventory.sensors), 60)
        t = 10 + step * 60
        engine.on_readings([r(s, rng.choice((0.1, 0.3)), t, inventory) for s in sensors])
        outbox = [(n, {"event": "opened", "n": n}) for n in range(step, step + rng.randrange(3))]
        commits = keyed.save(engine.snapshot(encoded=True), outbox, step, Changes())
        for changes in commits:
            assert len(changes) <= limit[0]
        before = saved_state(store.load(STATE))
        # A crash after each commit but the last: the store reads as it did before the save.
        cut = rng.randrange(len(commits))
        for changes in commits[:cut]:
            store.commit(changes)
        assert saved_state(store.load(STATE)) == before, f"step {step}: a save seen in part"
        for changes in commits[cut:]:
            store.commit(changes)
        keyed.saved()
        state = saved_state(store.load(STATE))
        assert state is not None
        assert state["seq"] == step
        assert [n for n, _ in state["outbox"]] == [n for n, _ in outbox]
        restored = Engine(rules(HELD, inventory), inventory, state["engine"])
        assert plain(restored) == plain(engine), f"step {step}"
        # A hub started on the store now (after a kill between saves) plans from what it reads.
        keyed = KeyedState(store.load(STATE), location=store.location, limit=limit)
    # The next save deletes what the last one left as deleted; the one after is the head alone.
    for changes in keyed.save(engine.snapshot(encoded=True), outbox, 9, Changes()):
        store.commit(changes)
    keyed.saved()
    (last,) = keyed.save(engine.snapshot(encoded=True), outbox, 10, Changes())
    assert [key for _, _, key, _ in last] == ["head"]


async def test_a_large_engine_is_saved_to_etcd_in_pieces_and_restored(
    etcd: EtcdCluster, uid: str
) -> None:
    inventory = big_inventory(3000)
    ruleset = rules(HELD, inventory)
    limit = (128, 1536 * 1024)

    def service(store: EtcdStore) -> RuleService:
        return RuleService(
            ruleset,
            inventory,
            store=store,
            publisher=_Nothing(),
            sink=_Nothing(),
            dispatcher=ActionDispatcher(),
            ack=lambda _token: None,
            commit_limit=limit,
        )

    store = EtcdStore(EtcdClient(etcd.endpoints), f"keyed-{uid}")
    try:
        svc = service(store)
        svc.on_readings([r(s, 0.3, 10, inventory) for s in inventory.sensors])
        await svc.persist()
        # Each commit fitted one transaction (the store refuses one that does not).
        assert store.unsynced == 0
        assert store.revision > 0
        assert len(store.load(STATE)) > limit[0], "the state is more than one transaction"
        expected = plain(svc.engine)
    finally:
        await store.aclose()

    again = EtcdStore(EtcdClient(etcd.endpoints), f"keyed-{uid}")
    try:
        restored = service(again)
        assert plain(restored.engine) == expected
        # The restored hub's first save writes only the head: nothing else changed.
        restored.engine.on_readings([r("wl-00001", 0.31, 20, inventory)])
        commits = restored._keyed.save(restored.engine.snapshot(encoded=True), [], 1, Changes())
        assert len(commits) == 1
        assert sorted(key for _, _, key, _ in commits[0]) == ["head", bucket("wl-00001")]
    finally:
        await again.aclose()


class _Nothing:
    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        pass

    def submit(self, lines: bytes, count: int, token: object | None = None) -> None:
        pass
