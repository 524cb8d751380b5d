"""The position-keeping YAML loader: data, positions, and problems with their places."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import ConfigError, Position, load_yaml
from hub.config.problems import KeyPath
from hub.config.yaml_source import parse_yaml

TEXT = """\
mqtt:
  url: mqtt://broker:1883
  qos: 1
api:
  tokens:
    - {name: desk-1, role: operator}
    - name: desk-2
      role: viewer
inventory: [site/, more/]
"""


def test_data_is_plain_python() -> None:
    data, _ = load_yaml(TEXT, "hub.yaml")
    assert data == {
        "mqtt": {"url": "mqtt://broker:1883", "qos": 1},
        "api": {
            "tokens": [
                {"name": "desk-1", "role": "operator"},
                {"name": "desk-2", "role": "viewer"},
            ]
        },
        "inventory": ["site/", "more/"],
    }


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (("mqtt",), Position(1, 1), Position(2, 3)),
        (("mqtt", "url"), Position(2, 3), Position(2, 8)),
        (("mqtt", "qos"), Position(3, 3), Position(3, 8)),
        (("api", "tokens", 0), Position(6, 7), Position(6, 7)),
        (("api", "tokens", 0, "role"), Position(6, 22), Position(6, 28)),
        (("api", "tokens", 1, "role"), Position(8, 7), Position(8, 13)),
        (("inventory", 1), Position(9, 20), Position(9, 20)),
    ],
)
def test_positions_of_keys_and_values(path: KeyPath, key: Position, value: Position) -> None:
    _, where = load_yaml(TEXT, "hub.yaml")
    assert where.key(path) == key
    assert where.value(path) == value


def test_nearest_falls_back_to_the_closest_written_ancestor() -> None:
    _, where = load_yaml(TEXT, "hub.yaml")
    assert where.value(("mqtt", "password")) is None
    assert where.nearest(("mqtt", "password")) == Position(2, 3)
    assert where.nearest(("api", "tokens", 5, "name")) == Position(6, 5)
    assert where.nearest(("nothing", "here")) == Position(1, 1)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: b: c\n", "1:5: YAML syntax error: mapping values are not allowed in this context"),
        (
            "mqtt:\n  url: x\n qos: 1\n",
            "3:2: YAML syntax error: did not find expected key "
            "(while parsing a block mapping at 1:1)",
        ),
        (
            "mqtt:\n  url: x\n  qos 1\n  a: 2\n",
            "4:3: YAML syntax error: could not find expected ':' "
            "(while scanning a simple key at 3:3)",
        ),
    ],
)
def test_a_syntax_error_is_reported_where_it_is(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, "hub.yaml")
    assert str(caught.value) == f"hub.yaml:{error}"


def test_an_unclosed_flow_list_names_where_it_was_opened() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("inventory: [site/\nrules: []\n", "hub.yaml")
    assert str(caught.value) == (
        "hub.yaml:2:6: YAML syntax error: did not find expected ',' or ']' "
        "(while parsing a flow sequence at 1:12)"
    )


def test_every_duplicate_key_is_reported_and_the_last_one_wins() -> None:
    text = "a: 1\nb: {x: 1, x: 2}\na: 3\n"
    data, _, problems = parse_yaml(text, "f.yaml")
    assert data == {"a": 3, "b": {"x": 2}}
    assert [str(p) for p in problems] == [
        "f.yaml:2:11: duplicate key 'x'; it is already set at line 2, column 5",
        "f.yaml:3:1: duplicate key 'a'; it is already set at line 1, column 1",
    ]
    with pytest.raises(ConfigError):
        load_yaml(text, "f.yaml")


def test_unknown_tags_are_refused_with_their_position() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("mqtt:\n  password: !secret mqtt_pw\n", "hub.yaml")
    assert str(caught.value) == ("hub.yaml:2:13: unknown tag !secret; this file takes plain YAML")


def test_merge_keys_merge_and_explicit_keys_win() -> None:
    text = "base: &b {qos: 0, keepalive: 30s}\nmqtt:\n  <<: *b\n  qos: 1\n"
    data, where = load_yaml(text, "hub.yaml")
    assert data["mqtt"] == {"qos": 1, "keepalive": "30s"}
    assert where.value(("mqtt", "qos")) == Position(4, 8)
    # A merged value is found where the anchor wrote it.
    assert where.value(("mqtt", "keepalive")) == Position(1, 30)


def test_a_recursive_alias_is_a_problem_not_a_crash() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("a: &x [1, *x]\n", "f.yaml")
    assert "refers to the value that contains it" in str(caught.value)


def test_an_empty_file_is_none() -> None:
    data, where = load_yaml("# nothing yet\n", "f.yaml")
    assert data is None
    assert where.nearest(("a",)) is None


def test_columns_count_characters_not_bytes() -> None:
    _, where = load_yaml("name: 수원시\nnext: {이름: 고양, id: x}\n", "f.yaml")
    assert where.value(("next", "id")) == Position(2, 20)


# Keys that YAML reads back as text, whether or not the dumper has to quote them.
_KEYS = st.text(alphabet="abcxyz_019 -가", min_size=1, max_size=8).filter(lambda k: k.strip() == k)
_SCALARS = st.one_of(
    st.integers(-1000, 1000), st.booleans(), st.none(), st.text("abc 가:#-", max_size=6)
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)
    ),
    max_leaves=30,
)


def _paths(data: Any, prefix: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    found: list[tuple[KeyPath, Any]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        found.append(((*prefix, key), value))
        if isinstance(value, dict | list):
            found.extend(_paths(value, (*prefix, key)))
    return found


@settings(max_examples=200, deadline=None)
@given(tree=st.dictionaries(_KEYS, _TREES, min_size=1, max_size=5), flow=st.booleans())
def test_every_position_points_at_its_key_and_value(tree: dict[str, Any], flow: bool) -> None:
    text = yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True, width=60)
    data, where = load_yaml(text, "gen.yaml")
    assert data == tree
    lines = text.splitlines()
    for path, value in _paths(tree):
        if isinstance(path[-1], str):
            pos = where.key(path)
            assert pos is not None
            # The key is written there, plain or quoted.
            written = lines[pos.line - 1][pos.col - 1 :]
            assert written.lstrip("'\"").startswith(path[-1]), (path, pos, text)
        if not isinstance(value, dict | list):
            pos = where.value(path)
            assert pos is not None
            written = lines[pos.line - 1][pos.col - 1 :]
            assert written.startswith(_spellings(value)), (path, pos, text)


def _spellings(value: object) -> tuple[str, ...]:
    """How the dumper may begin to write a scalar."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("true",) if value else ("false",)
    if isinstance(value, int):
        return (str(value),)
    return ("'", '"', str(value)[:1] or "'")
