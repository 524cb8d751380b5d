"""Leadership with fencing, against a real 3-member etcd cluster: one leader of two
candidates, a handover within a bounded time when the leader stops renewing or is stopped,
the old leader's watchdog firing before the new one is chosen, a stale leader's writes
refused by etcd, and the loss of one etcd member survived."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hub.ha.leader import Leadership, boottime
from hub.services import EtcdCluster
from hub.store import Changes
from hub.store.etcd import EtcdStore, FencedError
from hub.store.etcd_client import EtcdClient, b64, prefix_end
from tests.helpers import eventually

TTL = 2
HANDOVER_S = TTL + 1.0  # the lease, plus the standby's watch and one campaign round trip


@pytest.fixture
async def clients(etcd: EtcdCluster) -> AsyncIterator[Callable[[], EtcdClient]]:
    """`clients()`: a client of the session's cluster (closed at the end)."""
    made: list[EtcdClient] = []

    def make() -> EtcdClient:
        made.append(EtcdClient(etcd.endpoints, timeout=1.0))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


def _leadership(client: EtcdClient, uid: str, name: str) -> Leadership:
    return Leadership(client, f"t{uid}/_ha/leader", name, ttl=TTL)


async def test_one_of_two_candidates_leads_until_it_steps_down(
    clients: Callable[[], EtcdClient], uid: str
) -> None:
    a, b = _leadership(clients(), uid, "a"), _leadership(clients(), uid, "b")
    epoch = await a.campaign()
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(a.hold())
        campaign = tasks.create_task(b.campaign())
        # Two leases' time: the leader renews, so the other candidate must still be waiting.
        done, _ = await asyncio.wait([campaign], timeout=2 * TTL)
        assert not done
        assert a.valid()
        assert not b.valid()
        assert await a.leader() == "a"
        stepped = boottime()
        await a.resign()
        b_epoch = await campaign
        assert boottime() - stepped < 1.0  # no waiting for a lease to lapse
        assert await holding == "stepped down"
    assert b_epoch > epoch
    assert b.valid()
    assert not a.valid()
    assert await b.leader() == "b"


async def test_a_leader_that_stops_renewing_gives_up_before_the_other_takes_over(
    clients: Callable[[], EtcdClient], uid: str
) -> None:
    a, b = _leadership(clients(), uid, "a"), _leadership(clients(), uid, "b")
    await a.campaign()
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(a.hold())
        campaign = tasks.create_task(b.campaign())
        await asyncio.wait([campaign], timeout=TTL)  # a renews meanwhile
        assert a.valid()
        holding.cancel()  # the keepalive stops, as in a hung process
        stopped = boottime()
        deadline = a.deadline
        await campaign
    took_over = boottime()
    assert took_over - stopped < HANDOVER_S
    # The watchdog: a held itself to less than the lease etcd gave it, so it had stopped
    # acting before etcd let the lease lapse and b was chosen.
    assert deadline < took_over
    assert not a.valid()
    assert b.valid()


async def test_a_stale_leaders_write_is_refused_by_the_fence(
    etcd: EtcdCluster, clients: Callable[[], EtcdClient], uid: str
) -> None:
    a = _leadership(clients(), uid, "a")
    store = EtcdStore(a.client, f"t{uid}", mode="reader")
    epoch = await a.campaign()
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(a.hold())
        await store.lead(a)
        store.commit(Changes().put("ha.log", "first", {"epoch": epoch}))
        await store.sync()
        b, b_epoch = await _take_behind_the_back(a, clients(), uid)
        assert a.valid()
        store.commit(Changes().put("ha.log", "stale", {"epoch": epoch}))
        with pytest.raises(FencedError, match=f"no longer belongs to epoch {epoch}"):
            await store.sync()
        assert not a.valid()
        assert await holding == a.reason
    assert a.reason.startswith("the leader key")
    other = b.client
    with pytest.raises(FencedError, match="writes refused"):
        store.commit(Changes().put("ha.log", "later", {}))
    fresh = EtcdStore(other, f"t{uid}", mode="reader")
    assert fresh.load("ha.log") == {"first": {"epoch": epoch}}
    # b's store writes on its own epoch; a, made a reader again, follows.
    b_store = EtcdStore(other, f"t{uid}", mode="reader")
    await b_store.lead(b)
    await b_store.commit_durable(Changes().put("ha.log", "b", {"epoch": b_epoch}))
    await store.follow()
    assert store.mode == "reader"
    assert store.load("ha.log") == {"b": {"epoch": b_epoch}, "first": {"epoch": epoch}}


async def _take_behind_the_back(
    a: Leadership, other: EtcdClient, uid: str
) -> tuple[Leadership, int]:
    """The key goes behind a's back (an operator, or a lease that etcd let lapse while a's
    clock said otherwise), and b takes it; a's watchdog still thinks it leads."""
    await other.call("/v3/kv/deleterange", {"key": b64(a.key)})
    b = _leadership(other, uid, "b")
    return b, await b.campaign()


async def test_a_stopped_leader_wakes_up_fenced_and_writes_nothing(
    etcd: EtcdCluster, clients: Callable[[], EtcdClient], uid: str, tmp_path: Path
) -> None:
    out = tmp_path / "candidate.out"
    with out.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "tests.ha.candidate"],
            *[",".join(etcd.endpoints), f"t{uid}", "a"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        await eventually(lambda: "wrote 3" in out.read_text(), "the candidate to lead and write")
        b = _leadership(clients(), uid, "b")
        os.kill(proc.pid, signal.SIGSTOP)  # hung, or cut off: no keepalive, no writes
        stopped = boottime()
        b_epoch = await b.campaign()
        assert boottime() - stopped < HANDOVER_S
        os.kill(proc.pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            await proc.wait()
        text = out.read_text()
        assert "refused" in text, text
        assert "lost: " in text, text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # Nothing a wrote reached etcd after b's epoch began.
    client = clients()
    start = f"t{uid}/ha.log/"
    reply = await client.call(
        "/v3/kv/range", {"key": b64(start), "range_end": b64(prefix_end(start))}
    )
    revisions = [int(kv["mod_revision"]) for kv in reply["kvs"]]
    assert len(revisions) >= 3
    assert max(revisions) < b_epoch


async def test_the_leader_and_its_writes_survive_the_loss_of_an_etcd_member(
    own_etcd: EtcdCluster, uid: str
) -> None:
    client = EtcdClient(own_etcd.endpoints, timeout=1.0)
    a = Leadership(client, f"t{uid}/_ha/leader", "a", ttl=TTL)
    store = EtcdStore(client, f"t{uid}", mode="reader")
    epoch = await a.campaign()
    await store.lead(a)
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(a.hold())
        own_etcd.members[0].kill()  # the member both talk to first
        await store.commit_durable(Changes().put("ha.log", "after-kill", {"epoch": epoch}))
        # Two leases' time with one member down: a never stops leading.
        deadline = boottime() + 2 * TTL
        while boottime() < deadline:
            assert a.valid(), a.reason
            await asyncio.sleep(0.05)
        assert a.epoch == epoch
        await asyncio.to_thread(own_etcd.start)  # the member rejoins; a keeps renewing
        await store.commit_durable(Changes().put("ha.log", "rejoined", {"epoch": epoch}))
        await a.resign()
        assert await holding == "stepped down"
    assert EtcdStore(client, f"t{uid}", mode="reader").count("ha.log") == 2
    await client.aclose()
