"""Background loops that outlive their own failures.

Every loop the hub runs in the background (dead letters, the rules' dispatch, notification
channels, detection, the situation room's ticker, scheduled jobs) runs under `supervised`: an
exception is logged with its cause, counted in `hub_task_failures_total{task}`, and the loop
starts again after a backoff, so that one failing part never stops ingest or barrier commands.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from hub.metrics import TASK_FAILURES

log = logging.getLogger("hub.supervise")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
# A loop that ran this long before failing starts again after the shortest backoff.
HEALTHY_AFTER = 60.0


async def supervised(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    backoff_min: float = BACKOFF_MIN,
    backoff_max: float = BACKOFF_MAX,
) -> None:
    """Run `loop()` until it returns (its work is done) or the task is cancelled; start it
    again, after a backoff that doubles up to `backoff_max`, whenever it raises."""
    delay = backoff_min
    while True:
        started = time.monotonic()
        try:
            await loop()
        except Exception as exc:  # anything but cancellation
            failed(name, exc)
            if time.monotonic() - started >= HEALTHY_AFTER:
                delay = backoff_min
            log.warning("%s starts again in %.1fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(backoff_max, delay * 2)
        else:
            return


def failed(name: str, exc: BaseException) -> None:
    """Log a background task's failure with its cause and count it."""
    TASK_FAILURES.labels(task=name).inc()
    log.error("%s failed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)


def guarded(name: str, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """`run` for a scheduler: a failure is logged and counted, and the next run goes ahead."""

    async def job() -> None:
        try:
            await run()
        except Exception as exc:  # one run failing is not the end of the job
            failed(name, exc)
        except asyncio.CancelledError:
            # The scheduler cancels a run in progress when the hub stops, and would log that
            # as a failed job; the hub's shutdown does the work itself (a last state save).
            log.debug("%s: a run cancelled as the hub stops", name)

    return job


async def until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)` with `stop` set by SIGTERM or SIGINT (a worker command's main loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)
