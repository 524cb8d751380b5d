"""Rendezvous hashing of cameras over workers, and the roster of live workers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hub.streams.fleet import Roster, owner, share

CAMERAS = [f"cam-{i}" for i in range(300)]
ids = st.lists(st.text("abcdefgh0123", min_size=1, max_size=6), min_size=1, max_size=8, unique=True)


@given(ids)
def test_every_camera_has_exactly_one_worker(workers: list[str]) -> None:
    shares = [share(CAMERAS, workers, w) for w in workers]
    assert sum(len(s) for s in shares) == len(CAMERAS)
    assert set().union(*shares) == set(CAMERAS)


@given(ids, st.text("xyz", min_size=1, max_size=3))
def test_a_worker_leaving_moves_only_its_own_cameras(workers: list[str], extra: str) -> None:
    everyone = [*workers, extra] if extra not in workers else workers
    before = {c: owner(c, everyone) for c in CAMERAS}
    gone = everyone[0]
    rest = everyone[1:]
    after = {c: owner(c, rest) for c in CAMERAS}
    for camera in CAMERAS:
        if before[camera] != gone:
            assert after[camera] == before[camera]


def test_shares_are_even_enough() -> None:
    workers = ["1", "2", "3"]
    sizes = [len(share(CAMERAS, workers, w)) for w in workers]
    assert min(sizes) > 60, sizes  # 100 each on average


def test_roster_joins_leaves_and_forgets_the_unheard() -> None:
    roster = Roster("1", timeout=20.0)
    assert roster.live == ["1"]
    assert roster.heard("2", True, 0.0)
    assert not roster.heard("2", True, 5.0)
    assert roster.heard("3", True, 5.0)
    assert roster.live == ["1", "2", "3"]
    assert roster.heard("3", False, 6.0)  # its Will: an empty presence
    assert not roster.expire(25.0)
    assert roster.expire(25.1)  # "2" unheard for more than 20 s
    assert roster.live == ["1"]
    assert not roster.heard("1", False, 30.0)  # our own goodbye is not news
