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


class Assignment:
    """Every camera's owner among a live set, kept up to date as workers come and go.

    Computing `share` from scratch costs cameras x workers hashes (10,000 cameras over 300
    workers: about 2 s of a core); a change needs far fewer: a worker that joins is scored
    once against every camera, and only the cameras of one that left are scored again over
    the others. The result is always the one `owner` gives.
    """

    def __init__(self, cameras: Iterable[str], workers: Iterable[str]) -> None:
        self.workers = set(workers)
        self.best: dict[str, tuple[int, str]] = {}
        for camera in cameras:
            self.best[camera] = max(((score(w, camera), w) for w in self.workers), default=(-1, ""))

    def update(self, workers: Iterable[str]) -> None:
        """Move to a new live set."""
        live = set(workers)
        gone, new = self.workers - live, live - self.workers
        self.workers = live
        if gone:
            for camera, (_, holder) in self.best.items():
                if holder in gone:
                    self.best[camera] = max(((score(w, camera), w) for w in live), default=(-1, ""))
        for worker in new:
            for camera, held in self.best.items():
                mine = (score(worker, camera), worker)
                if mine > held:
                    self.best[camera] = mine

    def of(self, worker: str) -> set[str]:
        """The cameras `worker` watches."""
        return {camera for camera, (_, holder) in self.best.items() if holder == worker}


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
