"""InfluxDB line protocol: escaping, a general point encoder and a fast path for readings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

FieldValue = float | int | bool | str

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})

# InfluxDB 1.x takes a backslash before one of these (or at the end of a name) as an escape and
# gives back something else than was written; 3.x reads `\\` differently again. Such names
# cannot be stored faithfully, so they are refused rather than silently changed.
_AFTER_BACKSLASH = frozenset(',= "\\')
_INT64 = (-(2**63), 2**63 - 1)


def _check_name(s: str, what: str) -> None:
    if not s:
        raise ValueError(f"empty {what}")
    if "\n" in s or "\r" in s:
        raise ValueError(f"{what} {s!r} holds a line break, which line protocol cannot carry")
    if "\\" in s:
        for i, char in enumerate(s):
            if char == "\\" and (i + 1 == len(s) or s[i + 1] in _AFTER_BACKSLASH):
                raise ValueError(
                    f"{what} {s!r}: a backslash before {s[i + 1 : i + 2] or 'the end'!r} "
                    "cannot be stored faithfully by InfluxDB"
                )


def _check_start(s: str, what: str, forbidden: str) -> None:
    # InfluxDB skips tabs and NULs before a line and before the fields, and takes a line
    # that starts with '#' for a comment.
    if s[0] in forbidden:
        raise ValueError(f"{what} {s!r} cannot start with {s[0]!r}")


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas, spaces); refuse names InfluxDB would alter."""
    _check_name(name, "measurement")
    _check_start(name, "measurement", "#\t\0")
    return name.translate(_MEASUREMENT)


def escape_key(key: str, what: str = "tag key") -> str:
    """Escape a tag key or tag value (commas, equals signs, spaces)."""
    _check_name(key, what)
    return key.translate(_KEY)


def escape_field_key(key: str) -> str:
    """Escape a field key (commas, equals signs, spaces)."""
    _check_name(key, "field key")
    _check_start(key, "field key", "\t\0")
    return key.translate(_KEY)


def escape_string(value: str) -> str:
    """Escape a string field value (backslashes, double quotes), without the quotes."""
    return value.translate(_STRING)


def format_value(value: FieldValue) -> str:
    """A field value in line protocol: floats as repr, ints with `i`, bools, quoted strings."""
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"InfluxDB cannot store {value!r}")
        return repr(value)
    if isinstance(value, str):
        return f'"{value.translate(_STRING)}"'
    raise TypeError(f"unsupported field value {value!r} of type {type(value).__name__}")


def point_line(
    measurement: str,
    tags: Mapping[str, str] | Iterable[tuple[str, str]],
    fields: Mapping[str, FieldValue],
    ts_ns: int | None = None,
) -> bytes:
    """One newline-terminated line for a point; tags with empty values are left out."""
    if not fields:
        raise ValueError(f"a point of {measurement!r} needs at least one field")
    items = tags.items() if isinstance(tags, Mapping) else tags
    # Sorted tags are what InfluxDB stores; sending them sorted spares it a sort per point.
    parts = [escape_measurement(measurement)]
    parts.extend(
        f",{escape_key(k)}={escape_key(v, 'tag value')}" for k, v in sorted(items) if v != ""
    )
    parts.append(" ")
    parts.append(",".join(f"{escape_field_key(k)}={format_value(v)}" for k, v in fields.items()))
    if ts_ns is not None:
        parts.append(f" {int(ts_ns)}")
    parts.append("\n")
    return "".join(parts).encode()


_isfinite = math.isfinite  # a global name, not an attribute lookup per reading
_ReadingKey = tuple[str, str, str, str]
_prefixes: dict[_ReadingKey, bytes] = {}
# Sensors come from the inventory, so the cache stays small; the cap only guards against
# a flood of made-up ids.
_PREFIX_CACHE_MAX = 100_000


def reading_prefix(sensor: str, kind: str, region: str, site: str) -> bytes:
    """The escaped `reading,<tags> value=` start of a reading's line, cached per tag set."""
    key = (sensor, kind, region, site)
    prefix = _prefixes.get(key)
    if prefix is None:
        tags = (("kind", kind), ("region", region), ("sensor", sensor), ("site", site))
        text = "reading" + "".join(
            f",{name}={escape_key(value, name)}" for name, value in tags if value
        )
        prefix = (text + " value=").encode()
        if len(_prefixes) >= _PREFIX_CACHE_MAX:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def reading_line(  # noqa: PLR0917 - called per reading; positional calls are the cheapest
    sensor: str, kind: str, region: str, site: str, value: float, ts_ns: int
) -> bytes:
    """One `reading` line (tags sensor, kind, region, site; float field `value`)."""
    prefix = _prefixes.get((sensor, kind, region, site))
    if prefix is None:
        prefix = reading_prefix(sensor, kind, region, site)
    value = float(value)
    if not _isfinite(value):
        raise ValueError(f"InfluxDB cannot store {value!r}")
    return b"%b%a %d\n" % (prefix, value, ts_ns)
