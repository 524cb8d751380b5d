"""Problems found in a file, reported as `file:line:col: message` like a compiler's."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong in a file; line and col count from 1, and 0 means "the whole file".

    A warning is something accepted that should change (a key that was removed): shown as
    `file:line:col: warning: message`, it fails no check.
    """

    file: str
    line: int
    col: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        message = f"warning: {self.message}" if self.warning else self.message
        if self.line <= 0:
            return f"{self.file}: {message}"
        return f"{self.file}:{self.line}:{self.col}: {message}"


class ConfigError(Exception):
    """Every problem found in a configuration or inventory, sorted by file and position."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: object, choices: Iterable[object], *, cutoff: float = 0.6) -> str:
    """Return `, did you mean 'x'?` for the closest choice, or an empty string."""
    names = [str(c) for c in choices]
    matches = difflib.get_close_matches(str(word), names, n=1, cutoff=cutoff)
    return f", did you mean {matches[0]!r}?" if matches else ""


def format_path(path: KeyPath) -> str:
    """Spell a path to a value the way people write it: `api.tokens[0].role`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(value: object) -> str:
    """Name a value in a message: quoted text, a number, or what sort of thing it is."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 64:
        # Hundreds of digits help nobody (and past 4300 Python will not write them).
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"a number of about {digits} digits"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def display_path(path: Path) -> str:
    """The path relative to the working folder when it lies inside it, as people typed it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)
