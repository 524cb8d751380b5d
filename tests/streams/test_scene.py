"""Camera events from tracks, with time moved by hand: zones, lines, loitering, crowds, alerts."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hub.inventory.model import Line, Zone
from hub.streams.scene import CameraEvent, Scene, Track, side

# The lower right quarter of the picture.
CORNER = Zone("corner", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)), loiter=10.0, crowd=2)
# Across the picture, left to right, at mid-height; `in` is below it (its right).
KERB = Line("kerb", (0.0, 0.5), (1.0, 0.5), "right")


def person(track_id: int, x: float, y: float, cls: str = "person") -> Track:
    """A person standing at (x, y): a box 0.1 wide and 0.3 tall above that point."""
    return Track(track_id, cls, 0.9, (x - 0.05, y - 0.3, x + 0.05, y))


def kinds(events: list[CameraEvent]) -> list[tuple[str, int | None, str | None]]:
    return [(e.kind, e.track_id, e.zone or e.line) for e in events]


def test_walking_into_a_zone_is_one_entered_event_however_long_it_stays() -> None:
    scene = Scene("cam", [CORNER])
    assert scene.update([person(1, 0.2, 0.7)], 0.0) == []
    assert kinds(scene.update([person(1, 0.6, 0.7)], 0.5)) == [("entered", 1, "corner")]
    for step in range(1, 10):
        assert scene.update([person(1, 0.6 + step * 0.01, 0.7)], 0.5 + step * 0.5) == []


def test_leaving_and_coming_back_is_a_new_entry() -> None:
    scene = Scene("cam", [CORNER], leave_frames=2)
    scene.update([person(1, 0.6, 0.7)], 0.0)
    # One frame outside is the edge flickering, not leaving.
    assert scene.update([person(1, 0.4, 0.7)], 0.5) == []
    assert scene.update([person(1, 0.6, 0.7)], 1.0) == []
    scene.update([person(1, 0.4, 0.7)], 1.5)
    assert kinds(scene.update([person(1, 0.3, 0.7)], 2.0)) == [("left", 1, "corner")]
    again = scene.update([person(1, 0.6, 0.7)], 2.5)
    assert kinds(again) == [("entered", 1, "corner")]
    assert again[0].event_id != CameraEvent("cam", "entered", 0).event_id


def test_a_track_that_vanishes_inside_leaves_once_it_is_lost() -> None:
    scene = Scene("cam", [CORNER], lost_after=3.0)
    scene.update([person(7, 0.6, 0.7)], 0.0)
    assert scene.update([], 2.0) == []
    assert kinds(scene.update([], 3.0)) == [("left", 7, "corner")]
    assert scene.tracks == {}


def test_loitering_once_per_stay_after_the_zones_time() -> None:
    scene = Scene("cam", [CORNER])
    scene.update([person(1, 0.6, 0.7)], 100.0)
    assert scene.update([person(1, 0.6, 0.7)], 109.0) == []
    events = scene.update([person(1, 0.61, 0.7)], 110.0)
    assert kinds(events) == [("loitering", 1, "corner")]
    assert scene.update([person(1, 0.6, 0.7)], 200.0) == []


def test_crossing_a_line_has_a_direction() -> None:
    scene = Scene("cam", lines=[KERB])
    scene.update([person(1, 0.3, 0.4)], 0.0)
    events = scene.update([person(1, 0.3, 0.6)], 0.5)
    assert [(e.kind, e.line, e.direction) for e in events] == [("crossed", "kerb", "in")]
    events = scene.update([person(1, 0.3, 0.45)], 1.0)
    assert [(e.kind, e.direction) for e in events] == [("crossed", "out")]


def test_stepping_onto_a_line_and_off_again_is_one_crossing_from_where_it_stood() -> None:
    scene = Scene("cam", lines=[KERB])
    scene.update([person(1, 0.0, 0.375)], 0.0)
    assert [e.direction for e in scene.update([person(1, 0.0, 1.0)], 0.5)] == ["in"]
    assert scene.update([person(1, 0.0, 0.5)], 1.0) == []  # on the line: not across yet
    assert [e.direction for e in scene.update([person(1, 0.0, 0.375)], 1.5)] == ["out"]
    assert [e.direction for e in scene.update([person(1, 0.0, 1.0)], 2.0)] == ["in"]
    assert scene.update([person(1, 0.3, 0.5)], 2.5) == []
    assert scene.update([person(1, 0.3, 0.9)], 3.0) == []  # back where it was: no crossing


def test_passing_beside_the_end_of_a_line_is_no_crossing() -> None:
    short = Line("gate", (0.0, 0.5), (0.2, 0.5), "right")
    scene = Scene("cam", lines=[short])
    scene.update([person(1, 0.6, 0.4)], 0.0)
    assert scene.update([person(1, 0.6, 0.6)], 0.5) == []


def test_side_in_image_coordinates() -> None:
    assert side(KERB, (0.5, 0.2)) == "left"  # above a left-to-right line
    assert side(KERB, (0.5, 0.9)) == "right"
    assert side(KERB, (0.5, 0.5)) is None


def test_crowd_is_edge_triggered() -> None:
    scene = Scene("cam", [CORNER])
    scene.update([person(1, 0.6, 0.7)], 0.0)
    events = scene.update([person(1, 0.6, 0.7), person(2, 0.8, 0.9)], 0.5)
    crowd = [e for e in events if e.kind == "crowd"]
    assert [(e.zone, e.count, e.track_id) for e in crowd] == [("corner", 2, None)]
    assert not [e for e in scene.update([person(1, 0.6, 0.7), person(2, 0.8, 0.9)], 1.0)
                if e.kind == "crowd"]  # fmt: skip
    # One leaves (two frames outside), the zone is no longer crowded; a return is a new crowd.
    scene.update([person(1, 0.6, 0.7), person(2, 0.2, 0.9)], 1.5)
    scene.update([person(1, 0.6, 0.7), person(2, 0.2, 0.9)], 2.0)
    events = scene.update([person(1, 0.6, 0.7), person(2, 0.8, 0.9)], 2.5)
    assert [e.kind for e in events].count("crowd") == 1


def test_falls_fires_and_smoke_once_per_track_with_aliases() -> None:
    scene = Scene(
        "cam",
        aliases={"fallen_person": "person"},
        alerts={"fall": ["fallen_person"], "fire": ["flame"]},
    )
    assert scene.update([person(1, 0.5, 0.5)], 0.0) == []
    events = scene.update([person(1, 0.5, 0.5, "fallen_person")], 0.5)
    assert [(e.kind, e.cls, e.track_id) for e in events] == [("fall", "person", 1)]
    assert scene.update([person(1, 0.5, 0.5, "fallen_person")], 1.0) == []
    events = scene.update([person(1, 0.5, 0.5, "fallen_person"), person(2, 0.1, 0.9, "flame")], 1.5)
    assert [(e.kind, e.cls) for e in events] == [("fire", "flame")]


def test_event_json_is_the_contracts() -> None:
    event = CameraEvent("cam-1", "crossed", 12.3456, "person", 0.87654, 12, line="kerb",
                        direction="in", snapshot="streams/x.jpg")  # fmt: skip
    body = event.to_json()
    assert set(body) == {"event_id", "camera", "kind", "class", "score", "track_id", "zone",
                         "line", "direction", "count", "ts", "snapshot", "clip"}  # fmt: skip
    assert (body["class"], body["score"], body["ts"], body["zone"], body["clip"]) == (
        "person", 0.8765, 12.346, None, None)  # fmt: skip


@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(0.31, 1), st.booleans()), min_size=1, max_size=60)
)
def test_entries_and_exits_alternate_whatever_the_path(
    steps: list[tuple[float, float, bool]],
) -> None:
    """A track's zone events go entered, left, entered, ...; crossings alternate in and out."""
    scene = Scene("cam", [CORNER], [KERB], leave_frames=2, lost_after=1.0)
    zone_kinds: list[str] = []
    runs: list[list[str]] = [[]]  # crossings while the track is alive, run by run
    ts = 0.0
    for x, y, seen in steps:
        ts += 0.5
        for e in scene.update([person(1, x, y)] if seen else [], ts):
            if e.zone == "corner" and e.kind in ("entered", "left"):
                zone_kinds.append(e.kind)
            if e.kind == "crossed":
                runs[-1].append(str(e.direction))
        if 1 not in scene.tracks and runs[-1]:
            runs.append([])  # lost: a new sighting starts afresh
    assert zone_kinds == ["entered", "left"] * (len(zone_kinds) // 2) + (
        ["entered"] if len(zone_kinds) % 2 else [])  # fmt: skip
    for run in runs:
        assert all(a != b for a, b in itertools.pairwise(run))
