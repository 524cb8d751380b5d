"""Store commit latency: the replicated store (a fenced transaction on a local 3-member etcd
cluster) beside the embedded SQLite store, measured in the same run; and how long a standby
takes to lead once the leader stops renewing. Not a test: it prints figures.

    .venv/bin/python bench/store.py [--commits 2000] [--handovers 5]

Each commit is one small document (an actuator job's size) made durable before the next:
SQLite's `commit` alone (what a rule's command waits for), SQLite's `commit_durable` (an
fdatasync of its WAL) and etcd's `commit_durable` (a transaction that compares the leader
key's epoch, answered once a quorum has it on disk). Then `--pipelined`: commits queued
back to back with one `sync` every 50, where the store sends several in one transaction.

The etcd members run on this machine's loopback with data in a temporary folder, as the
test fixtures start them (heartbeat 50 ms, election 500 ms); across machines add the
network's round trip to each transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from hub.ha.leader import Leadership, boottime
from hub.services import EtcdCluster
from hub.store import Changes, seq_key
from hub.store.etcd import EtcdStore
from hub.store.etcd_client import EtcdClient
from hub.store.sqlite import SqliteStore

JOB = {"command_id": "6f1d3c2a-8a55-4c1e-9a0e-5b7f0d2e4a11", "state": "sent", "action": "close"}


def _figures(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:<34} p50 {statistics.median(ms):8.3f} ms   p99 {p99:8.3f} ms   (n={len(ms)})"


async def _sqlite(folder: Path, n: int) -> list[str]:
    store = SqliteStore(folder / "hub.db")
    plain, durable = [], []
    for i in range(n):
        start = time.perf_counter()
        store.commit(Changes().put("actuators.jobs", seq_key(i), JOB))
        plain.append(time.perf_counter() - start)
    for i in range(n):
        start = time.perf_counter()
        await store.commit_durable(Changes().put("actuators.jobs", seq_key(i), JOB))
        durable.append(time.perf_counter() - start)
    await store.aclose()
    return [_figures("sqlite commit", plain), _figures("sqlite commit_durable (fsync)", durable)]


async def _etcd(cluster: EtcdCluster, n: int) -> list[str]:
    client = EtcdClient(cluster.endpoints)
    leader = Leadership(client, "bench/_ha/leader", "bench", ttl=2)
    store = EtcdStore(client, "bench", mode="reader")
    await leader.campaign()
    await store.lead(leader)
    durable, pipelined = [], []
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(leader.hold())
        for i in range(n):
            start = time.perf_counter()
            await store.commit_durable(Changes().put("actuators.jobs", seq_key(i), JOB))
            durable.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            store.commit(Changes().put("actuators.jobs", seq_key(i), JOB))
            if i % 50 == 49:
                await store.sync()
        await store.sync()
        pipelined.append((time.perf_counter() - start) / n)
        await leader.resign()
        await holding
    await client.aclose()
    return [
        _figures("etcd fenced commit_durable", durable),
        f"{'etcd pipelined, per commit':<34} mean {pipelined[0] * 1000:7.3f} ms",
    ]


async def _handovers(cluster: EtcdCluster, rounds: int) -> str:
    """The leader's keepalive stops (a hung process); how long until the standby leads, and
    whether the old one had stopped acting by then."""
    times, margins = [], []
    for r in range(rounds):
        a_client, b_client = EtcdClient(cluster.endpoints), EtcdClient(cluster.endpoints)
        a = Leadership(a_client, f"handover{r}/_ha/leader", "a", ttl=2)
        b = Leadership(b_client, f"handover{r}/_ha/leader", "b", ttl=2)
        await a.campaign()
        holding = asyncio.create_task(a.hold())
        campaign = asyncio.create_task(b.campaign())
        await asyncio.wait([campaign], timeout=1.0)
        holding.cancel()
        stopped, deadline = boottime(), a.deadline
        await campaign
        now = boottime()
        times.append(now - stopped)
        margins.append(now - deadline)
        await b.resign()
        await a_client.aclose()
        await b_client.aclose()
    return (
        f"{'handover after the keepalive stops':<34} "
        f"median {statistics.median(times):.2f} s, max {max(times):.2f} s (lease 2 s); "
        f"the old leader had stopped {min(margins):.2f}-{max(margins):.2f} s before"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cluster = EtcdCluster(folder / "etcd")
        cluster.start()
        try:
            lines = await _sqlite(folder, args.commits)
            lines += await _etcd(cluster, args.commits)
            lines.append(await _handovers(cluster, args.handovers))
        finally:
            cluster.stop()
    print(f"{args.commits} commits of one {len(str(JOB))}-byte document each")
    for line in lines:
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--handovers", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
