"""What the services share to import an older hub's files into the store, once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.store import Changes, Store

log = logging.getLogger("hub.store")


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """An older hub's journal: its records, oldest first. A crash could tear the last line
    only, and what it held was never acted on: it is skipped, with a word in the log."""
    found: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append(dict(orjson.loads(line)))
        except orjson.JSONDecodeError:
            log.warning("store: %s:%d: skipped an unreadable record", path, number)
    return found


def adopt(store: Store, changes: Changes, files: Sequence[Path]) -> None:
    """Commit what was read from `files`, make it durable, then rename each `<name>.imported`
    (the store holds the only copy from then on)."""
    if changes:
        store.commit(changes)
        store.sync_now()
    for path in files:
        path.replace(path.with_name(f"{path.name}.imported"))
