"""Small state files written atomically: a crash leaves the old version or the new, never half."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, fsync and rename (blocking I/O)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    # The rename itself must reach the disk, or a power loss could bring back the old file.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(path: Path) -> bytes | None:
    """The last complete version of the file, or None if there is none yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
