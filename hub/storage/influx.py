"""A small asynchronous client for InfluxDB's 1.x HTTP API (/ping, /write, /query).

InfluxDB 2.x and 3.x serve the same API, so only that is used."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

# Bodies above this are compressed in a thread so that the event loop keeps serving ingest.
_COMPRESS_INLINE_MAX = 64 * 1024
_DROPPED = re.compile(r"dropped=(\d+)")


class InfluxError(Exception):
    """Base of the errors of this client."""


class InfluxUnavailableError(InfluxError):
    """InfluxDB did not take the request but may later: refused, timed out, 5xx, 429, 404."""


class InfluxRejectedError(InfluxError):
    """InfluxDB refused the data or the query itself (HTTP 400 and similar): do not retry."""

    def __init__(self, message: str, *, status: int, dropped: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        # Points InfluxDB says it discarded, when it says so; the rest of the body was stored.
        self.dropped = dropped

    @property
    def partial(self) -> bool:
        """Whether the good points of the request were stored (a "partial write")."""
        return "partial write" in str(self)


@dataclass(frozen=True)
class Series:
    """One series of a query result."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        """The series' rows as dicts, with its tags in each."""
        return [{**self.tags, **dict(zip(self.columns, v, strict=True))} for v in self.values]


def rejected_points(error: InfluxRejectedError, count: int) -> int:
    """How many of the `count` points of a rejected write InfluxDB did not store."""
    if not error.partial:
        return count
    text = str(error)
    lost = text.count("unable to parse '")
    lost += sum(int(n) for n in _DROPPED.findall(text))
    return min(count, lost) if lost else count


def _error_text(body: bytes) -> str:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:2000]
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, str):
        return error
    return body.decode(errors="replace").strip()[:2000]


def _default_gzip(url: str) -> int:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return 0
    try:
        return 0 if ipaddress.ip_address(host).is_loopback else 1
    except ValueError:
        return 1


class InfluxClient:
    """InfluxDB 1.x HTTP API client on one aiohttp session, created on first use."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        gzip_level: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout = timeout
        # Measured on loopback (bench/storage.py): gzip level 1 costs a fifth of the points/s
        # and saves nothing; across a network it saves ~85% of the bytes for ~1.4 ms of CPU
        # per 5,000 points.
        self.gzip_level = gzip_level if gzip_level is not None else _default_gzip(self.url)
        self._headers: dict[str, str] = {}
        if username is not None:
            # InfluxDB 2.x and 3.x take a token as the password of this 1.x-style login.
            secret = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {secret}"
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # Keep-alive connections; a few are enough since writes are batched.
                connector=aiohttp.TCPConnector(limit=8, ttl_dns_cache=300),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        try:
            async with self._http().request(
                method, self.url + path, params=params, data=data, headers=headers
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.timeout}s"
            raise InfluxUnavailableError(f"InfluxDB at {self.url}: {reason}") from exc

    def _raise_for(self, status: int, body: bytes) -> None:
        if status < 300:
            return
        text = _error_text(body)
        # 404 is "database not found": it may be created later, so keep the data.
        if status >= 500 or status in (401, 403, 404, 408, 429):
            raise InfluxUnavailableError(f"InfluxDB at {self.url} answered {status}: {text}")
        match = _DROPPED.search(text)
        raise InfluxRejectedError(
            text, status=status, dropped=int(match.group(1)) if match else None
        )

    async def ping(self) -> bool:
        """Whether InfluxDB answers /ping."""
        try:
            status, _ = await self._request("GET", "/ping", {})
        except InfluxUnavailableError:
            return False
        return status == 204

    async def _compress(self, body: bytes) -> bytes:
        if len(body) > _COMPRESS_INLINE_MAX:
            return await asyncio.to_thread(zlib.compress, body, self.gzip_level, 31)
        return zlib.compress(body, self.gzip_level, 31)

    async def write(self, body: bytes, *, precision: str = "ns") -> None:
        """POST line protocol to /write, gzip-compressed unless `gzip_level` is 0."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_level:
            body = await self._compress(body)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database}
        if precision not in ("ns", "n"):  # nanoseconds are every version's default
            params["precision"] = precision
        status, answer = await self._request("POST", "/write", params, body, headers)
        self._raise_for(status, answer)

    async def query_series(self, q: str, *, epoch: str = "ns") -> list[Series]:
        """Run InfluxQL and return the series of every statement, in order."""
        # The query goes in the body, where its length is not limited as a URL's is.
        form = urllib.parse.urlencode({"q": q}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        params = {"db": self.database, "epoch": epoch}
        status, answer = await self._request("POST", "/query", params, form, headers)
        self._raise_for(status, answer)
        try:
            decoded = orjson.loads(answer)
        except orjson.JSONDecodeError as exc:
            raise InfluxUnavailableError(
                f"InfluxDB at {self.url} answered something else than JSON: {answer[:200]!r}"
            ) from exc
        series: list[Series] = []
        for result in decoded.get("results", []):
            if "error" in result:
                raise InfluxRejectedError(f"{result['error']} in {q!r}", status=status)
            series.extend(
                Series(
                    name=s.get("name", ""),
                    tags=s.get("tags") or {},
                    columns=s["columns"],
                    values=s.get("values") or [],
                )
                for s in result.get("series", [])
            )
        return series

    async def query(self, q: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL and return the rows of all its series as dicts (tags included)."""
        return [row for s in await self.query_series(q, epoch=epoch) for row in s.rows()]

    async def create_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists)."""
        await self.query_series(f"CREATE DATABASE {quote_ident(self.database)}")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
