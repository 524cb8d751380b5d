"""Helpers for tests: InfluxDB queries, and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def influx_query(url: str, database: str, query: str) -> list[dict[str, object]]:
    """Run an InfluxQL query and return the rows of the first series as dicts."""
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as resp:
        body = json.load(resp)
    result = body["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxDB: {result['error']} in {query!r}")
    rows: list[dict[str, object]] = []
    for series in result.get("series", []):
        tags = series.get("tags", {})
        for values in series["values"]:
            rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
    return rows


def wait_for(check: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
        last = check()
    return last


async def eventually(
    check: Callable[[], T | Awaitable[T]], what: str, timeout: float = 15.0, interval: float = 0.02
) -> T:
    """Async twin of `wait_for`, for tests whose hub runs on the same event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        last = await result if isinstance(result, Awaitable) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def aquery(url: str, database: str, query: str) -> list[dict[str, object]]:
    """`influx_query` off the event loop."""
    return await asyncio.to_thread(influx_query, url, database, query)
