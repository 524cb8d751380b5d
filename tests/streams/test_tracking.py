"""ByteTrack at a few frames a second: one walking person keeps one track, turns included."""

from __future__ import annotations

import math

from hub.detection.backends.base import Detection
from hub.streams.tracking import Tracker


def walker(t: float, left: float = 20, right: float = 480, period: float = 12) -> Detection:
    """A 134 x 200 px person walking between two points of a 640 x 360 frame and back."""
    x = (left + right) / 2 - (right - left) / 2 * math.cos(2 * math.pi * t / period)
    return Detection("person", 0.8, (x, 130.0, x + 134, 330.0))


def test_one_person_is_one_track_at_two_frames_a_second() -> None:
    tracker = Tracker(fps=2)
    ids = set()
    for step in range(48):  # two walks there and back, 60 px a frame at the fastest
        tracks = tracker.update([walker(step / 2)], 640, 360)
        assert len(tracks) == 1
        ids.add(tracks[0].id)
        x1, y1, x2, y2 = tracks[0].box
        assert abs((x2 - x1) * 640 - 134) < 15
        assert abs((y2 - y1) * 360 - 200) < 20
    assert len(ids) == 1


def test_a_person_who_appears_mid_stride_is_one_track_at_one_frame_a_second() -> None:
    tracker = Tracker(fps=1)
    tracker.update([], 640, 360)
    ids = set()
    for step in range(24):  # 115 px a frame at the fastest: boxes barely overlap
        ids |= {t.id for t in tracker.update([walker(step + 3.0)], 640, 360)}
    assert len(ids) == 1


def test_plain_iou_loses_the_walker_where_they_turn() -> None:
    plain = Tracker(fps=2, buffer=0.0)
    ids = set()
    for step in range(48):
        ids |= {t.id for t in plain.update([walker(step / 2)], 640, 360)}
    assert len(ids) > 1  # why `tracker.buffer` exists


def test_two_people_crossing_paths_keep_their_own_tracks() -> None:
    tracker = Tracker(fps=2)
    first: dict[int, int] = {}
    for step in range(10):
        a = Detection("person", 0.9, (20 + 40 * step, 100, 154 + 40 * step, 300))
        b = Detection("person", 0.9, (500 - 40 * step, 140, 634 - 40 * step, 340))
        tracks = tracker.update([a, b], 640, 360)
        for t in tracks:
            # Who is who by where they stand: the one walking right is higher in the frame.
            who = 0 if t.box[3] * 360 < 320 else 1
            first.setdefault(who, t.id)
            assert first[who] == t.id
    assert len(first) == 2
    assert first[0] != first[1]
