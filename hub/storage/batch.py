"""A batch of line protocol on its way to InfluxDB, one write of it, and its bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import Enum

from hub.metrics import POINTS_DROPPED, POINTS_STORED, WRITE_LATENCY
from hub.storage.influx import (
    InfluxClient,
    InfluxRejectedError,
    InfluxUnavailableError,
    rejected_points,
)

log = logging.getLogger("hub.storage")

# Counting per measurement would mean parsing every line; the hot path does not.
_STORED = POINTS_STORED.labels(measurement="all")
_REJECTED = POINTS_DROPPED.labels(reason="rejected")
_LOG_CHARS = 1000


class Outcome(Enum):
    """What became of a write."""

    STORED = "stored"
    REJECTED = "rejected"  # some or all points refused by InfluxDB; never retried
    UNAVAILABLE = "unavailable"  # retry later, from the spool


@dataclass(eq=False)
class Batch:
    """Newline-terminated lines holding `count` points, and the tokens that ride along."""

    body: bytes
    count: int
    tokens: list[object] = field(default_factory=list)
    outcome: Outcome | None = None
    error: Exception | None = None
    task: asyncio.Task[None] | None = None
    started: float = 0.0


async def write_batch(client: InfluxClient, batch: Batch, done: asyncio.Event) -> None:
    """Write `batch`, record its outcome on it, and set `done`; raises only when cancelled."""
    started = time.perf_counter()
    try:
        await client.write(batch.body)
    except InfluxUnavailableError as exc:
        batch.outcome, batch.error = Outcome.UNAVAILABLE, exc
    except InfluxRejectedError as exc:
        batch.outcome, batch.error = Outcome.REJECTED, exc
    except Exception as exc:
        # A surprise from the HTTP stack must not lose the batch: it goes to the spool.
        log.exception("write to InfluxDB failed unexpectedly")
        batch.outcome, batch.error = Outcome.UNAVAILABLE, exc
    else:
        batch.outcome = Outcome.STORED
    WRITE_LATENCY.observe(time.perf_counter() - started)
    done.set()


def count_written(batch: Batch) -> None:
    """Count a stored or rejected batch in the metrics; log what InfluxDB refused."""
    if batch.outcome is Outcome.STORED:
        _STORED.inc(batch.count)
    elif isinstance(batch.error, InfluxRejectedError):
        lost = rejected_points(batch.error, batch.count)
        _REJECTED.inc(lost)
        _STORED.inc(batch.count - lost)
        log.error(
            "InfluxDB rejected %d of %d points (HTTP %d): %s",
            lost,
            batch.count,
            batch.error.status,
            str(batch.error)[:_LOG_CHARS],
        )
