"""Replay of the spool into InfluxDB: oldest first, a record forgotten once it is stored."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from hub.storage.batch import Batch, Outcome, count_written, write_batch
from hub.storage.influx import InfluxClient
from hub.storage.spool import Spool, SpoolRecord

log = logging.getLogger("hub.storage")


async def replay_some(
    client: InfluxClient,
    spool: Spool,
    *,
    max_in_flight: int,
    seen_up: Callable[[bool], None],
) -> bool | None:
    """Write the oldest spooled records, up to `max_in_flight` at a time, in order.

    Returns True if some were stored (or rejected), False if InfluxDB did not answer, and
    None when the spool is empty. `seen_up` hears whether InfluxDB answered."""
    try:
        records = await spool.read()
    except OSError:
        log.exception("cannot read the spool %s", spool.directory)
        return False
    if not records:
        return None if spool.empty else True
    done = asyncio.Event()  # the writes report here; completion is awaited task by task
    progress = False
    pending: deque[tuple[SpoolRecord, Batch, asyncio.Task[None]]] = deque()
    async with asyncio.TaskGroup() as tg:
        for record in records:
            if len(pending) >= max_in_flight:
                if not await _settle(spool, *pending.popleft(), seen_up):
                    break
                progress = True
            batch = Batch(record.payload, record.count)
            task = tg.create_task(write_batch(client, batch, done), name="storage-replay")
            pending.append((record, batch, task))
        else:
            while pending:
                if not await _settle(spool, *pending.popleft(), seen_up):
                    break
                progress = True
        for _, _, task in pending:
            task.cancel()  # behind a failure: they go again, in order, next time
    return progress


async def _settle(
    spool: Spool,
    record: SpoolRecord,
    batch: Batch,
    task: asyncio.Task[None],
    seen_up: Callable[[bool], None],
) -> bool:
    await task
    if batch.outcome is Outcome.UNAVAILABLE:
        log.debug("replay: InfluxDB still unavailable: %s", batch.error)
        seen_up(False)
        return False
    count_written(batch)
    seen_up(True)
    spool.commit(record)
    return True
