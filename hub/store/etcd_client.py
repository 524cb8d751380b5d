"""A small client for etcd 3.4's JSON API (its gRPC gateway), over aiohttp.

Only what the store and the leadership need: ranges, transactions, leases and watches.
Python's etcd clients were looked at and not taken: `etcd3` and `etcd3-py` have had no
release since 2020 and need gRPC stubs that current protobuf refuses, and `aetcd` is a
thin fork of the first. The gateway is part of every etcd server, keys and values travel
base64-encoded, and numbers (revisions, lease ids) as strings.

Requests go to one endpoint at a time; on a connection error or timeout the next one is
tried, so that the loss of one member costs one timeout, not the service. A request that
timed out may still have been applied: callers make theirs safe to repeat.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import orjson

from hub.store import StoreError

log = logging.getLogger("hub.store")

# gRPC status codes that mean "try again" (unavailable, deadline exceeded, aborted); the
# others (too large, too many operations, quota, permission) stay the same on a retry.
_TRANSIENT_CODES = {4, 10, 14}
_INVALID_TOKEN = "invalid auth token"  # noqa: S105 (an error message)


class EtcdError(StoreError):
    """etcd refused a request, for a reason that a retry does not change."""


class EtcdUnavailableError(EtcdError):
    """No member answered in time, or the cluster has no leader: worth trying again."""


class WatchCompactedError(EtcdError):
    """A watch asked for revisions that etcd has compacted away; read everything again."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


def b64(data: str | bytes) -> str:
    """A key or value as the gateway takes it."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    """A key or value as the gateway gives it."""
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The first key after every key that starts with `prefix` (a range's end)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode() if raw[-1] < 0x7F else prefix + "\U0010ffff"


class EtcdClient:
    """Requests to an etcd cluster through any of its members."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 2.0,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._username = username
        self._password = password
        self._ssl = ssl_context
        self._token: str | None = None
        self._current = 0  # the endpoint that answered last
        self._session: aiohttp.ClientSession | None = None

    @property
    def location(self) -> str:
        """The endpoints, for messages (no credentials)."""
        return ",".join(self.endpoints)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- requests ---------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to `path` (e.g. /v3/kv/txn) on the first member that answers, each
        given `timeout` seconds."""
        limit = self.timeout
        errors: list[str] = []
        for attempt in range(len(self.endpoints)):
            url = self.endpoints[(self._current + attempt) % len(self.endpoints)]
            try:
                async with asyncio.timeout(limit):
                    return await self._post(url, path, body)
            except (aiohttp.ClientError, TimeoutError, EtcdUnavailableError) as exc:
                errors.append(f"{url}: {_describe(exc)}")
                self._current = (self._current + attempt + 1) % len(self.endpoints)
        raise EtcdUnavailableError(f"etcd {path}: no member answered ({'; '.join(errors)})")

    async def _post(self, url: str, path: str, body: dict[str, Any], retry: bool = True) -> Any:
        if self._username is not None and self._token is None:
            await self._authenticate(url)
        async with self._http().post(url + path, json=body, headers=self._headers()) as resp:
            reply = orjson.loads(await resp.read() or b"{}")
        if resp.status == 200:
            return reply
        if retry and self._username is not None and _INVALID_TOKEN in str(reply.get("error")):
            self._token = None  # simple tokens expire: authenticate again, once
            return await self._post(url, path, body, retry=False)
        raise _error(path, resp.status, reply)

    async def _authenticate(self, url: str) -> None:
        body = {"name": self._username, "password": self._password}
        async with self._http().post(url + "/v3/auth/authenticate", json=body) as resp:
            reply = orjson.loads(await resp.read() or b"{}")
        if resp.status != 200:
            raise _error("/v3/auth/authenticate", resp.status, reply)
        self._token = str(reply["token"])

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    def call_blocking(self, path: str, body: dict[str, Any]) -> Any:
        """`call` without an event loop (at start, and in tools)."""
        errors: list[str] = []
        for attempt in range(len(self.endpoints)):
            url = self.endpoints[(self._current + attempt) % len(self.endpoints)]
            try:
                return self._post_blocking(url, path, body)
            except (OSError, EtcdUnavailableError) as exc:
                errors.append(f"{url}: {_describe(exc)}")
        raise EtcdUnavailableError(f"etcd {path}: no member answered ({'; '.join(errors)})")

    def _post_blocking(self, url: str, path: str, body: dict[str, Any]) -> Any:
        if self._username is not None and self._token is None:
            auth = {"name": self._username, "password": self._password}
            self._token = str(self._urlopen(url, "/v3/auth/authenticate", auth)["token"])
        return self._urlopen(url, path, body)

    def _urlopen(self, url: str, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (the endpoints are http(s) URLs)
            url + path, data=orjson.dumps(body), headers=self._headers(), method="POST"
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout, context=self._ssl
            ) as resp:
                return orjson.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _error(path, exc.code, orjson.loads(exc.read() or b"{}")) from None

    # -- watches ----------------------------------------------------------------------------

    async def watch(
        self, key: str, range_end: str | None, start_revision: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch responses (each with its `events`) for keys from `key` to `range_end`,
        from `start_revision` on, until the caller stops or the connection breaks
        (EtcdUnavailableError; WatchCompactedError when that revision is gone)."""
        create: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision)}
        if range_end is not None:
            create["range_end"] = b64(range_end)
        url = self.endpoints[self._current]
        if self._username is not None and self._token is None:
            await self._authenticate(url)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        try:
            async with self._http().post(
                url + "/v3/watch",
                json={"create_request": create},
                headers=self._headers(),
                timeout=timeout,
            ) as resp:
                if resp.status != 200:
                    raise _error("/v3/watch", resp.status, orjson.loads(await resp.read() or b"{}"))
                buffer = b""
                # Lines can be far longer than aiohttp's readline allows (a 1.5 MiB value).
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _watch_result(line)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._current = (self._current + 1) % len(self.endpoints)
            raise EtcdUnavailableError(f"etcd watch on {url}: {_describe(exc)}") from exc
        self._current = (self._current + 1) % len(self.endpoints)
        raise EtcdUnavailableError(f"etcd watch on {url}: the member closed the stream")


def _watch_result(line: bytes) -> dict[str, Any]:
    message = orjson.loads(line)
    if "error" in message:
        error = message["error"]
        raise EtcdUnavailableError(f"etcd watch: {error.get('message', error)}")
    result: dict[str, Any] = message["result"]
    if result.get("canceled"):
        compacted = int(result.get("compact_revision", 0))
        reason = result.get("cancel_reason") or "canceled by the server"
        if compacted:
            raise WatchCompactedError(f"etcd watch: {reason}", compacted)
        raise EtcdUnavailableError(f"etcd watch: {reason}")
    return result


# What an operator changes when etcd says these, added to its words.
_HINTS = (
    (("user name is empty", "authentication failed"), "set store.username and HUB_STORE_PASSWORD"),
    (("permission denied",), "the etcd user needs read and write on the store's prefix"),
    (("request is too large",), "store.max_request_bytes is above the cluster's limit"),
    (("too many operations",), "store.max_txn_ops is above the cluster's --max-txn-ops"),
    (("database space exceeded",), "etcd is at its quota: compact, defragment, disarm the alarm"),
)


def _error(path: str, status: int, reply: dict[str, Any]) -> EtcdError:
    message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
    for words, hint in _HINTS:
        if any(w in message for w in words):
            message += f" ({hint})"
    code = reply.get("code")
    if (status >= 500 and code is None) or code in _TRANSIENT_CODES:
        return EtcdUnavailableError(f"etcd {path}: {message}")
    return EtcdError(f"etcd {path}: {message}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
