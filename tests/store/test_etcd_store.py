"""The replicated store against a real 3-member etcd cluster: it reads back what the SQLite
store reads back, a standby follows the active hub through the watch, a batch etcd would
refuse is refused whole, and a lost member or quorum is survived or reported in time."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import StoreConfig
from hub.services import EtcdCluster, free_port
from hub.store import Changes, StoreError
from hub.store.etcd import EtcdStore, FencedError, open_etcd_store
from hub.store.etcd_client import EtcdClient, b64
from hub.store.sqlite import SqliteStore
from tests.helpers import eventually
from tests.pki import make_pki

SPACES = ("rules.events", "actuators.jobs")


def _open(cluster: EtcdCluster, prefix: str, **kwargs: object) -> EtcdStore:
    return EtcdStore(EtcdClient(cluster.endpoints, timeout=1.0), prefix, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def store(etcd: EtcdCluster, uid: str) -> AsyncIterator[EtcdStore]:
    opened = _open(etcd, f"t{uid}")
    yield opened
    await opened.aclose()


def _random_batch(rng: random.Random) -> Changes:
    batch = Changes()
    for _ in range(rng.randint(1, 6)):
        space, key = rng.choice(SPACES), f"{rng.randint(0, 30):03d}"
        roll = rng.random()
        if roll < 0.7:
            batch.put(space, key, {"n": rng.randint(0, 1000), "text": "x" * rng.randint(0, 50)})
        elif roll < 0.85:
            batch.delete(space, key)
        else:
            last = f"{int(key) + rng.randint(0, 8):03d}" if rng.random() < 0.7 else None
            batch.delete_range(space, key, last)
    return batch


def _everything(store: EtcdStore | SqliteStore) -> dict[str, object]:
    seen: dict[str, object] = {}
    for space in SPACES:
        seen[f"{space} load"] = list(store.load(space).items())
        seen[f"{space} count"] = store.count(space)
        seen[f"{space} newest"] = store.scan(space, reverse=True, limit=5)
        seen[f"{space} below"] = store.scan(space, before="015", limit=7)
        seen[f"{space} get"] = [store.get(space, f"{i:03d}") for i in range(0, 40, 3)]
    return seen


async def test_it_reads_back_what_the_sqlite_store_reads_back(
    store: EtcdStore, etcd: EtcdCluster, uid: str, tmp_path: Path
) -> None:
    sqlite = SqliteStore(tmp_path / "hub.db")
    rng = random.Random(uid)
    for _ in range(150):
        batch = _random_batch(rng)
        sqlite.commit(batch)
        store.commit(batch)
        if rng.random() < 0.2:
            await store.sync()
    await store.sync()
    assert store.unsynced == 0
    assert _everything(store) == _everything(sqlite)
    # What etcd holds, read by a store that starts now, is the same.
    fresh = _open(etcd, f"t{uid}")
    assert _everything(fresh) == _everything(sqlite)
    await fresh.aclose()
    await sqlite.aclose()


async def test_a_standby_follows_the_active_hub_and_may_not_write(
    store: EtcdStore, etcd: EtcdCluster, uid: str
) -> None:
    standby = _open(etcd, f"t{uid}", mode="reader")
    async with asyncio.TaskGroup() as tasks:
        watching = tasks.create_task(standby.run())
        store.commit(Changes().put("rules.events", "a", 1).put("rules.events", "b", 2))
        store.commit(Changes().delete("rules.events", "a").put("actuators.jobs", "j", {"s": 1}))
        await store.sync()
        await eventually(lambda: standby.revision >= store.revision, "the standby's watch")
        await eventually(
            lambda: standby.load("rules.events") == {"b": 2}, "the standby to see the commits"
        )
        assert standby.get("actuators.jobs", "j") == {"s": 1}
        with pytest.raises(FencedError, match="this hub is the standby"):
            standby.commit(Changes().put("rules.events", "c", 3))
        assert standby.get("rules.events", "c") is None
        watching.cancel()
    await standby.aclose()


async def test_a_batch_over_the_transaction_limits_is_refused_whole(
    etcd: EtcdCluster, uid: str
) -> None:
    store = _open(etcd, f"t{uid}", max_txn_ops=4, max_request_bytes=2000)
    store.commit(Changes().put("rules.events", "kept", 1))
    many = Changes()
    for i in range(5):
        many.put("rules.events", f"k{i}", i)
    with pytest.raises(StoreError, match=r"5 operations .* \(4 operations, 2000 bytes\)"):
        store.commit(many)
    big = Changes().put("rules.events", "small", 1).put("actuators.jobs", "big", "x" * 3000)
    with pytest.raises(StoreError, match=r"the largest document is actuators\.jobs/big"):
        store.commit(big)
    await store.sync()
    assert store.load("rules.events") == {"kept": 1}
    assert store.count("actuators.jobs") == 0
    assert _open(etcd, f"t{uid}").load("rules.events") == {"kept": 1}
    await store.aclose()


async def test_commits_go_on_when_a_member_is_killed(own_etcd: EtcdCluster, uid: str) -> None:
    store = _open(own_etcd, f"t{uid}")
    store.commit(Changes().put("rules.events", "before", 1))
    await store.sync()
    own_etcd.members[0].kill()  # the member the store talks to first
    store.commit(Changes().put("rules.events", "after", 2))
    await store.sync()
    survivors = EtcdClient([m.url for m in own_etcd.members[1:]])
    reply = await survivors.call("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0")})
    assert int(reply["count"]) == 2
    await survivors.aclose()
    own_etcd.start()  # the killed member comes back and catches up
    assert _open(own_etcd, f"t{uid}").load("rules.events") == {"before": 1, "after": 2}
    await store.aclose()


async def test_without_a_quorum_sync_fails_in_time_and_the_queue_is_kept(
    own_etcd: EtcdCluster, uid: str
) -> None:
    store = _open(own_etcd, f"t{uid}", timeout=2.0)
    own_etcd.members[1].kill()
    own_etcd.members[2].kill()
    store.commit(Changes().put("rules.events", "queued", 1))
    assert store.get("rules.events", "queued") == 1  # read back at once, from memory
    start = time.monotonic()
    with pytest.raises(StoreError, match="1 commits not replicated after 2s"):
        await store.sync()
    assert time.monotonic() - start < 3.0
    assert store.unsynced == 1
    own_etcd.start()
    await store.sync()
    assert store.unsynced == 0
    assert _open(own_etcd, f"t{uid}").get("rules.events", "queued") == 1
    await store.aclose()


async def test_credentials_are_used_and_a_wrong_one_is_named(
    own_etcd: EtcdCluster, uid: str
) -> None:
    endpoints = ",".join(own_etcd.endpoints)
    for args in (["user", "add", "root:pw", "--interactive=false"], ["auth", "enable"]):
        await asyncio.to_thread(
            subprocess.run, ["etcdctl", f"--endpoints={endpoints}", *args], check=True
        )
    client = EtcdClient(own_etcd.endpoints, username="root", password="pw")
    store = EtcdStore(client, f"t{uid}")
    await store.commit_durable(Changes().put("rules.events", "a", 1))
    await store.aclose()
    with pytest.raises(StoreError, match=r"authentication failed.*\(set store.username and HUB_"):
        EtcdStore(EtcdClient(own_etcd.endpoints, username="root", password="wrong"), f"t{uid}")
    with pytest.raises(StoreError, match=r"user name is empty \(set store.username"):
        EtcdStore(EtcdClient(own_etcd.endpoints), f"t{uid}")


def test_a_cluster_that_does_not_answer_is_named_at_start() -> None:
    endpoints = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with pytest.raises(StoreError, match="no member answered") as caught:
        open_etcd_store(StoreConfig(backend="etcd", endpoints=tuple(endpoints)))
    assert all(url in str(caught.value) for url in endpoints)


async def test_a_cluster_behind_tls_is_reached_with_the_configured_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    cluster = EtcdCluster(tmp_path / "etcd", tls=(pki.server_cert, pki.server_key, pki.ca))
    await asyncio.to_thread(cluster.start)
    try:
        endpoints = tuple(cluster.endpoints)
        assert all(url.startswith("https://") for url in endpoints)
        config = StoreConfig(backend="etcd", endpoints=endpoints, ca_file=pki.ca)
        store = open_etcd_store(config)
        await store.commit_durable(Changes().put("rules.events", "a", 1))
        await store.aclose()
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            open_etcd_store(StoreConfig(backend="etcd", endpoints=endpoints, ca_file=pki.other_ca))
        mismatched = StoreConfig(
            backend="etcd",
            endpoints=endpoints,
            ca_file=pki.ca,
            cert_file=pki.client_cert,
            key_file=pki.other_key,
        )
        with pytest.raises(StoreError, match="store: the TLS files cannot be used"):
            open_etcd_store(mismatched)
    finally:
        cluster.stop()
