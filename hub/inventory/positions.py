"""Where a value was written in a JSON file, found after the fact for the values in messages.

A valid JSON file is also YAML, and the YAML loader keeps positions, but building a node
for every value of a 100,000-feature file takes half a minute. This walks the text along
the paths asked for, skipping sibling values with the json module's C scanner, and
remembers each container it has walked, so that many problems in one file cost about one
pass over it.
"""

from __future__ import annotations

import bisect
import json.decoder
import re
from typing import Any

from hub.config.problems import KeyPath
from hub.config.yaml_source import Position

# Long-standing names in the json module, though the type stubs leave them out.
_WS: re.Pattern[str] = json.decoder.WHITESPACE  # type: ignore[attr-defined]
_NEWLINE = re.compile("\n")
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]


class JsonSourceMap:
    """The positions of values and keys in one JSON text, by path."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._scan: Any = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]
        self._objects: dict[int, dict[str, tuple[int, int]]] = {}
        self._arrays: dict[int, list[int]] = {}
        self._newlines: list[int] | None = None

    def _ws(self, index: int) -> int:
        match = _WS.match(self._text, index)
        return match.end() if match else index

    def _object(self, start: int) -> dict[str, tuple[int, int]]:
        """(key offset, value offset) by key for the object at `start`; the last key wins."""
        members = self._objects.get(start)
        if members is not None:
            return members
        text, members = self._text, {}
        index = self._ws(start + 1)
        while text[index] == '"':
            key, after = _scanstring(text, index + 1)
            value = self._ws(self._ws(after) + 1)  # past the ':'
            members[key] = (index, value)
            index = self._ws(self._scan(text, value)[1])
            if text[index] != ",":
                break
            index = self._ws(index + 1)
        self._objects[start] = members
        return members

    def _array(self, start: int) -> list[int]:
        """The offsets of the items of the array at `start`."""
        items = self._arrays.get(start)
        if items is not None:
            return items
        text, items = self._text, []
        index = self._ws(start + 1)
        while text[index] != "]":
            items.append(index)
            index = self._ws(self._scan(text, index)[1])
            if text[index] != ",":
                break
            index = self._ws(index + 1)
        self._arrays[start] = items
        return items

    def _walk(self, path: KeyPath) -> tuple[int | None, int | None]:
        """The offsets of the key and the value at `path`; None where the path leaves the text."""
        key: int | None = None
        if not self._text:
            return None, None
        try:
            index = self._ws(0)
            for part in path:
                opener = self._text[index]
                if opener == "{" and isinstance(part, str):
                    found = self._object(index).get(part)
                    if found is None:
                        return None, None
                    key, index = found
                elif opener == "[" and isinstance(part, int):
                    items = self._array(index)
                    if not 0 <= part < len(items):
                        return None, None
                    key, index = None, items[part]
                else:
                    return None, None
        except (ValueError, IndexError, StopIteration):
            # The text is not the JSON that was loaded (it changed on disk since).
            return None, None
        return key, index

    def _position(self, offset: int) -> Position:
        if self._newlines is None:
            self._newlines = [m.start() for m in _NEWLINE.finditer(self._text)]
        line = bisect.bisect_left(self._newlines, offset)
        line_start = self._newlines[line - 1] + 1 if line else 0
        return Position(line + 1, offset - line_start + 1)

    def value(self, path: KeyPath) -> Position | None:
        """Where the value at `path` starts."""
        offset = self._walk(path)[1]
        return None if offset is None else self._position(offset)

    def key(self, path: KeyPath) -> Position | None:
        """Where the key of the value at `path` starts (the value itself for an array item)."""
        key, value = self._walk(path)
        offset = key if key is not None else value
        return None if offset is None else self._position(offset)

    def nearest(self, path: KeyPath, *, key: bool = False) -> Position | None:
        """The position of `path`, or of its closest ancestor written in the text."""
        found = self.key(path) if key else self.value(path)
        while found is None and path:
            path = path[:-1]
            found = self.value(path)
        return found
