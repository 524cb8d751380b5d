"""Sharing the cameras among stream workers: who is alive, and who watches which camera.

Each worker publishes a retained presence message on `{prefix}/streams/workers/{id}`, again
every heartbeat, with a Last Will that empties it when the worker vanishes. Every worker
reads all of them and gives each camera to the live worker with the highest rendezvous
(HRW) score of the pair, so all workers that see the same live set agree on every camera
without talking, and a change moves only the cameras of the worker that came or went.
Pure: times come in as arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(worker: str, camera: str) -> int:
    """The pair's rendezvous weight: the highest among the live workers takes the camera."""
    digest = hashlib.blake2b(f"{worker}\x00{camera}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(camera: str, workers: Iterable[str]) -> str | None:
    """The worker that watches `camera` (None when there is none)."""
    return max(workers, key=lambda w: (score(w, camera), w), default=None)


def share(cameras: Iterable[str], workers: Iterable[str], me: str) -> set[str]:
    """The cameras `me` watches among `workers`."""
    live = sorted(set(workers) | {me})
    return {c for c in cameras if owner(c, live) == me}


class Roster:
    """The workers this one believes alive: itself, and every other heard within `timeout`.

    A worker leaves the roster on its empty retained message (its Will, or its own goodbye)
    or when unheard for `timeout`, which covers a presence message a broker kept from
    before a restart for a worker that died meanwhile.
    """

    def __init__(self, me: str, timeout: float) -> None:
        self.me = me
        self.timeout = timeout
        self.heard_at: dict[str, float] = {}

    def heard(self, worker: str, alive: bool, now: float) -> bool:
        """Note a presence message (empty: gone); True when the live set changed."""
        if worker == self.me:
            return False
        known = worker in self.heard_at
        if alive:
            self.heard_at[worker] = now
            return not known
        self.heard_at.pop(worker, None)
        return known

    def expire(self, now: float) -> bool:
        """Forget workers unheard for `timeout`; True when any was forgotten."""
        stale = [w for w, at in self.heard_at.items() if now - at > self.timeout]
        for worker in stale:
            del self.heard_at[worker]
        return bool(stale)

    def forget_all(self) -> None:
        """Forget every other worker (the broker connection is lost; retained ones come again)."""
        self.heard_at.clear()

    @property
    def live(self) -> list[str]:
        """The live workers, this one among them, sorted."""
        return sorted({self.me, *self.heard_at})
