"""One failure never stops the rest: a broker that refuses the hub's dead letters (PUBACK
0x87) costs those letters only, and a background loop that raises starts again, counted."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from hub.metrics import REGISTRY
from hub.scheduler import Job, start_scheduler
from hub.services import LocalInflux
from hub.supervise import supervised
from tests.helpers import (
    Peer,
    aquery,
    eventually,
    hub_in_process,
    hub_yaml,
)
from tests.mqtt.support import dynamic_security


def failures(task: str) -> float:
    return REGISTRY.get_sample_value("hub_task_failures_total", {"task": task}) or 0.0


async def test_a_loop_that_raises_starts_again_with_a_backoff_and_is_counted() -> None:
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")

    before = failures("flaky")
    await asyncio.wait_for(supervised("flaky", flaky, backoff_min=0.05), 5)
    assert len(runs) == 3, "it did not start again, or went on after it finished"
    assert failures("flaky") - before == 2
    assert runs[1] - runs[0] >= 0.05
    assert runs[2] - runs[1] >= 0.1, "the backoff did not double"


async def test_cancelling_a_supervised_loop_stops_it() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(supervised("forever", forever))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.integration
async def test_a_refused_dead_letter_does_not_stop_the_hub(
    tmp_path: Path, influx: LocalInflux, prefix: str, database: str, uid: str
) -> None:
    deny = {"acltype": "publishClientSend", "topic": f"{prefix}/deadletter", "allow": False}
    broker = dynamic_security(tmp_path / "broker", [deny])
    broker.start()
    try:
        config = hub_yaml(tmp_path, broker.url, influx.url, prefix, database, uid)
        dropped = REGISTRY.get_sample_value("hub_deadletters_dropped_total") or 0.0
        async with hub_in_process(config) as hub:
            sensor = Peer(broker.url, f"sensor-{uid}")
            try:
                sensor.publish(f"{prefix}/sensors/suwon/wl-1", b'{"value": "high"}')
                await eventually(
                    lambda: (
                        (REGISTRY.get_sample_value("hub_deadletters_dropped_total") or 0) > dropped
                    ),
                    "the broker to refuse the dead letter",
                )
                reading = {"value": 0.5, "unit": "m", "ts": time.time() - 5}
                sensor.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps(reading))

                async def stored() -> bool:
                    rows = await aquery(influx.url, database, "SELECT value FROM reading")
                    return len(rows) == 1

                await eventually(stored, "the next reading to be stored")
                assert hub.health().ok
            finally:
                sensor.close()
    finally:
        broker.stop()


async def test_a_job_running_when_the_scheduler_stops_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running_now = asyncio.Event()

    async def slow() -> None:
        running_now.set()
        await asyncio.sleep(30)

    scheduler = start_scheduler([Job("slow", 0.05, slow)])
    await asyncio.wait_for(running_now.wait(), 5)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)  # the cancelled run's callbacks
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
