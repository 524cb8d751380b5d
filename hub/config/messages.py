"""Turn pydantic's validation errors into messages a person can act on."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from hub.config.problems import KeyPath, describe, did_you_mean, format_path

_QUOTED = re.compile(r"'([^']*)'")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `tuple[ApiToken, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def keys_at(model: type[BaseModel], path: KeyPath) -> list[str]:
    """The keys that the mapping at `path` accepts."""
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        current = None if field is None else _model_in(field.annotation)
    return list(current.model_fields) if current is not None else []


def _unknown_key(model: type[BaseModel], loc: KeyPath) -> str:
    key = loc[-1]
    known = keys_at(model, loc[:-1])
    hint = did_you_mean(key, known)
    if not hint and known:
        hint = f"; expected one of: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"


def _not_one_of(error: ErrorDetails) -> str:
    expected = str((error.get("ctx") or {}).get("expected", ""))
    choices = _QUOTED.findall(expected)
    given = error["input"]
    hint = did_you_mean(given, choices) if isinstance(given, str) and choices else ""
    listed = ", ".join(choices) if choices else expected.replace(" or ", ", ")
    return f"{describe(given)} is not one of {listed}{hint}"


def _quote_hint(value: object) -> str:
    return "; put it in quotes" if isinstance(value, int | float | bool) else ""


_SIMPLE = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number (not NaN or infinity)",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping of keys to values",
    "model_type": "expected a mapping of keys to values",
    "model_attributes_type": "expected a mapping of keys to values",
    "path_type": "expected a file or folder path",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _bound(value: object) -> str:
    """A limit as people write it: 16777216, not 16777216.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def message(model: type[BaseModel], error: ErrorDetails) -> tuple[KeyPath, str]:
    """The path the error is about, and the message to show for it (path first)."""
    loc: KeyPath = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        text = _unknown_key(model, loc)
    elif kind == "missing":
        text = f"missing required key {loc[-1]!r}"
        loc = loc[:-1]
    elif kind == "literal_error":
        text = _not_one_of(error)
    elif kind == "string_type":
        text = f"expected text, got {describe(given)}{_quote_hint(given)}"
    elif kind in _SIMPLE:
        text = f"{_SIMPLE[kind]}, got {describe(given)}"
    elif kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        limit = _bound((error.get("ctx") or {}).get(key))
        text = f"must be {words} {limit}, got {describe(given)}"
    elif kind in ("value_error", "assertion_error"):
        text = error["msg"].split(", ", 1)[1] if ", " in error["msg"] else error["msg"]
    else:
        text = error["msg"]
    where = format_path(loc)
    return loc, f"{where}: {text}" if where else text
