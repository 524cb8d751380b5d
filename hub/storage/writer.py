"""The storage writer: batches points for InfluxDB, spools them while it is down or slow,
replays the spool in order once it answers, and tells the caller when points are safe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from hub.metrics import INFLUX_UP, SPOOL_FULL, STORAGE_BUFFER
from hub.storage.batch import Batch, Outcome, count_written, write_batch
from hub.storage.influx import InfluxClient
from hub.storage.replay import replay_some
from hub.storage.spool import Spool

log = logging.getLogger("hub.storage")

_FINISHED = (Outcome.STORED, Outcome.REJECTED)
# An InfluxDB that did not answer at start is asked again at least this often (a /ping).
PING_EVERY_MAX = 5.0


class StorageWriter:
    """Batches line protocol into InfluxDB writes; see `submit`, `run` and `close`."""

    def __init__(
        self,
        client: InfluxClient,
        spool: Spool,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.2,
        buffer_points: int = 200_000,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        on_durable: Callable[[list[object]], None] | None = None,
        max_in_flight: int = 2,
        spill_points: int | None = None,
        slow_after: float = 1.0,
    ) -> None:
        self._client = client
        self._spool = spool
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._buffer_points = buffer_points
        self._retry_min = retry_min
        self._retry_max = max(retry_max, retry_min)
        self._on_durable = on_durable
        self._max_in_flight = max(1, max_in_flight)
        # A write that has taken `slow_after` seconds while `spill_points` wait behind it means
        # InfluxDB is too slow for the stream: the backlog goes to disk rather than holding
        # up the producers.
        self._spill_points = spill_points if spill_points is not None else buffer_points // 2
        self._slow_after = slow_after
        # The batch being filled.
        self._chunks: list[bytes] = []
        self._tokens: list[object] = []
        self._pending = 0
        self._open = False
        self._timer: asyncio.TimerHandle | None = None
        # Sealed batches, oldest first: waiting, then being written.
        self._queue: deque[Batch] = deque()
        self._queued = 0
        self._inflight: deque[Batch] = deque()
        self._buffered = 0  # every point not yet stored, spooled or given up on
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        # A spool left by an earlier run is replayed before anything new is written.
        self._spooling = not spool.empty
        self._after_failure = False
        self._recovering = asyncio.Event()
        if self._spooling:
            self._recovering.set()
        self._closing = asyncio.Event()
        self._closed = False
        self._force = False
        self._serving = False  # run() or close() is running the loops
        self._stopped = asyncio.Event()
        self._recover_task: asyncio.Task[None] | None = None
        self._up: bool | None = None  # InfluxDB's state as last seen, for INFLUX_UP
        self._refused: str | None = None  # why the spool last refused points, while it does

    # --- producer side ---------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Whether the in-memory buffer is at `buffer_points`: stop taking input."""
        return self._buffered >= self._buffer_points

    @property
    def buffered(self) -> int:
        """Points held in memory, not yet stored or spooled."""
        return self._buffered

    @property
    def spooled_points(self) -> int:
        """Points waiting in the spool to be replayed."""
        return self._spool.points

    @property
    def spool_refused(self) -> str | None:
        """Why the spool refuses points (full, or its disk full or failing), while it does."""
        return self._refused

    @property
    def influx_up(self) -> bool:
        """Whether InfluxDB answered last time it was asked and nothing waits in the spool
        (false until the first answer: a hub that cannot reach it at start says so at once)."""
        return self._up is True and not self._spooling

    @property
    def spooling(self) -> bool:
        """Whether points go to the spool (InfluxDB down or slow, or a replay under way)."""
        return self._spooling

    async def wait_for_room(self) -> None:
        """Return once the buffer holds fewer than `buffer_points` points."""
        while self._buffered >= self._buffer_points:
            self._room.clear()
            await self._room.wait()

    def submit(self, lines: bytes, count: int, token: object | None = None) -> None:
        """Queue newline-terminated lines holding `count` points; never blocks.

        `on_durable` gets `token` back, in submit order, once the points are stored, spooled
        or refused by InfluxDB (counted and logged). Callers await `wait_for_room` before
        submitting so that memory stays bounded."""
        if self._closed:
            raise RuntimeError("the storage writer is closed")
        if not self._open:
            self._open = True
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self._seal)
        if lines:
            if lines[-1] != 0x0A:
                lines += b"\n"
            self._chunks.append(lines)
        if token is not None:
            self._tokens.append(token)
        self._pending += count
        self._buffered += count
        if self._pending >= self._batch_size:
            self._seal()
        if self._buffered >= self._buffer_points:
            self._room.clear()

    def _seal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._open:
            return
        batch = Batch(b"".join(self._chunks), self._pending, self._tokens)
        self._chunks, self._tokens, self._pending, self._open = [], [], 0, False
        self._queue.append(batch)
        self._queued += batch.count
        STORAGE_BUFFER.set(self._buffered)
        self._wake.set()

    def _durable(self, batch: Batch) -> None:
        self._buffered -= batch.count
        STORAGE_BUFFER.set(self._buffered)
        if self._buffered < self._buffer_points:
            self._room.set()
        if batch.tokens and self._on_durable is not None:
            try:
                self._on_durable(batch.tokens)
            except Exception:
                log.exception("on_durable failed for %d tokens", len(batch.tokens))

    # --- the loops -------------------------------------------------------------------------

    async def run(self) -> None:
        """Write batches until `close`; run it in the application's TaskGroup."""
        if self._serving or self._closed:
            await self._stopped.wait()  # close() is draining, or has drained, without us
            return
        self._serving = True
        await self._serve()

    async def _serve(self) -> None:
        self._stopped.clear()
        try:
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(self._send(tg), name="storage-send")
                self._recover_task = tg.create_task(self._recover(), name="storage-recover")
                await sender
                self._recover_task.cancel()  # what is left in the spool waits for next time
        except BaseException:  # cancelled, or a bug: keep what memory holds for next time
            self._save_now()
            raise
        finally:
            self._serving = False
            self._stopped.set()

    async def _send(self, tg: asyncio.TaskGroup) -> None:
        while True:
            self._wake.clear()
            self._settle()
            if self._spooling or self._force:
                await self._spool_batches()
            else:
                self._launch(tg)
                if self._too_slow():
                    log.warning(
                        "InfluxDB is slow (a write has taken over %.1fs, %d points wait): "
                        "spooling to %s",
                        self._slow_after,
                        self._queued,
                        self._spool.directory,
                    )
                    self._enter_spooling(failed=False)
                    continue
            if self._closing.is_set() and not (self._open or self._queue or self._inflight):
                return
            await self._sleep()

    def _settle(self) -> None:
        """Acknowledge finished writes in order; a failed one turns spooling on."""
        while self._inflight and self._inflight[0].outcome is not None:
            batch = self._inflight[0]
            if batch.outcome is Outcome.UNAVAILABLE:
                if not self._spooling:
                    log.warning(
                        "InfluxDB unavailable (%s): spooling to %s",
                        batch.error,
                        self._spool.directory,
                    )
                    self._set_up(False)
                    self._enter_spooling(failed=True)
                return
            self._inflight.popleft()
            count_written(batch)
            if batch.task is not None and not self._up:
                self._set_up(True)
            self._durable(batch)

    def _launch(self, tg: asyncio.TaskGroup) -> None:
        while self._queue and len(self._inflight) < self._max_in_flight:
            batch = self._queue.popleft()
            self._queued -= batch.count
            self._inflight.append(batch)
            if batch.outcome in _FINISHED:  # kept back by a spool that refused the rest
                self._wake.set()
                continue
            if not batch.body:  # only tokens: acknowledged in turn, nothing to write
                batch.outcome = Outcome.STORED
                self._wake.set()
                continue
            batch.outcome = batch.error = None  # it may come back from a spool that refused it
            batch.started = time.monotonic()
            batch.task = tg.create_task(
                write_batch(self._client, batch, self._wake), name="storage-write"
            )

    def _too_slow(self) -> bool:
        return (
            self._queued >= self._spill_points
            and bool(self._inflight)
            and self._inflight[0].outcome is None
            and time.monotonic() - self._inflight[0].started >= self._slow_after
        )

    async def _sleep(self) -> None:
        """Wait for news; with a backlog behind a write, also for that write to turn slow."""
        if self._spooling or not self._inflight or self._queued < self._spill_points:
            await self._wake.wait()
            return
        timeout = self._inflight[0].started + self._slow_after - time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(timeout, 0.001))

    def _enter_spooling(self, *, failed: bool) -> None:
        self._spooling = True
        self._after_failure = failed
        self._recovering.set()
        self._wake.set()

    async def _spool_batches(self) -> None:
        """Move every batch in flight or waiting to the spool, in order, then acknowledge.

        A spool that refuses (full, or its disk full or failing) keeps the rest in memory,
        unacknowledged: the buffer fills, ingest stops reading, and the broker holds the
        messages until a replay frees room. Nothing acknowledged is ever dropped."""
        batches = [*self._inflight, *self._queue]
        if not batches:
            return
        self._inflight.clear()
        self._queue.clear()
        self._queued = 0
        done: list[Batch] = []
        refused: OSError | None = None
        for batch in batches:
            try:
                if batch.body and batch.outcome not in _FINISHED:
                    if batch.task is not None:
                        batch.task.cancel()  # the spool has it now; a replay writes it again
                    self._spool.append(batch.body, batch.count)
            except OSError as exc:
                refused = exc
                break
            done.append(batch)
        try:
            await self._spool.sync()
        except OSError as exc:
            # What the failed fsync covered may not be on disk: spooled again (InfluxDB keeps
            # one copy of a point written twice), and acknowledged only then.
            # Acknowledgements keep the order of arrival, so all of them wait.
            refused, done = exc, []
        kept = batches[len(done) :]
        for batch in kept:
            if batch.task is not None and batch.outcome is None:
                batch.task.cancel()  # written again in turn, so that nothing overtakes
        if kept and self._force:
            self._abandon(kept, refused)
            kept = []
        self._queue.extendleft(reversed(kept))  # ahead of what came in during the sync
        self._queued = sum(b.count for b in self._queue)
        self._set_refused(refused if kept else None)
        for batch in done:
            if batch.outcome in _FINISHED:
                count_written(batch)
            self._durable(batch)
        if kept:
            await asyncio.sleep(self._retry_min)  # then try again: a replay may have made room
            self._wake.set()

    def _set_refused(self, exc: OSError | None) -> None:
        why = None if exc is None else str(exc)
        if why and not self._refused:
            log.error(
                "%s: %d points wait in memory, and no new reading is taken (the broker holds "
                "them) until there is room",
                why,
                self._queued,
            )
        elif self._refused and not why:
            log.warning("the spool takes points again: reading from the broker resumes")
        self._refused = why
        SPOOL_FULL.set(1 if why else 0)

    def _abandon(self, batches: list[Batch], exc: OSError | None) -> None:
        """At shutdown, points neither InfluxDB nor the spool took: not acknowledged, so that
        the broker delivers them again next session."""
        lost = sum(b.count for b in batches)
        log.error(
            "%d points neither stored nor spooled at shutdown (%s): not acknowledged, the "
            "broker delivers them again at the next start (those sent at QoS 0 are lost)",
            lost,
            exc,
        )
        self._buffered -= lost
        STORAGE_BUFFER.set(self._buffered)

    def _save_now(self) -> None:
        """On cancellation: spool whatever is still in memory, without the event loop."""
        self._seal()
        batches = [
            b
            for b in (*self._inflight, *self._queue)
            if b.count and b.outcome not in (Outcome.STORED, Outcome.REJECTED)
        ]
        self._inflight.clear()
        self._queue.clear()
        try:
            for batch in batches:
                self._spool.append(batch.body, batch.count)
            self._spool.sync_now()
        except OSError as exc:
            log.error(  # noqa: TRY400 - the cause is in the message
                "cannot spool the last %d points (%s): not acknowledged, the broker delivers "
                "them again at the next start",
                sum(b.count for b in batches),
                exc,
            )
        else:
            if batches:
                log.warning(
                    "cancelled: %d points spooled for the next start",
                    sum(b.count for b in batches),
                )

    # --- recovery --------------------------------------------------------------------------

    def _set_up(self, up: bool) -> None:
        if up and self._up is False and self._spooling:
            log.info("InfluxDB answers again: replaying %d spooled points", self._spool.points)
        self._up = up
        INFLUX_UP.set(1 if up else 0)

    async def _recover(self) -> None:
        await self._watch_until_up()
        while True:
            await self._recovering.wait()
            delay = self._retry_min if self._after_failure else 0.0
            while self._spooling:
                if delay and await self._closed_within(delay * random.uniform(0.5, 1.0)):
                    return
                if self._closing.is_set():
                    return
                replayed = await replay_some(
                    self._client,
                    self._spool,
                    max_in_flight=self._max_in_flight,
                    seen_up=self._set_up,
                )
                if replayed is None:
                    log.info("spool replayed: writing to InfluxDB directly again")
                    self._spooling = False
                    self._set_refused(None)  # what waited in memory goes to InfluxDB now
                    self._recovering.clear()
                    self._wake.set()
                elif replayed:
                    delay = 0.0
                else:
                    delay = min(self._retry_max, max(self._retry_min, delay * 2))
                    log.debug("InfluxDB still unavailable; next try within %.1fs", delay)

    async def _watch_until_up(self) -> None:
        """At start, ping InfluxDB until it answers, so that health tells the truth before
        the first write; make the database once it does (it may have been down at start)."""
        delay = self._retry_min
        while self._up is not True and not self._spooling:
            up = await self._client.ping()
            if up:
                with contextlib.suppress(Exception):  # a write says what is wrong, if anything
                    await self._client.create_database()
            if not (self.influx_up or self._spooling):  # a write may have answered since
                if not up and self._up is None:
                    log.warning(
                        "InfluxDB does not answer at %s: health is 503 until it does; readings "
                        "are spooled meanwhile",
                        self._client.url,
                    )
                self._set_up(up)
            if up or await self._event_within(self._recovering, delay):
                return
            delay = min(PING_EVERY_MAX, self._retry_max, delay * 2)

    async def _event_within(self, event: asyncio.Event, seconds: float) -> bool:
        """Whether `event` or closing is set within `seconds`."""
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()
        return bool(done)

    async def _closed_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), max(seconds, self._retry_min / 2))
        except TimeoutError:
            return False
        return True

    # --- shutdown --------------------------------------------------------------------------

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Drain the buffer to InfluxDB, or to the spool if it is down or too slow."""
        if self._closed:
            await self._stopped.wait()
            return
        self._closed = True
        self._seal()
        self._closing.set()
        self._wake.set()
        if self._serving:
            await self._finish(timeout)
        else:
            self._serving = True  # a run() that starts now waits for this drain
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._serve(), name="storage-drain")
                await self._finish(timeout)
        await self._spool.sync()
        self._spool.close()

    async def _finish(self, deadline_s: float) -> None:
        try:
            await asyncio.wait_for(self._stopped.wait(), deadline_s)
        except TimeoutError:
            log.warning(
                "InfluxDB did not take the last %d points within %gs: spooling them",
                self._buffered,
                deadline_s,
            )
            self._force = True
            self._wake.set()
            if self._recover_task is not None:
                self._recover_task.cancel()
            await self._stopped.wait()
