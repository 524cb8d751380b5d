"""The storage writer against a real InfluxDB: batching, rejections, outages, slowness,
restarts and shutdown. Points are readings of one sensor with value i at T0 + i ms, so
the order in which they reached InfluxDB can be read back from what was written."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hub.services import LocalInflux
from hub.storage import InfluxClient, Spool, StorageWriter

from ..helpers import aquery, eventually
from .conftest import Gate, reading_lines, sample

pytestmark = pytest.mark.integration

FAST_RETRY = {"retry_min": 0.05, "retry_max": 0.3}


@asynccontextmanager
async def running(writer: StorageWriter, close_timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the writer in a TaskGroup for the block, then close it (which drains it)."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(writer.run(), name="writer")
        try:
            yield
        finally:
            await writer.close(close_timeout)


@pytest.fixture
async def gated(gate: Gate, client: InfluxClient, database: str) -> AsyncIterator[InfluxClient]:
    """A client on this test's database that goes through the gate, compressing as it would
    across a network."""
    through = InfluxClient(gate.url, database, timeout=5, gzip_level=1)
    yield through
    await through.close()


async def stored(url: str, database: str) -> int:
    rows = await aquery(url, database, "SELECT count(value) FROM reading")
    return int(str(rows[0]["count"])) if rows else 0


def values_in_order(bodies: list[bytes]) -> list[int]:
    """The values of the points, in the order InfluxDB took them."""
    return [int(float(v)) for body in bodies for v in re.findall(rb"value=(\S+) ", body)]


async def test_batches_by_size_then_by_interval(
    gate: Gate, gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    durable: list[object] = []
    writer = StorageWriter(
        gated,
        Spool(tmp_path, fsync=False),
        batch_size=1000,
        flush_interval=0.1,
        on_durable=durable.extend,
    )
    async with running(writer):
        for i in range(2500):
            writer.submit(reading_lines(i, 1), 1, i)
        # The last 500 go when the interval has passed, not at close.
        await eventually(lambda: len(durable) == 2500, "every point to be durable")
        assert sorted(gate.writes) == [500, 1000, 1000]
    assert durable == list(range(2500))
    assert await stored(influx.url, database) == 2500
    assert sample("hub_influx_up") == 1


async def test_rejected_points_are_counted_and_do_not_block(
    gated: InfluxClient,
    tmp_path: Path,
    influx: LocalInflux,
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    durable: list[object] = []
    rejected = sample("hub_points_dropped_total", reason="rejected")
    writer = StorageWriter(
        gated, Spool(tmp_path, fsync=False), batch_size=1, on_durable=durable.extend
    )
    async with running(writer):
        writer.submit(reading_lines(0, 2), 2, "good")
        writer.submit(b"reading value=oops\n", 1, "bad")
        writer.submit(reading_lines(2, 2) + b"reading,sensor=x value=oops 1\n", 3, "partial")
        writer.submit(b"", 0, "nothing")  # a message whose readings were all refused
        writer.submit(reading_lines(4, 2), 2, "good again")
        await eventually(lambda: len(durable) == 5, "all five to be acknowledged")
    assert durable == ["good", "bad", "partial", "nothing", "good again"]
    assert sample("hub_points_dropped_total", reason="rejected") - rejected == 2
    assert await stored(influx.url, database) == 6
    assert "InfluxDB rejected 1 of 1 points (HTTP 400): unable to parse" in caplog.text


async def test_influxd_stopped_mid_stream(
    own_influx: LocalInflux, tmp_path: Path, uid: str
) -> None:
    """Stop InfluxDB while points stream in, keep submitting, start it again: every point is
    stored once, and the acknowledgements come in submit order."""
    database = f"test_{uid}"
    client = InfluxClient(own_influx.url, database, timeout=2)
    await client.create_database()
    spool = Spool(tmp_path / "spool", fsync=False)
    durable: list[object] = []
    spooled = sample("hub_points_spooled_total")
    writer = StorageWriter(
        client, spool, batch_size=200, flush_interval=0.05, on_durable=durable.extend, **FAST_RETRY
    )
    sent = 0

    async def produce(until: int) -> None:
        nonlocal sent
        while sent < until:
            await writer.wait_for_room()
            writer.submit(reading_lines(sent, 20), 20, sent // 20)
            sent += 20
            await asyncio.sleep(0.002)  # a stream of messages, not one burst

    try:
        async with running(writer):
            await produce(2000)
            await asyncio.to_thread(own_influx.stop)
            await produce(4000)
            await eventually(lambda: writer.spooling and spool.points > 0, "spooling")
            await asyncio.to_thread(own_influx.start)
            await produce(6000)
            await eventually(lambda: not writer.spooling, "the spool to be replayed", 30)
        assert await stored(own_influx.url, database) == 6000
        assert durable == list(range(300))
        assert sample("hub_points_spooled_total") > spooled
        assert spool.empty
        assert sample("hub_influx_up") == 1
    finally:
        await client.close()


async def test_errors_spool_and_replay_keeps_order(
    gate: Gate, gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    durable: list[object] = []
    spool = Spool(tmp_path, fsync=False)
    writer = StorageWriter(
        gated,
        spool,
        batch_size=100,
        flush_interval=0.02,
        on_durable=durable.extend,
        max_in_flight=1,
        **FAST_RETRY,
    )
    async with running(writer):
        for i in range(0, 1000, 10):
            writer.submit(reading_lines(i, 10), 10, i)
        await eventually(lambda: len(durable) == 100, "the first 1000 points")
        gate.mode = "error"
        for i in range(1000, 3000, 10):
            writer.submit(reading_lines(i, 10), 10, i)
            await asyncio.sleep(0)
        await eventually(lambda: len(durable) == 300, "the points to be spooled")
        assert writer.spooling
        assert sample("hub_influx_up") == 0
        gate.mode = "pass"
        for i in range(3000, 5000, 10):  # these arrive during the replay
            writer.submit(reading_lines(i, 10), 10, i)
            await asyncio.sleep(0)
        await eventually(lambda: not writer.spooling, "the spool to be replayed")
    assert durable == list(range(0, 5000, 10))
    assert values_in_order(gate.bodies) == list(range(5000))  # nothing overtook the spool
    assert await stored(influx.url, database) == 5000


async def test_a_full_spool_holds_points_back_and_loses_none(
    gate: Gate, gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    """InfluxDB down and the spool at its cap: points wait in memory unacknowledged, the
    producer is held back, nothing is dropped; with InfluxDB back all of them are stored, in
    order, and acknowledged in order."""
    durable: list[object] = []
    spool = Spool(tmp_path, max_bytes=16_384, segment_bytes=4096, fsync=False)
    writer = StorageWriter(
        gated,
        spool,
        batch_size=100,
        flush_interval=0.02,
        buffer_points=1000,
        on_durable=durable.extend,
        max_in_flight=1,  # so that the order InfluxDB took them in is the order of writes
        **FAST_RETRY,
    )
    gate.mode = "error"
    sent = 0

    async def produce(until: int) -> None:
        nonlocal sent
        while sent < until:
            await writer.wait_for_room()
            writer.submit(reading_lines(sent, 20), 20, sent // 20)
            sent += 20

    async with running(writer):
        producer = asyncio.create_task(produce(5000))
        await eventually(lambda: writer.spool_refused is not None, "the spool to refuse")
        await eventually(lambda: writer.full, "the buffer to fill")
        assert sample("hub_spool_full") == 1
        assert "is full" in (writer.spool_refused or "")
        held = sent
        assert not producer.done()
        assert held < 5000, "the producer was not held back"
        assert len(durable) * 20 <= spool.points + 1000, "more acknowledged than kept"
        gate.mode = "pass"
        await asyncio.wait_for(producer, 30)
        await eventually(lambda: len(durable) == 250, "every point acknowledged", 30)
        await eventually(lambda: not writer.spooling, "the spool to be replayed", 30)
    assert writer.spool_refused is None
    assert sample("hub_spool_full") == 0
    assert durable == list(range(250))
    assert values_in_order(gate.bodies) == list(range(5000))
    assert await stored(influx.url, database) == 5000


async def test_slow_influxdb_leads_to_spooling_not_to_memory(
    gate: Gate, gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    gate.mode, gate.delay = "delay", 1.0
    spool = Spool(tmp_path, fsync=False)
    spooled = sample("hub_points_spooled_total")
    writer = StorageWriter(
        gated,
        spool,
        batch_size=500,
        flush_interval=0.05,
        buffer_points=5000,
        slow_after=0.3,
        **FAST_RETRY,
    )
    most = 0
    async with running(writer):
        for i in range(0, 30_000, 100):
            await writer.wait_for_room()
            writer.submit(reading_lines(i, 100), 100)
            most = max(most, writer.buffered)
        # At two 500-point writes a second, this took ~30s without the spool.
        assert sample("hub_points_spooled_total") - spooled > 10_000
        gate.mode = "pass"
        await eventually(lambda: not writer.spooling, "the spool to be replayed", 30)
    assert most <= 5000 + 100  # the cap, and one message over it
    assert await stored(influx.url, database) == 30_000


async def test_back_pressure(gate: Gate, gated: InfluxClient, tmp_path: Path) -> None:
    gate.mode = "hold"
    writer = StorageWriter(
        gated,
        Spool(tmp_path, fsync=False),
        batch_size=100,
        buffer_points=1000,
        spill_points=10**9,
    )
    async with running(writer):
        for i in range(0, 1000, 100):
            await writer.wait_for_room()
            writer.submit(reading_lines(i, 100), 100)
        assert writer.full
        waiting = asyncio.create_task(writer.wait_for_room())
        await asyncio.sleep(0.2)  # a window in which it must not return
        assert not waiting.done()
        gate.release.set()
        await asyncio.wait_for(waiting, 10)
        assert not writer.full


async def test_close_drains_to_influxdb(
    gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    durable: list[object] = []
    writer = StorageWriter(
        gated, Spool(tmp_path, fsync=False), flush_interval=60, on_durable=durable.extend
    )
    async with running(writer):
        writer.submit(reading_lines(0, 3000), 3000, "all")
    assert durable == ["all"]
    assert await stored(influx.url, database) == 3000
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(reading_lines(0, 1), 1)


async def test_close_without_run_drains(
    gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    writer = StorageWriter(gated, Spool(tmp_path, fsync=False))
    writer.submit(reading_lines(0, 10), 10)
    await writer.close(10)
    assert await stored(influx.url, database) == 10


async def test_spool_left_at_close_is_replayed_first_by_the_next_writer(
    gate: Gate, gated: InfluxClient, tmp_path: Path, influx: LocalInflux, database: str
) -> None:
    gate.mode = "error"
    durable: list[object] = []
    first = StorageWriter(
        gated, Spool(tmp_path), batch_size=100, on_durable=durable.extend, **FAST_RETRY
    )
    async with running(first, close_timeout=5):
        for i in range(0, 1000, 100):
            first.submit(reading_lines(i, 100), 100, i)
    assert durable == list(range(0, 1000, 100))  # acknowledged: they are on disk
    assert await stored(influx.url, database) == 0

    gate.mode = "pass"
    spool = await Spool.open(tmp_path)
    assert spool.points == 1000
    second = StorageWriter(gated, spool, batch_size=100, max_in_flight=1, **FAST_RETRY)
    second.submit(reading_lines(1000, 500), 500)  # before run(): still after the spool
    async with running(second):
        await eventually(lambda: spool.empty and not second.spooling, "the replay")
    assert values_in_order(gate.bodies) == list(range(1500))
    assert await stored(influx.url, database) == 1500


async def test_close_spools_a_write_that_does_not_finish_in_time(
    gate: Gate, gated: InfluxClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate.mode = "hold"
    durable: list[object] = []
    spool = Spool(tmp_path, fsync=False)
    writer = StorageWriter(gated, spool, batch_size=100, on_durable=durable.extend)
    async with running(writer, close_timeout=0.5):
        for i in range(0, 500, 100):
            writer.submit(reading_lines(i, 100), 100, i)
    assert durable == [0, 100, 200, 300, 400]
    assert spool.points == 500
    assert "did not take the last 500 points" in caplog.text


async def test_a_cancelled_writer_spools_what_it_holds(
    gate: Gate, gated: InfluxClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hub.storage")
    gate.mode = "hold"
    writer = StorageWriter(gated, Spool(tmp_path, fsync=False), batch_size=100)
    task = asyncio.create_task(writer.run())
    writer.submit(reading_lines(0, 250), 250)
    await eventually(lambda: gate.arrived == 2, "two writes to be held")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Spool(tmp_path, fsync=False).points == 250
    assert "250 points spooled for the next start" in caplog.text
