"""The InfluxDB client against a real influxd, and against a gate that fails on purpose."""

from __future__ import annotations

import asyncio

import pytest

from hub.services import LocalInflux, free_port
from hub.storage import InfluxClient, InfluxRejectedError, InfluxUnavailableError
from hub.storage.influx import quote_ident, rejected_points

from .conftest import T0, Gate, reading_lines

pytestmark = pytest.mark.integration


async def test_ping_write_and_query(client: InfluxClient) -> None:
    assert await client.ping()
    await client.write(reading_lines(0, 3))
    rows = await client.query("SELECT value FROM reading GROUP BY sensor")
    assert [(r["sensor"], r["time"], r["value"]) for r in rows] == [
        ("s-1", T0 + i * 1_000_000, float(i)) for i in range(3)
    ]
    (series,) = await client.query_series("SELECT count(value) FROM reading")
    assert (series.name, series.columns, series.values) == ("reading", ["time", "count"], [[0, 3]])


@pytest.mark.parametrize("level", [0, 1, 6])
async def test_compression_levels(influx: LocalInflux, database: str, level: int) -> None:
    client = InfluxClient(influx.url, database, gzip_level=level)
    try:
        await client.create_database()
        await client.write(reading_lines(0, 2000))
        assert await client.query("SELECT count(value) FROM reading") == [
            {"time": 0, "count": 2000}
        ]
    finally:
        await client.close()


async def test_other_precisions(client: InfluxClient) -> None:
    await client.write(b"m v=1 1700000000\n", precision="s")
    assert await client.query("SELECT v FROM m") == [{"time": 1_700_000_000 * 10**9, "v": 1}]


async def test_bad_data_is_rejected_with_influxdbs_message(client: InfluxClient) -> None:
    with pytest.raises(InfluxRejectedError, match="unable to parse") as caught:
        await client.write(b"not line protocol\n")
    assert caught.value.status == 400
    assert not caught.value.partial
    assert rejected_points(caught.value, 1) == 1


async def test_partial_write_stores_the_good_points(client: InfluxClient) -> None:
    body = reading_lines(0, 2) + b"reading,sensor=x value=oops 1\n" + reading_lines(2, 2)
    with pytest.raises(InfluxRejectedError) as caught:
        await client.write(body)
    assert caught.value.partial
    assert rejected_points(caught.value, 5) == 1
    assert await client.query("SELECT count(value) FROM reading") == [{"time": 0, "count": 4}]
    # A field of another type is refused point by point, and InfluxDB says how many.
    with pytest.raises(InfluxRejectedError) as conflict:
        await client.write(
            b"reading,sensor=y value=1i %d\nreading,sensor=y value=2i %d\n" % (T0, T0)
        )
    assert conflict.value.dropped == 2
    assert rejected_points(conflict.value, 2) == 2


async def test_query_errors(client: InfluxClient) -> None:
    with pytest.raises(InfluxRejectedError, match="error parsing query"):
        await client.query("SELEC nothing")
    assert await client.query("SELECT * FROM nowhere") == []


async def test_a_long_query_goes_in_the_body(client: InfluxClient) -> None:
    await client.write(reading_lines(0, 3))
    sensors = " OR ".join(f"sensor = 's-{i}'" for i in range(2000))  # ~30 kB of InfluxQL
    rows = await client.query(f"SELECT count(value) FROM reading WHERE {sensors}")
    assert rows == [{"time": 0, "count": 3}]


async def test_missing_database_is_retried_later(influx: LocalInflux, uid: str) -> None:
    client = InfluxClient(influx.url, f"missing_{uid}")
    try:
        with pytest.raises(InfluxUnavailableError, match="404"):
            await client.write(reading_lines(0, 1))
    finally:
        await client.close()


async def test_refused_connection_is_unavailable() -> None:
    client = InfluxClient(f"http://127.0.0.1:{free_port()}", "db", timeout=2)
    try:
        assert not await client.ping()
        with pytest.raises(InfluxUnavailableError):
            await client.write(reading_lines(0, 1))
    finally:
        await client.close()


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_are_unavailable(gate: Gate, database: str, status: int) -> None:
    gate.mode, gate.status = "error", status
    client = InfluxClient(gate.url, database)
    try:
        with pytest.raises(InfluxUnavailableError, match=str(status)):
            await client.write(reading_lines(0, 1))
    finally:
        await client.close()


async def test_timeout_is_unavailable(gate: Gate, database: str) -> None:
    gate.mode = "hold"
    client = InfluxClient(gate.url, database, timeout=0.3)
    try:
        with pytest.raises(InfluxUnavailableError, match="no answer within"):
            await asyncio.wait_for(client.write(reading_lines(0, 1)), 10)
    finally:
        await client.close()


async def test_credentials_are_sent(gate: Gate, database: str) -> None:
    client = InfluxClient(gate.url, database, username="hub", password="s3cret")
    try:
        assert await client.ping()
    finally:
        await client.close()
    assert gate.authorization == ["Basic aHViOnMzY3JldA=="]


def test_compression_only_off_loopback() -> None:
    assert InfluxClient("http://127.0.0.1:8086", "db").gzip_level == 0
    assert InfluxClient("http://localhost:8086", "db").gzip_level == 0
    assert InfluxClient("http://[::1]:8086", "db").gzip_level == 0
    assert InfluxClient("http://influx.example:8086", "db").gzip_level == 1
    assert InfluxClient("https://10.0.0.5:8086", "db").gzip_level == 1
    assert InfluxClient("http://127.0.0.1:8086", "db", gzip_level=6).gzip_level == 6


def test_identifiers_are_quoted() -> None:
    assert quote_ident('we"ird\\db') == '"we\\"ird\\\\db"'
