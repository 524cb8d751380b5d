"""The watch-list on the wire: the hub publishes it retained on `{prefix}/plates/watchlist`
as keyed digests (hub.plates.text), and each stream worker keeps the latest.

Payload: `{"ts": 1784001234.5, "entries": [{"digest": "<32 hex>", "until": 1784090000.0 or
null}, ...]}`. An entry past its `until` no longer matches, whether or not the hub has
published the list again yet.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable

import orjson

from hub.plates.text import DIGEST_BYTES, digest


def watchlist_topic(prefix: str) -> str:
    """The retained topic of the watch-list's digests."""
    return f"{prefix}/plates/watchlist"


def encode(key: bytes, plates: Iterable[tuple[str, float | None]], now: float) -> bytes:
    """The payload for these (normalised plate, until) pairs."""
    entries = [{"digest": digest(key, plate), "until": until} for plate, until in plates]
    return orjson.dumps({"ts": round(now, 3), "entries": entries})


class Listed:
    """A worker's copy of the watch-list: which digests are wanted, until when. `update` comes
    from the MQTT task and `match` from the plate stages' threads, so a whole new list is
    swapped in under a lock."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._wanted: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._wanted)

    def update(self, payload: bytes) -> None:
        """Take a published list (an empty payload: none); ValueError for one unreadable,
        which leaves the list as it was."""
        wanted: dict[str, float | None] = {}
        if payload:
            try:
                data = orjson.loads(payload)
                entries = data["entries"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"not a watch-list: {exc!r}") from None
            if not isinstance(entries, list):
                raise ValueError("not a watch-list: 'entries' is not a list")
            for entry in entries:
                wanted.update([_entry(entry)])
        with self._lock:
            self._wanted = wanted

    def match(self, plate: str, now: float | None = None) -> bool:
        """Whether the normalised `plate` is wanted at `now` (default: the clock)."""
        key = digest(self.key, plate)
        with self._lock:
            if key not in self._wanted:
                return False
            until = self._wanted[key]
        return until is None or (time.time() if now is None else now) < until


def _entry(entry: object) -> tuple[str, float | None]:
    if not isinstance(entry, dict):
        raise ValueError(f"not a watch-list entry: {entry!r}")  # noqa: TRY004 (one error for any bad list)
    key, until = entry.get("digest"), entry.get("until")
    if not isinstance(key, str) or len(key) != 2 * DIGEST_BYTES:
        raise ValueError(f"not a digest: {key!r}")
    if until is not None and (
        isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until)
    ):
        raise ValueError(f"'until' must be epoch seconds or null, got {until!r}")
    return key, None if until is None else float(until)
