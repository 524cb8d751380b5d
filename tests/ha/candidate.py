"""A hub candidate in a process of its own, for tests that stop it (SIGSTOP) as a hung or
cut-off machine would be: it campaigns, then writes one numbered record after another
through a fenced store until a write is refused, printing what happens.

    python -m tests.ha.candidate ENDPOINTS PREFIX NAME
"""

from __future__ import annotations

import asyncio
import sys

from hub.ha.leader import Leadership
from hub.store import Changes, StoreError, seq_key
from hub.store.etcd import EtcdStore
from hub.store.etcd_client import EtcdClient


def say(line: str) -> None:
    print(line, flush=True)


async def main(endpoints: str, prefix: str, name: str) -> None:
    client = EtcdClient(endpoints.split(","), timeout=1.0)
    leader = Leadership(client, f"{prefix}/_ha/leader", name, ttl=2)
    store = EtcdStore(client, prefix, mode="reader")
    epoch = await leader.campaign()
    await store.lead(leader)
    say(f"leader {epoch}")
    async with asyncio.TaskGroup() as tasks:
        holding = tasks.create_task(leader.hold())
        n = 0
        while True:
            n += 1
            try:
                await store.commit_durable(
                    Changes().put("ha.log", f"{name}-{seq_key(n)}", {"epoch": epoch})
                )
            except StoreError as exc:
                say(f"refused {n}: {exc}")
                break
            say(f"wrote {n}")
            await asyncio.sleep(0.02)  # a record every 20 ms, as a busy hub would write
        say(f"lost: {await holding}")
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
