"""The replicated store: the `Store` protocol on a 3-member etcd cluster.

Each document is one etcd key, `<prefix>/<space>/<key>`, its value the document's JSON.
Reads never leave the process: the whole prefix is read into memory at start and a watch
keeps it current, so that a standby hub holds the same state as the active one.

Writes, and what each guarantees:

- `commit(changes)` checks the batch (at most `max_txn_ops` operations and
  `max_request_bytes` in one transaction: a bigger one is refused with StoreError, nothing
  of it kept), applies it to the memory at once, so the next read sees it, and queues it.
  It does not wait for the network: it is made on the event loop.
- The queue goes to etcd in commit order, one transaction at a time, several commits in
  one transaction when they fit (`run` sends as soon as something is queued, `sync` too).
  Each commit is atomic. If the process dies, etcd holds a prefix of its commits: never a
  later one without an earlier one, never part of one.
- `sync()` returns once every commit made before it is in etcd, that is on a quorum of
  members' disks (etcd answers a transaction after its raft entry is committed), so it
  survives the loss of this machine. It raises StoreError if that takes longer than
  `timeout`; the queue is kept and sent when etcd answers again.

A commit is safe to send twice: the queue is sent in order, and a transaction describes
the final state of the keys it touches (puts, and ranges deleted around them), so a
transaction that timed out after etcd applied it is simply sent again.

Fencing: a store that writes on behalf of the active hub holds a `Fence` (the leadership,
see hub.ha.leader). Every transaction compares the leader key's create revision with the
fence's epoch, and nothing is sent once the fence's local watchdog has expired: a hub that
lost its leadership, even one that was stopped and woke up, gets FencedError, and nothing
of it is written. A fenced store keeps refusing until `follow` reloads it from etcd.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from hub.store import Changes, StoreError
from hub.store.etcd_client import (
    EtcdClient,
    EtcdError,
    EtcdUnavailableError,
    WatchCompactedError,
    b64,
    prefix_end,
    unb64,
)
from hub.store.etcd_ops import Op, normalize, request_bytes

if TYPE_CHECKING:
    from hub.config import StoreConfig

log = logging.getLogger("hub.store")

MAX_REQUEST_BYTES = 1536 * 1024  # etcd's --max-request-bytes default, 1.5 MiB
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
MAX_COALESCED = 64  # commits sent in one transaction at most
PAGE = 1000  # keys per range request while loading
RESERVED = "_"  # spaces beginning with it are not documents (`_ha/leader`)

Mode = Literal["writer", "reader", "failed"]


class FencedError(StoreError):
    """This hub is no longer the active one: its writes are refused."""


class Fence(Protocol):
    """What the store needs of a leadership."""

    @property
    def key(self) -> str:
        """The leader key, whose create revision is the epoch."""
        ...

    @property
    def epoch(self) -> int:
        """The create revision of the leader key when this hub took it."""
        ...

    def valid(self) -> bool:
        """Whether the lease is certainly alive (the local watchdog has not expired)."""
        ...

    def lost(self, reason: str) -> None:
        """The store found the fence broken."""
        ...


class EtcdStore:
    """The `Store` protocol on etcd, read from memory, written through an ordered queue."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        mode: Literal["writer", "reader"] = "writer",
        timeout: float = 5.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_txn_ops: int = MAX_TXN_OPS,
    ) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/") + "/"
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        self.fence: Fence | None = None
        self._mode: Mode = mode
        self._failure = ""
        self._docs: dict[str, dict[str, bytes]] = {}
        self._keys: dict[str, list[str]] = {}  # each space's keys, sorted
        self._revision = 0  # etcd's revision that the memory (or the watch) has reached
        self._advanced = asyncio.Event()
        self._watching = False  # whether the watch is connected
        # Commits not yet in etcd: number, batch, the batch as operations.
        self._pending: deque[tuple[int, Changes, list[Op]]] = deque()
        self._commits = 0
        self._acked = 0  # commits that etcd holds
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._last_error = ""
        self._replace(*self._read_all_blocking())

    @property
    def location(self) -> str:
        return f"etcd {self.client.location} under {self.prefix}"

    @property
    def mode(self) -> Mode:
        """writer (commits go to etcd), reader (a standby: the watch fills the memory) or
        failed (fenced or refused: nothing is written until `follow`)."""
        return self._mode

    @property
    def revision(self) -> int:
        """The etcd revision the watch has delivered up to."""
        return self._revision

    @property
    def unsynced(self) -> int:
        """Commits not yet in etcd."""
        return self._commits - self._acked

    # -- reads ------------------------------------------------------------------------------

    def load(self, space: str) -> dict[str, Any]:
        docs = self._docs.get(space, {})
        return {key: orjson.loads(docs[key]) for key in self._keys.get(space, [])}

    def get(self, space: str, key: str) -> Any | None:
        data = self._docs.get(space, {}).get(key)
        return None if data is None else orjson.loads(data)

    def scan(
        self,
        space: str,
        *,
        before: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[tuple[str, Any]]:
        keys = self._keys.get(space, [])
        end = len(keys) if before is None else bisect.bisect_left(keys, before)
        chosen = keys[:end][::-1] if reverse else keys[:end]
        if limit is not None:
            chosen = chosen[:limit]
        docs = self._docs[space] if chosen else {}
        return [(key, orjson.loads(docs[key])) for key in chosen]

    def count(self, space: str) -> int:
        return len(self._keys.get(space, []))

    def spaces(self) -> dict[str, int]:
        """How many documents each space holds."""
        return {space: len(keys) for space, keys in sorted(self._keys.items()) if keys}

    # -- writes -----------------------------------------------------------------------------

    def commit(self, changes: Changes) -> None:
        if not changes:
            return
        self._check_writable()
        ops = normalize(self.prefix, [changes])
        self._check_size(ops, changes)
        for op, space, key, value in changes:
            if op == "put":
                self._put(space, key, value)  # type: ignore[arg-type]
            elif op == "del":
                self._delete(space, key)
            else:
                self._delete_range(space, key, value)  # type: ignore[arg-type]
        self._commits += 1
        self._pending.append((self._commits, changes, ops))
        self._wake.set()

    def _check_writable(self) -> None:
        if self._mode == "failed":
            raise FencedError(f"{self.location}: writes refused: {self._failure}")
        if self._mode == "reader":
            raise FencedError(
                f"{self.location}: this hub is the standby; only the active hub writes"
            )
        if self.fence is not None and not self.fence.valid():
            self._fail(f"leadership epoch {self.fence.epoch} lapsed (local watchdog)")
            raise FencedError(f"{self.location}: writes refused: {self._failure}")

    def _check_size(self, ops: list[Op], changes: Changes) -> None:
        size = request_bytes(ops)
        if len(ops) <= self.max_txn_ops and size <= self.max_request_bytes:
            return
        largest = max(
            (c for c in changes if c[0] == "put"), key=lambda c: len(c[3] or b""), default=None
        )
        where = f"; the largest document is {largest[1]}/{largest[2]}" if largest else ""
        raise StoreError(
            f"{self.location}: a batch of {len(ops)} operations and {size} bytes is more than "
            f"one etcd transaction takes ({self.max_txn_ops} operations, "
            f"{self.max_request_bytes} bytes){where}; nothing of it was kept"
        )

    def _put(self, space: str, key: str, value: bytes) -> None:
        docs = self._docs.setdefault(space, {})
        if key not in docs:
            bisect.insort(self._keys.setdefault(space, []), key)
        docs[key] = value

    def _delete(self, space: str, key: str) -> None:
        docs = self._docs.get(space)
        if docs is not None and docs.pop(key, None) is not None:
            keys = self._keys[space]
            del keys[bisect.bisect_left(keys, key)]

    def _delete_range(self, space: str, first: str, last: str | None) -> None:
        keys = self._keys.get(space)
        if not keys:
            return
        lo = bisect.bisect_left(keys, first)
        hi = len(keys) if last is None else bisect.bisect_right(keys, last)
        docs = self._docs[space]
        for key in keys[lo:hi]:
            del docs[key]
        del keys[lo:hi]

    async def sync(self) -> None:
        target = self._commits
        try:
            async with asyncio.timeout(self.timeout):
                while self._acked < target:
                    self._raise_if_failed()
                    await self._flush()
        except TimeoutError:
            raise StoreError(
                f"{self.location}: {target - self._acked} commits not replicated after "
                f"{self.timeout:g}s ({self._last_error or 'no answer'}); they stay queued"
            ) from None
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._mode == "failed":
            raise FencedError(f"{self.location}: writes refused: {self._failure}")

    async def commit_durable(self, changes: Changes) -> None:
        self.commit(changes)
        await self.sync()

    def sync_now(self) -> None:
        while self._pending and self._fenced_in():
            number, body = self._next_txn()
            self._settle(number, self.client.call_blocking("/v3/kv/txn", body))
        self._raise_if_failed()

    async def _flush(self) -> None:
        """Send the queue in order; transient errors are retried until it is sent or fenced.

        Cancelling it is safe: a transaction cut short stays queued and is sent again."""
        async with self._send_lock:
            delay = 0.05
            while self._pending and self._fenced_in():
                number, body = self._next_txn()
                try:
                    reply = await self.client.call("/v3/kv/txn", body)
                except EtcdUnavailableError as exc:
                    self._last_error = str(exc)
                    log.warning("store: %s; trying again", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                except EtcdError as exc:
                    self._fail(f"etcd refused a transaction: {exc}")
                    return
                self._settle(number, reply)
                delay = 0.05

    def _fenced_in(self) -> bool:
        """Whether the store may send: a writer whose fence, if any, has not lapsed."""
        if self._mode != "writer":
            return False
        if self.fence is not None and not self.fence.valid():
            self._fail(f"leadership epoch {self.fence.epoch} lapsed (local watchdog)")
            return False
        return True

    def _next_txn(self) -> tuple[int, dict[str, Any]]:
        """The longest run of queued commits that fits one transaction, as its request."""
        number, first, ops = self._pending[0]
        batches = [first]
        # Merging cuts ranges around the puts of later commits: at most one operation, and
        # one key's bytes, more per put. Twice the sums bounds the merged transaction
        # without normalizing every candidate run (this is on the event loop).
        count, size = 2 * len(ops), 2 * request_bytes(ops)
        for i in range(1, min(len(self._pending), MAX_COALESCED)):
            later, changes, more = self._pending[i]
            count, size = count + 2 * len(more), size + 2 * request_bytes(more)
            if count > self.max_txn_ops or size > self.max_request_bytes:
                break
            batches.append(changes)
            number = later
        if len(batches) > 1:
            ops = normalize(self.prefix, batches)
        body: dict[str, Any] = {"success": [op.request() for op in ops]}
        if self.fence is not None:
            body["compare"] = [_fenced(self.fence.key, self.fence.epoch)]
        return number, body

    def _settle(self, number: int, reply: dict[str, Any]) -> None:
        if self.fence is not None and not reply.get("succeeded", False):
            self._fail(
                f"the leader key {self.fence.key} no longer belongs to epoch {self.fence.epoch}"
            )
            return
        while self._pending and self._pending[0][0] <= number:
            self._pending.popleft()
        self._acked = max(self._acked, number)
        self._last_error = ""

    def _fail(self, reason: str) -> None:
        if self._mode == "failed":
            return
        self._mode = "failed"
        self._failure = reason
        log.error("store: %s: %s; %d commits not written", self.location, reason, self.unsynced)
        self._pending.clear()
        if self.fence is not None:
            self.fence.lost(reason)

    # -- roles ------------------------------------------------------------------------------

    async def lead(self, fence: Fence) -> None:
        """Become the writer for `fence`, once the memory holds everything written before
        its epoch (the watch has delivered the leader key's creation, or else read anew)."""
        if self._mode != "reader":
            raise StoreError(f"{self.location}: lead() from {self._mode}; follow() first")
        try:
            if not self._watching:
                raise TimeoutError
            # The leader key is under the prefix: its creation comes through the watch after
            # everything written before it.
            async with asyncio.timeout(self.timeout):
                while self._revision < fence.epoch:
                    self._advanced.clear()
                    await self._advanced.wait()
        except TimeoutError:
            log.info("store: the watch is not at epoch %d; reading everything", fence.epoch)
            self._replace(*await asyncio.to_thread(self._read_all_blocking))
        self.fence = fence
        self._mode = "writer"

    async def follow(self) -> None:
        """Become a reader (a standby): drop what was not written and read everything anew."""
        self._pending.clear()
        self._acked = self._commits
        self.fence = None
        self._mode = "reader"
        self._failure = ""
        self._replace(*await asyncio.to_thread(self._read_all_blocking))

    # -- memory from etcd -------------------------------------------------------------------

    def _read_all_blocking(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Every key under the prefix at one revision (in pages)."""
        start, end = self.prefix, prefix_end(self.prefix)
        kvs: list[tuple[bytes, bytes]] = []
        revision = 0
        while True:
            body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": PAGE}
            if revision:
                body["revision"] = revision
            reply = self.client.call_blocking("/v3/kv/range", body)
            revision = revision or int(reply["header"]["revision"])
            page = reply.get("kvs", [])
            kvs.extend((unb64(kv["key"]), unb64(kv.get("value", ""))) for kv in page)
            if not reply.get("more") or not page:
                return revision, kvs
            start = unb64(page[-1]["key"]).decode() + "\0"

    def _replace(self, revision: int, kvs: list[tuple[bytes, bytes]]) -> None:
        self._docs, self._keys = {}, {}
        for key, value in kvs:
            self._apply(key, value)
        self._revision = revision
        self._advanced.set()

    def _apply(self, raw_key: bytes, value: bytes | None) -> None:
        space, _, key = raw_key.decode()[len(self.prefix) :].partition("/")
        if space.startswith(RESERVED):
            return
        if value is None:
            self._delete(space, key)
        else:
            self._put(space, key, value)

    # -- upkeep -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the memory current (a reader) and send what is committed (a writer)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch(), name="store-watch")
            tasks.create_task(self._send(), name="store-send")

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _watch(self) -> None:
        delay = 0.05
        try:
            await self._watch_forever(delay)
        finally:
            self._watching = False

    async def _watch_forever(self, delay: float) -> None:
        while True:
            try:
                start = self._revision + 1
                async for result in self.client.watch(self.prefix, prefix_end(self.prefix), start):
                    self._watching = True
                    self._on_watch(result)
                    delay = 0.05
            except WatchCompactedError as exc:
                log.warning("store: %s; reading everything anew", exc)
                self._resync_memory(*await asyncio.to_thread(self._read_all_blocking))
            except EtcdError as exc:
                self._watching = False
                log.warning("store: %s; watching again in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _on_watch(self, result: dict[str, Any]) -> None:
        # A transaction's events share its revision and come in one response.
        floor = self._revision
        for event in result.get("events", []):
            kv = event["kv"]
            revision = int(kv["mod_revision"])
            if revision <= floor:
                continue  # delivered again after a reconnect
            # A writer's memory is ahead of etcd (its queue); only a reader takes the events.
            if self._mode == "reader":
                deleted = event.get("type") == "DELETE"
                self._apply(unb64(kv["key"]), None if deleted else unb64(kv.get("value", "")))
            self._revision = max(self._revision, revision)
        self._advanced.set()

    def _resync_memory(self, revision: int, kvs: list[tuple[bytes, bytes]]) -> None:
        if self._mode == "reader":
            self._replace(revision, kvs)
        else:
            self._revision = revision
            self._advanced.set()

    async def aclose(self) -> None:
        try:
            if self._mode == "writer" and self._pending:
                await self.sync()
        except StoreError as exc:
            log.error("store: closing with commits not written: %s", exc)  # noqa: TRY400
        finally:
            await self.client.aclose()


def open_etcd_store(cfg: StoreConfig, mode: Literal["writer", "reader"] = "writer") -> EtcdStore:
    """The store of the `store:` section, its documents read (blocking, at start).

    A writer without a leadership writes unfenced: one hub on its prefix; a hub of a pair
    opens it as a reader and leads it while active (docs/ha.md)."""
    client = EtcdClient(
        cfg.endpoints,
        timeout=cfg.request_timeout,
        username=cfg.username,
        password=cfg.password,
        ssl_context=_ssl_context(cfg),
    )
    return EtcdStore(
        client,
        cfg.prefix,
        mode=mode,
        timeout=cfg.timeout,
        max_request_bytes=cfg.max_request_bytes,
        max_txn_ops=cfg.max_txn_ops,
    )


def _ssl_context(cfg: StoreConfig) -> ssl.SSLContext | None:
    if not cfg.endpoints[0].lower().startswith("https://"):
        return None
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.cert_file is not None:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"store: the TLS files cannot be used: {exc}") from exc
    return context


def _fenced(key: str, epoch: int) -> dict[str, Any]:
    return {"key": b64(key), "target": "CREATE", "create_revision": str(epoch), "result": "EQUAL"}
