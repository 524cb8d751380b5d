"""The bodies and path parameters of the API's write endpoints: one strict reader, and checks
of each field whose refusals name the field and its range.

Nothing a client sends may reach a journal, the store or a device unless it can be written
back: the store and the MQTT payloads are encoded with orjson, which refuses lone surrogates
and integers beyond 64 bits, and line protocol cannot carry every character. So a body is
read with orjson too, which refuses what it could not write (lone surrogates, NaN and
Infinity, numbers beyond a double's range, nesting deeper than 1024 levels) and reads
integers beyond 64 bits as floats; each field is then held to a type and a range.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from hub.durations import DurationError, format_duration, parse_duration

MAX_TEXT = 500  # characters of free text (an operator's reason)
MAX_NOTE = 2000  # characters of an operator's note on an incident
MAX_WORD = 64  # characters of a word (a command)

_WORD = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_WORD - 1}}}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 but newline and tab
_STRICT = (
    "JSON has no NaN or Infinity, no number beyond a double's range, no lone surrogate, "
    "and at most 1024 levels of nesting"
)


class BodyError(Exception):
    """What is wrong with a request's body or path, in a sentence; `status` to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted for a message, cut to `limit` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


async def read_object(request: web.Request, takes: Collection[str], what: str) -> dict[str, Any]:
    """The body as a JSON object whose keys are among `takes`; an empty body is {}.

    `what` names who takes the keys in the message about others ("a command takes ...").
    Raises BodyError."""
    if not request.can_read_body:
        return {}
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyError(f"the body is larger than {request.client_max_size} bytes", 413) from None
    try:
        text = raw.decode()  # strict: refuses stray bytes and UTF-8-encoded surrogates too
    except UnicodeDecodeError as exc:
        raise BodyError(
            f"the body is not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}"
        ) from None
    if not text.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"the body is not JSON: {exc} ({_STRICT})") from None
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object (or empty)")
    unknown = sorted(set(data) - set(takes))
    if unknown:
        names = ", ".join(shown(k) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        allowed = sorted(takes) if takes else "none"
        raise BodyError(f"unknown keys [{names}]; {what} takes {allowed}")
    return data


def text_field(data: Mapping[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    """Free text of at most `limit` characters, without control characters but newline and
    tab; "" when absent."""
    value = data.get(name, "")
    if not isinstance(value, str):
        raise BodyError(f"{name!r} must be text of at most {limit} characters")
    if len(value) > limit:
        raise BodyError(f"{name!r} is {len(value)} characters long; at most {limit} characters")
    bad = _CONTROL.search(value)
    if bad:
        raise BodyError(
            f"{name!r} holds the control character {bad.group()!r} at {bad.start()}; "
            "only newlines and tabs may be in it"
        )
    return value


def word_field(data: Mapping[str, Any], name: str, missing: str) -> str:
    """A word of letters, digits, '_', '.' and '-' (at most MAX_WORD characters), spaces
    around it cut; `missing` is the message when it is absent or blank."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BodyError(missing)
    if not isinstance(value, str) or not _WORD.fullmatch(value.strip()):
        got = shown(value) if isinstance(value, str) else type(value).__name__
        raise BodyError(
            f"{name!r} must be one word of 1 to {MAX_WORD} letters, digits, '_', '.' or '-' "
            f"(such as close), not {got}"
        )
    return value.strip()


def flag_field(data: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean, strictly (not 0, 1 or "true")."""
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise BodyError(f"{name!r} must be true or false")
    return value


def duration_field(data: Mapping[str, Any], name: str, maximum: float) -> float | None:
    """A duration (`5m`, or seconds) longer than 0 and at most `maximum` seconds; None when
    absent."""
    if name not in data:
        return None
    value = data[name]
    longest = format_duration(maximum)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BodyError(f"{name!r} must be a duration such as 5m, of at most {longest}")
    try:
        seconds = parse_duration(value, maximum=maximum)
    except DurationError as exc:
        raise BodyError(f"{name!r}: {exc}") from None
    if seconds <= 0:
        raise BodyError(f"{name!r} must be longer than 0s and at most {longest}")
    return seconds


def path_id(request: web.Request, name: str, what: str) -> str:
    """The path parameter `name`; 404 for one that no id can be (with control characters or
    a lone surrogate), so that it goes no further than here."""
    value = request.match_info[name]
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BodyError(f"no {what} {shown(value)}", 404) from None
    if _CONTROL.search(value):
        raise BodyError(f"no {what} {shown(value)}", 404)
    return value


def moment_field(text: str, name: str, now_ns: int, maximum: float) -> int:
    """A query's time: a duration back from now (`1h`, at most `maximum` seconds) or an
    RFC 3339 time with its zone; ns since the epoch."""
    try:
        seconds = parse_duration(text, maximum=maximum)
    except DurationError as exc:
        if "at most" in str(exc):
            raise BodyError(
                f"{name!r}: at most {format_duration(maximum)} back, not {text[:40]!r}"
            ) from None
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BodyError(
                f"{name!r}: cannot read {shown(text)}; write a duration such as 1h or an RFC "
                "3339 time such as 2026-07-14T09:00:00+09:00"
            ) from None
        if stamp.tzinfo is None:
            raise BodyError(f"{name!r}: {shown(text)} has no time zone; add Z or +09:00") from None
        ns = int(stamp.timestamp() * 1e9)
        if not 0 <= ns < 2**63:  # what InfluxDB and the store hold: 1970 to 2262
            raise BodyError(f"{name!r}: {shown(text)} is outside 1970 to 2262") from None
        return ns
    return now_ns - int(seconds * 1e9)
