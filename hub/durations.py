"""Durations as engineers write them: `30s`, `5m`, `1h30m`, `250ms`, `2d`, or plain seconds."""

from __future__ import annotations

import math
import re

# The longest duration anything in the hub takes: ten years. Times are held as nanoseconds in
# 64-bit integers (up to 292 years), so every duration added to a time stays in range.
MAX_DURATION_S = 3650 * 86400.0

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class DurationError(ValueError):
    """A duration that cannot be read."""


def parse_duration(text: str | float, maximum: float = MAX_DURATION_S) -> float:
    """Return the duration in seconds, refusing one longer than `maximum` seconds."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration such as 30s or 5m, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise DurationError(f"a duration cannot be negative: {text!r}")
        try:
            seconds = float(text)
        except OverflowError:  # an integer beyond any float
            digits = int(int(text).bit_length() * math.log10(2)) + 1
            raise DurationError(
                f"a duration here is at most {format_duration(maximum)}, "
                f"got a number of about {digits} digits"
            ) from None
        return _within(seconds, text, maximum)
    if len(text) > 64:
        raise DurationError(f"cannot read {text[:64]!r}... as a duration: it is too long")
    compact = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact) or not compact:
        raise DurationError(
            f"cannot read {text!r} as a duration; write it like 30s, 5m, 1h30m, 250ms or 2d"
        )
    return _within(total, text, maximum)


def _within(seconds: float, text: str | float, maximum: float) -> float:
    if not math.isfinite(seconds) or seconds > maximum:
        raise DurationError(f"a duration here is at most {format_duration(maximum)}, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds`, for messages."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
