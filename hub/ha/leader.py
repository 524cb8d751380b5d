"""Leadership of a pair of hubs: one lease-held key in etcd, an epoch, and a local watchdog.

A candidate takes a lease of `ttl` seconds and creates the leader key on it, in one
transaction that succeeds only if the key does not exist. The key's create revision is the
epoch: every write of the store compares it (hub.store.etcd), so a hub that lost the key,
whether its lease lapsed or it was stopped, cut off or slow, writes nothing.

The key goes when the leader revokes its lease (stepping down) or when etcd lets the lease
lapse because no keepalive came in `ttl` seconds; a standby watching the key then takes it.

The watchdog: a keepalive sent at local time t keeps the lease until at least t + ttl on
etcd's side (etcd counts from when it receives it, which is later). The leader holds itself
to t + ttl - guard, and `valid()` reads the clock each time it is asked, not a flag that a
task sets: a leader whose process was stopped and woke up after its lease lapsed answers
False before anything else runs. The clock is CLOCK_BOOTTIME, which keeps counting while
the machine is suspended (the monotonic clock does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from hub.store.etcd_client import EtcdClient, EtcdError, EtcdUnavailableError, b64, unb64

log = logging.getLogger("hub.ha")


def boottime() -> float:
    """Seconds on a clock that never goes back and counts a suspended machine's time."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Leadership:
    """Campaign for, hold and give up the leader key; the store's `Fence`."""

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        name: str,
        *,
        ttl: int = 2,
        guard: float | None = None,
        clock: Callable[[], float] = boottime,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"a lease lasts at least 1 s (etcd counts whole seconds), got {ttl}")
        self.client = client
        self._key = key
        self.name = name
        self.ttl = ttl
        # Held back from the lease's end: time to stop acting, and a keepalive's slack.
        self.guard = ttl / 4 if guard is None else guard
        self.clock = clock
        self._lease = 0
        self._epoch = 0
        self._valid_until = 0.0
        self._lost = asyncio.Event()
        self.reason = ""  # why leadership was lost, last time

    @property
    def key(self) -> str:
        return self._key

    @property
    def epoch(self) -> int:
        """The current epoch (0 when not the leader)."""
        return self._epoch

    @property
    def deadline(self) -> float:
        """When, on `clock`, this hub stops being the leader unless a keepalive renews it."""
        return self._valid_until

    def valid(self) -> bool:
        """Whether this hub is the leader, with its lease certainly alive."""
        return self._epoch > 0 and self.clock() < self._valid_until

    def lost(self, reason: str) -> None:
        """Stop being the leader (the watchdog, a fenced write or a failed keepalive)."""
        if self._epoch:
            log.warning("ha: %s gives up leadership epoch %d: %s", self.name, self._epoch, reason)
        self._epoch = 0
        self._valid_until = 0.0
        self.reason = reason
        self._lost.set()

    async def campaign(self) -> int:
        """Wait until this hub holds the leader key; return the epoch."""
        while True:
            try:
                epoch, revision = await self._try()
            except EtcdError as exc:
                log.warning("ha: %s cannot campaign: %s", self.name, exc)
                await asyncio.sleep(self.ttl / 4)
                continue
            if epoch:
                return epoch
            await self._until_vacant(revision)

    async def _try(self) -> tuple[int, int]:
        """(epoch, 0) if the key was taken, else (0, the revision the key was seen at)."""
        sent = self.clock()
        grant = await self.client.call("/v3/lease/grant", {"TTL": self.ttl})
        lease = int(grant["ID"])
        ttl = int(grant["TTL"])
        key = b64(self._key)
        reply = await self.client.call(
            "/v3/kv/txn",
            {
                "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
                "success": [
                    {"request_put": {"key": key, "value": b64(self.name), "lease": str(lease)}}
                ],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        if reply.get("succeeded"):
            return self._won(lease, int(reply["header"]["revision"]), sent, ttl), 0
        holder = _holder(reply)
        # A retried campaign whose first try went through finds the key on its own lease.
        if holder is not None and int(holder.get("lease", 0)) == lease:
            return self._won(lease, int(holder["create_revision"]), sent, ttl), 0
        with contextlib.suppress(EtcdError):
            await self.client.call("/v3/lease/revoke", {"ID": str(lease)})
        return 0, int(reply["header"]["revision"])

    def _won(self, lease: int, epoch: int, sent: float, ttl: int) -> int:
        self._lease, self._epoch = lease, epoch
        self._valid_until = sent + ttl - self.guard
        self._lost.clear()
        self.reason = ""
        log.info("ha: %s is the leader, epoch %d", self.name, epoch)
        return epoch

    async def _until_vacant(self, revision: int) -> None:
        """Return when the key is deleted after `revision`, or after one lease at most."""
        with contextlib.suppress(TimeoutError, EtcdError):
            async with asyncio.timeout(self.ttl):
                async for result in self.client.watch(self._key, None, revision + 1):
                    if any(e.get("type") == "DELETE" for e in result.get("events", [])):
                        return

    async def hold(self) -> str:
        """Keep the lease alive while leader; return why leadership was lost."""
        interval = self.ttl / 4
        while self.valid():
            sent = self.clock()
            try:
                async with asyncio.timeout(max(self._valid_until - sent, 0.0)):
                    reply = await self.client.call("/v3/lease/keepalive", {"ID": str(self._lease)})
                ttl = int(reply.get("result", {}).get("TTL", 0))
            except (TimeoutError, EtcdUnavailableError) as exc:
                log.warning("ha: %s keepalive failed: %s", self.name, exc)
                ttl = -1
            except EtcdError as exc:
                self.lost(f"keepalive refused: {exc}")
                break
            if ttl == 0:
                self.lost("the lease expired in etcd")
                break
            if ttl > 0 and self._epoch:
                self._valid_until = max(self._valid_until, sent + ttl - self.guard)
            await self._sleep_until(min(sent + interval, self._valid_until))
        if self._epoch:
            self.lost("the keepalive deadline passed (local watchdog)")
        return self.reason

    async def _sleep_until(self, when: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(when - self.clock(), 0.0)):
                await self._lost.wait()

    async def resign(self) -> None:
        """Step down: give the key up at once, so that the standby need not wait a lease."""
        lease = self._lease
        self.lost("stepped down")
        if lease:
            with contextlib.suppress(EtcdError):
                await self.client.call("/v3/lease/revoke", {"ID": str(lease)})
        self._lease = 0

    async def leader(self) -> str | None:
        """The name of the hub that holds the key now, or None."""
        reply = await self.client.call("/v3/kv/range", {"key": b64(self._key)})
        kvs: list[dict[str, Any]] = reply.get("kvs", [])
        return unb64(kvs[0].get("value", "")).decode() if kvs else None


def _holder(reply: dict[str, Any]) -> dict[str, Any] | None:
    for response in reply.get("responses", []):
        kvs = response.get("response_range", {}).get("kvs", [])
        if kvs:
            return dict(kvs[0])
    return None
