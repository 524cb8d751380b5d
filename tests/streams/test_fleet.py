"""Rendezvous hashing of cameras over workers, and the roster of live workers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.inventory.model import Camera
from hub.streams import fleet
from hub.streams.fleet import Assignment, Roster, owner, share
from hub.streams.fleet import score as fleet_score
from hub.streams.worker import has_stream

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


@given(st.lists(ids, min_size=1, max_size=6))
def test_assignment_kept_up_to_date_is_the_one_computed_afresh(views: list[list[str]]) -> None:
    assignment = Assignment(CAMERAS[:50], views[0])
    for live in views:
        assignment.update(live)
        for worker in live:
            assert assignment.of(worker) == share(CAMERAS[:50], live, worker)


def test_a_change_scores_far_fewer_pairs_than_a_fresh_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cameras = [f"cam-{i}" for i in range(2000)]
    workers = [f"w{i}" for i in range(50)]
    assignment = Assignment(cameras, workers)
    scored = []
    monkeypatch.setattr(fleet, "score", lambda w, c: scored.append(1) or fleet_score(w, c))
    assignment.update(workers[1:])  # one leaves: its ~40 cameras over the other 49
    assignment.update(workers)  # and comes back: scored once against each camera
    assert len(scored) < 2000 + 60 * 49  # a fresh share scores 2000 x 50 = 100,000 pairs
    for worker in workers:
        assert assignment.of(worker) == share(cameras, workers, worker)


def test_snapshot_cameras_have_no_stream_to_watch() -> None:
    def camera(url: str, substream: str | None = None) -> Camera:
        return Camera("c", url, "r", None, None, "c", None, None, None, None, 0.0, 0.0,
                      substream=substream)  # fmt: skip

    assert has_stream(camera("rtsp://cam/stream1"))
    assert has_stream(camera("http://cam/live.ts"))
    assert not has_stream(camera("http://cam/snapshot.JPG"))
    assert not has_stream(camera("http://cam/cgi-bin/snapshot.cgi"))
    assert has_stream(camera("http://cam/snapshot.jpg", substream="rtsp://cam/sub"))
