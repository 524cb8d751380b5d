"""Positions in JSON text: every path's reported position is where its value is written."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import Position
from hub.config.problems import KeyPath
from hub.inventory.positions import JsonSourceMap

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=40,
)


def _paths(data: Any, prefix: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    found: list[tuple[KeyPath, Any]] = [(prefix, data)]
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        if isinstance(value, dict | list):
            found.extend(_paths(value, (*prefix, key)))
        else:
            found.append(((*prefix, key), value))
    return found


def _offset(text: str, pos: Position) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: pos.line - 1]) + pos.col - 1


@settings(max_examples=300, deadline=None)
@given(
    tree=st.one_of(st.lists(_TREES, max_size=4), st.dictionaries(st.text(max_size=5), _TREES)),
    indent=st.sampled_from([None, 0, 1, 2, "\t"]),
    ascii_only=st.booleans(),
)
def test_every_value_is_where_the_map_says(
    tree: Any, indent: int | str | None, ascii_only: bool
) -> None:
    text = json.dumps(tree, indent=indent, ensure_ascii=ascii_only)
    where = JsonSourceMap(text)
    decoder = json.JSONDecoder()
    for path, value in _paths(tree):
        pos = where.value(path)
        assert pos is not None, path
        assert decoder.raw_decode(text, _offset(text, pos))[0] == value, (path, pos)
        if path and isinstance(path[-1], str):
            key = where.key(path)
            assert key is not None
            assert decoder.raw_decode(text, _offset(text, key))[0] == path[-1]


def test_paths_that_leave_the_text_fall_back_to_an_ancestor() -> None:
    text = '{"a": [10, {"b": 2}],\n "c": "x"}'
    where = JsonSourceMap(text)
    assert where.value(("a", 1, "b")) == Position(1, 18)
    assert where.value(("a", 5)) is None
    assert where.nearest(("a", 5, "z")) == Position(1, 7)
    assert where.nearest(("c", 0)) == Position(2, 7)
    assert where.key(("c",)) == Position(2, 2)
    assert JsonSourceMap("").nearest(("a",)) is None
