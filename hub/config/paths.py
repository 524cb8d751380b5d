"""Lists of files or folders, as `inventory:` and `rules:` name them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def collect_files(paths: Iterable[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Expand folders into their files with one of `suffixes` (not recursing), sorted by name.

    Files named directly are kept whatever their suffix; paths that do not exist are left
    out, since the caller reports them where they were written.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
            )
        elif path.exists():
            found.append(path)
    return found
