"""Storage benchmark: reading points/s stored in InfluxDB through StorageWriter, beside a bare
baseline in the same run that posts pre-built bodies of the same lines with plain aiohttp.

It starts its own influxd on a free port (data in a temporary folder), creates the series
once so that every run writes to existing series, then times each way of writing N points
(`--points`, default 1M) in batches of `--batch` (default 5,000), and last how fast the
writer spools N points with InfluxDB unreachable (fsync on) and replays them once it answers.
Not a test: it prints figures.

    .venv/bin/python bench/storage.py [--points 1000000] [--batch 5000] [--sensors 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from hub.services import LocalInflux, free_port
from hub.storage import InfluxClient, Spool, StorageWriter, reading_line

T0 = 1_780_000_000_000_000_000
Lines = list[bytes]


def make_lines(points: int, sensors: int, run: int) -> Lines:
    """`points` readings over `sensors` sensors, at times of their own for each run."""
    base = T0 + run * points * 1_000_000
    return [
        reading_line(
            f"wl-{i % sensors:05d}",
            "water_level",
            f"region-{i % sensors % 25}",
            f"site-{i % sensors % 400}",
            (i % 1000) * 0.01,
            base + i * 1_000_000,
        )
        for i in range(points)
    ]


async def bare(url: str, db: str, lines: Lines, batch: int, concurrency: int, level: int) -> None:
    """Post pre-joined bodies with plain aiohttp, `concurrency` requests at a time."""
    bodies = [b"".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
    headers = {"Content-Encoding": "gzip"} if level else {}
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while bodies:
                body = bodies.pop(0)
                if level:
                    body = await asyncio.to_thread(zlib.compress, body, level, 31)
                async with session.post(
                    f"{url}/write", params={"db": db}, data=body, headers=headers
                ) as resp:
                    if resp.status != 204:
                        raise RuntimeError(await resp.text())

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def through_writer(
    url: str, db: str, lines: Lines, batch: int, per_submit: int, in_flight: int, level: int
) -> None:
    """Submit `per_submit` lines at a time, as the ingest does, until all are durable."""
    client = InfluxClient(url, db, gzip_level=level)
    done = asyncio.Event()
    expected = (len(lines) + per_submit - 1) // per_submit
    acked = 0

    def on_durable(tokens: list[object]) -> None:
        nonlocal acked
        acked += len(tokens)
        if acked == expected:
            done.set()

    with tempfile.TemporaryDirectory() as spool_dir:
        writer = StorageWriter(
            client,
            Spool(spool_dir),
            batch_size=batch,
            max_in_flight=in_flight,
            on_durable=on_durable,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(writer.run())
            if per_submit == 1:
                for i, line in enumerate(lines):
                    if writer.full:
                        await writer.wait_for_room()
                    writer.submit(line, 1, i)
            else:
                for n, i in enumerate(range(0, len(lines), per_submit)):
                    chunk = lines[i : i + per_submit]
                    if writer.full:
                        await writer.wait_for_room()
                    writer.submit(b"".join(chunk), len(chunk), n)
            await done.wait()
            await writer.close()
        if writer.spooling:
            raise RuntimeError("the writer spooled: the figure would not be a direct write")
    await client.close()


async def spool_then_replay(url: str, db: str, lines: Lines, batch: int) -> tuple[float, float]:
    """Seconds to spool `lines` with InfluxDB unreachable (fsync on), then to replay them."""
    nowhere = InfluxClient(f"http://127.0.0.1:{free_port()}", db)
    client = InfluxClient(url, db)
    done = asyncio.Event()
    chunks = [lines[i : i + 100] for i in range(0, len(lines), 100)]
    with tempfile.TemporaryDirectory() as spool_dir:
        down = StorageWriter(
            nowhere,
            Spool(spool_dir),
            batch_size=batch,
            retry_min=60,
            retry_max=60,
            on_durable=lambda tokens: done.set() if tokens[-1] == len(chunks) - 1 else None,
        )
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(down.run())
            for n, chunk in enumerate(chunks):
                if down.full:
                    await down.wait_for_room()
                down.submit(b"".join(chunk), len(chunk), n)
            await done.wait()
            spooled = time.perf_counter() - started
            await down.close()
        spool = Spool(spool_dir)
        up = StorageWriter(client, spool, batch_size=batch)
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(up.run())
            while up.spooling:  # noqa: ASYNC110 - no event marks the end of a replay
                await asyncio.sleep(0.01)
            replayed = time.perf_counter() - started
            await up.close()
    await nowhere.close()
    await client.close()
    return spooled, replayed


async def count(url: str, db: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/query", params={"db": db, "q": "SELECT count(value) FROM reading"}
        ) as resp,
    ):
        body = await resp.json()
    return int(body["results"][0]["series"][0]["values"][0][1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--sensors", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # spooling is what the last case is about

    started = time.perf_counter()
    encode = make_lines(args.points, args.sensors, 0)
    encode_s = time.perf_counter() - started
    print(f"reading_line: {args.points / encode_s:,.0f} lines/s (with the tag prefix cached)")

    with tempfile.TemporaryDirectory() as data:
        influx = LocalInflux(data_dir=Path(data), port=free_port())
        influx.start()
        try:
            await run_all(influx.url, args, encode)
        finally:
            influx.stop()


async def run_all(url: str, args: argparse.Namespace, first: Lines) -> None:
    db = "bench"
    client = InfluxClient(url, db)
    await client.create_database()
    await client.write(b"".join(first[: args.sensors]))  # create the series up front
    await client.close()

    Case = Callable[[Lines], Awaitable[None]]
    cases: list[tuple[str, Case]] = [
        ("bare aiohttp, 1 in flight, plain", lambda ls: bare(url, db, ls, args.batch, 1, 0)),
        ("bare aiohttp, 2 in flight, plain", lambda ls: bare(url, db, ls, args.batch, 2, 0)),
        ("bare aiohttp, 2 in flight, gzip 1", lambda ls: bare(url, db, ls, args.batch, 2, 1)),
        (
            "writer, 100-line submits, 1 in flight, plain",
            lambda ls: through_writer(url, db, ls, args.batch, 100, 1, 0),
        ),
        (
            "writer, 100-line submits, 2 in flight, plain",
            lambda ls: through_writer(url, db, ls, args.batch, 100, 2, 0),
        ),
        (
            "writer, 100-line submits, 2 in flight, gzip 1",
            lambda ls: through_writer(url, db, ls, args.batch, 100, 2, 1),
        ),
        (
            "writer, 1-line submits, 2 in flight, plain",
            lambda ls: through_writer(url, db, ls, args.batch, 1, 2, 0),
        ),
    ]
    print(f"{args.points:,} points, batches of {args.batch:,}, {args.sensors:,} series")
    before = await count(url, db)
    for run, (name, case) in enumerate(cases, start=1):
        lines = make_lines(args.points, args.sensors, run)
        started = time.perf_counter()
        await case(lines)
        elapsed = time.perf_counter() - started
        after = await count(url, db)
        if after - before != args.points:
            raise RuntimeError(f"{name}: {after - before} points stored, not {args.points}")
        before = after
        print(f"  {name:48} {args.points / elapsed:>10,.0f} points/s")
    spooled, replayed = await spool_then_replay(
        url, db, make_lines(args.points, args.sensors, len(cases) + 1), args.batch
    )
    if await count(url, db) - before != args.points:
        raise RuntimeError("the replay did not store every point")
    for name, seconds in [
        ("writer, InfluxDB unreachable: to the spool", spooled),
        ("writer, replay of that spool", replayed),
    ]:
        print(f"  {name:48} {args.points / seconds:>10,.0f} points/s")


if __name__ == "__main__":
    asyncio.run(main())
