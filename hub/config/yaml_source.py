"""YAML that remembers where every key and value was written, for messages that point there."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.config.problems import ConfigError, KeyPath, Problem, display_path

# libyaml, where PyYAML was built with it, parses several times faster, with the same marks.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a text file; line and col count from 1."""

    line: int
    col: int


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _syntax_problem(file: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "cannot read this"
        if exc.context and exc.problem:
            what += f" ({exc.context}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                what += f" at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
            what += ")"
        if mark is not None:
            return Problem(file, mark.line + 1, mark.column + 1, f"YAML syntax error: {what}")
        return Problem(file, 0, 0, f"YAML syntax error: {what}")
    return Problem(file, 0, 0, f"YAML syntax error: {exc}")


def _merged(
    node: yaml.MappingNode, seen: frozenset[int] = frozenset()
) -> list[tuple[yaml.Node, yaml.Node]]:
    """The node's pairs with `<<` merges expanded; explicit keys come last so they win."""
    seen = seen | {id(node)}
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    explicit: list[tuple[yaml.Node, yaml.Node]] = []
    for key, value in node.value:
        if key.tag != _MERGE_TAG:
            explicit.append((key, value))
            continue
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            # A mapping that merges itself is reported when it is built; here it is skipped.
            if isinstance(source, yaml.MappingNode) and id(source) not in seen:
                merged.extend(_merged(source, seen))
    return merged + explicit


class SourceMap:
    """Finds where the value (or key) at a path such as ("influx", "batch_size") was written."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def _walk(self, path: KeyPath) -> tuple[yaml.Node | None, yaml.Node | None]:
        """The (key node, value node) at `path`; either is None where the path leaves the text."""
        key_node: yaml.Node | None = None
        node = self._root
        for part in path:
            if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return None, None
                key_node, node = None, node.value[part]
            elif isinstance(node, yaml.MappingNode):
                wanted = str(part)
                found = None
                # The last match wins, as it does when the mapping is built.
                for k, v in _merged(node):
                    if isinstance(k, yaml.ScalarNode) and k.value == wanted:
                        found = (k, v)
                if found is None:
                    return None, None
                key_node, node = found
            else:
                return None, None
        return key_node, node

    def value(self, path: KeyPath) -> Position | None:
        """Where the value at `path` starts, or None if the text has no such path."""
        node = self._walk(path)[1]
        return None if node is None else _position(node)

    def key(self, path: KeyPath) -> Position | None:
        """Where the key of the value at `path` starts (its value for a list item)."""
        key_node, node = self._walk(path)
        found = key_node or node
        return None if found is None else _position(found)

    def nearest(self, path: KeyPath, *, key: bool = False) -> Position | None:
        """The position of `path`, or of its closest ancestor written in the text."""
        found = self.key(path) if key else self.value(path)
        while found is None and path:
            path = path[:-1]
            found = self.value(path)
        return found


class _Builder:
    """Turns a node tree into plain data, collecting every problem instead of stopping."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.problems: list[Problem] = []
        self._active: set[int] = set()

    def problem(self, node: yaml.Node, message: str) -> None:
        pos = _position(node)
        self.problems.append(Problem(self.file, pos.line, pos.col, message))

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self._active:
            self.problem(node, "an alias refers to the value that contains it")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.problem(node, f"unknown tag {node.tag}; this file takes plain YAML")
                return [self.build(item) for item in node.value]
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = exc.problem or "cannot read this value"
            if "could not determine a constructor" in problem:
                problem = f"unknown tag {node.tag}; this file takes plain YAML"
            self.problem(node, problem)
            return None
        except ValueError:  # an integer of more digits than Python converts
            self.problem(node, "cannot read this number: it has more than 4300 digits")
            return None

    def _mapping(self, node: yaml.MappingNode) -> dict[Any, Any]:
        if node.tag != _MAP_TAG:
            self.problem(node, f"unknown tag {node.tag}; this file takes plain YAML")
        out: dict[Any, Any] = {}
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(out, value_node)
                continue
            key = self.build(key_node)
            if isinstance(key, list | dict):
                self.problem(key_node, "a key must be a word or a number, not a list or mapping")
                continue
            if key in seen:
                first = _position(seen[key])
                self.problem(
                    key_node,
                    f"duplicate key {key!r}; it is already set at line {first.line}, "
                    f"column {first.col}",
                )
            seen[key] = key_node
            out[key] = self.build(value_node)
        return out

    def _merge(self, out: dict[Any, Any], value_node: yaml.Node) -> None:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if id(source) in self._active:
                self.problem(source, "a mapping cannot merge itself")
                continue
            merged = self.build(source)
            if not isinstance(merged, dict):
                self.problem(source, "'<<' merges mappings only")
                continue
            for key, value in merged.items():
                out.setdefault(key, value)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse one YAML document into plain data, its SourceMap and the problems found.

    Problems that still leave data to check (a duplicate key: the last one wins, as in
    PyYAML; an unknown tag: null) are returned so that the caller can report them together
    with its own; a syntax error leaves nothing to check and raises ConfigError.
    """
    loader = _Loader(text)
    try:
        try:
            root: yaml.Node | None = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_problem(file, exc)]) from None
        if root is None:
            return None, SourceMap(None), []
        builder = _Builder(file, loader)
        data = builder.build(root)
    finally:
        loader.dispose()
    return data, SourceMap(root), builder.problems


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data and its SourceMap, or raise ConfigError."""
    data, where, problems = parse_yaml(text, file)
    if problems:
        raise ConfigError(problems)
    return data, where


def source_map(path: Path | None) -> tuple[str, SourceMap]:
    """The name a message shows for a config file, and where its keys are: an empty map when
    there is no file, or when it cannot be read again."""
    file = display_path(path) if path is not None else "<defaults>"
    where = SourceMap(None)
    if path is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError, ConfigError):
            where = parse_yaml(path.read_text(encoding="utf-8-sig"), file)[1]
    return file, where
