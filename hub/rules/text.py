"""Titles and messages with placeholders such as `{site_name}`, checked when rules load."""

from __future__ import annotations

import string
from collections.abc import Mapping

from hub.config.problems import KeyPath, describe, did_you_mean
from hub.rules.schema import Ctx

TITLE_FIELDS = ("rule", "subject", "site", "site_name", "region", "region_name", "severity")
MESSAGE_FIELDS = (*TITLE_FIELDS, "title", "state")


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def template(ctx: Ctx, path: KeyPath, value: object, fields: tuple[str, ...]) -> str | None:
    """A text whose `{placeholders}` are all in `fields`."""
    if not isinstance(value, str) or not value.strip():
        ctx.error(path, f"expected text, got {describe(value)}")
        return None
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        ctx.error(path, f"cannot read the placeholders in {value!r}: {exc}; write {{{{ for {{")
        return None
    ok = True
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields or spec or conversion:
            hint = did_you_mean(name, fields) or f"; known: {', '.join(fields)}"
            ctx.error(path, f"unknown placeholder {{{name}}}{hint}")
            ok = False
    return value if ok else None


def render(text: str, values: Mapping[str, str | None]) -> str:
    """Fill in a checked template; absent values read as empty text."""
    return text.format_map(_Blank({k: v or "" for k, v in values.items()}))
