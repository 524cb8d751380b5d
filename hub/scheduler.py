"""Every piece of scheduled work in the hub, in one place, run by APScheduler on the event loop.

Other parts add their jobs here (evidence retention, nightly actuator self-tests, a daily
summary), so that what runs on the clock can be read in one file.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.supervise import guarded

log = logging.getLogger("hub.scheduler")
# A run skipped because the previous one is still going is the intended coalescing (a slow
# disk under load), and a line per run of a job that runs five times a second drowns the log;
# job failures are logged and counted by `guarded`.
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Job:
    """A coroutine run every `every` seconds; a run that overlaps the next is skipped."""

    name: str
    every: float
    run: Callable[[], Awaitable[None]]


class RuleJobs(Protocol):
    """What the scheduler runs of the rule service."""

    async def tick(self) -> None: ...
    async def persist_if_needed(self) -> None: ...
    async def reload_if_changed(self) -> None: ...


def rule_jobs(rules: RuleJobs) -> list[Job]:
    """The rule engine's jobs: its clock, its state on disk, and watching the rule files."""
    return [
        Job("rules-tick", 1.0, rules.tick),
        Job("rules-persist", 0.2, rules.persist_if_needed),
        Job("rules-reload", 2.0, rules.reload_if_changed),
    ]


def start_scheduler(jobs: Sequence[Job]) -> AsyncIOScheduler:
    """Start running `jobs` on the current event loop; call `.shutdown(wait=False)` to stop."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in jobs:
        scheduler.add_job(
            guarded(job.name, job.run),
            "interval",
            seconds=job.every,
            id=job.name,
            name=job.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(job.every * 5)),
        )
    scheduler.start()
    log.debug("scheduler: %s", ", ".join(f"{j.name} every {j.every:g}s" for j in jobs))
    return scheduler
