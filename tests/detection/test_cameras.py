"""Camera selection: coverage sectors, ranking, and the grid index against a full scan."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detection.cameras import (
    CameraIndex,
    angle_between,
    bearing_deg,
    distance_m,
    match,
    rank_key,
    scan,
)
from hub.inventory.model import Camera

LON, LAT = 127.0003, 37.2612  # the Seryu underpass
M_LAT = 1 / 111_195.0  # degrees of latitude per metre


def cam(
    id: str,
    north_m: float = 0.0,
    east_m: float = 0.0,
    *,
    heading: float | None = None,
    fov: float | None = None,
    range: float | None = None,
    at: tuple[float, float] = (LON, LAT),
) -> Camera:
    lon = at[0] + east_m * M_LAT / math.cos(math.radians(at[1]))
    lat = at[1] + north_m * M_LAT
    return Camera(id, f"rtsp://{id}", "r", None, None, id, heading, fov, range, None, lon, lat)


def ids(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.camera.id for m in matches]


def test_distance_and_bearing_on_the_sphere() -> None:
    assert distance_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-4)
    assert bearing_deg(0, 0, 0, 1) == pytest.approx(0)
    assert bearing_deg(0, 0, 1, 0) == pytest.approx(90)
    assert bearing_deg(0, 1, 0, 0) == pytest.approx(180)
    assert bearing_deg(0, 0, -1, 0) == pytest.approx(270)
    assert angle_between(359, 1) == pytest.approx(2)
    assert angle_between(10, 190) == pytest.approx(180)


def test_a_camera_facing_away_ranks_after_a_farther_one_facing_the_point() -> None:
    away = cam("away", north_m=20, heading=0, fov=90)  # 20 m north, looking further north
    facing = cam("facing", north_m=-100, heading=0, fov=60)  # 100 m south, looking north
    found = CameraIndex([away, facing]).nearest(LON, LAT, count=3, within_m=300)
    assert ids(found) == ["facing", "away"]
    assert [m.covers for m in found] == [True, False]
    assert found[0].bearing_deg == pytest.approx(0, abs=1e-6)
    assert found[1].bearing_deg == pytest.approx(180, abs=1e-6)


def test_omnidirectional_cameras_cover_but_rank_after_a_sector_at_equal_distance() -> None:
    ptz = cam("a-ptz", east_m=50)
    sector = cam("b-sector", east_m=-50, heading=90, fov=30)
    nearer_ptz = cam("c-ptz", north_m=30)
    found = CameraIndex([ptz, sector, nearer_ptz]).nearest(LON, LAT)
    assert ids(found) == ["c-ptz", "b-sector", "a-ptz"]
    assert all(m.covers for m in found)
    assert [m.directional for m in found] == [False, True, False]


@pytest.mark.parametrize(
    ("heading", "fov", "covers"),
    [
        (350, 40, True),  # sector 330..10 spans north across 0/360
        (10, 30, True),  # sector 355..25
        (-20, 50, True),  # a negative heading means the same as 340
        (370, 30, True),  # and 370 the same as 10
        (30, 40, False),  # sector 10..50 misses north
        (200, 359, True),  # almost all round
        (180, 10, False),
    ],
)
def test_sector_wraps_around_north(heading: float, fov: float, covers: bool) -> None:
    # The camera stands 50 m south of the point, so the point is due north (bearing 0).
    assert match(cam("c", north_m=-50, heading=heading, fov=fov), LON, LAT).covers is covers


def test_sector_at_the_bearing_of_359_degrees() -> None:
    # The point lies just west of north from the camera; a camera looking at 2 deg sees it.
    m = match(cam("c", north_m=-100, east_m=2, heading=2, fov=10), LON, LAT)
    assert 358 < m.bearing_deg < 360
    assert m.covers


def test_range_limits_coverage_but_not_the_radius() -> None:
    short = cam("short", north_m=-120, heading=0, fov=90, range=100)
    long = cam("long", north_m=-150, heading=0, fov=90, range=200)
    found = CameraIndex([short, long]).nearest(LON, LAT, within_m=300)
    assert ids(found) == ["long", "short"]
    assert [m.covers for m in found] == [True, False]
    assert not match(cam("ptz", north_m=60, range=50), LON, LAT).covers


def test_radius_count_and_filter() -> None:
    cameras = [cam(f"c{i}", north_m=i * 40.0) for i in range(10)]
    index = CameraIndex(cameras)
    assert ids(index.nearest(LON, LAT, count=3, within_m=1000)) == ["c0", "c1", "c2"]
    assert ids(index.nearest(LON, LAT, count=50, within_m=125)) == ["c0", "c1", "c2", "c3"]
    odd = index.nearest(LON, LAT, count=2, where=lambda c: int(c.id[1:]) % 2 == 1)
    assert ids(odd) == ["c1", "c3"]
    assert index.nearest(LON, LAT, count=0) == []
    assert len(index) == 10


def test_a_camera_on_the_point_covers_it_whichever_way_it_looks() -> None:
    assert match(cam("here", heading=90, fov=10), LON, LAT).covers


def test_the_antimeridian_and_the_poles() -> None:
    east = cam("east", at=(179.9995, 10.0))
    west = cam("west", at=(-179.9995, 10.0))
    found = CameraIndex([east, west]).nearest(-179.9999, 10.0, within_m=200)
    assert ids(found) == ["west", "east"]
    pole = cam("pole", at=(0.0, 89.9999))
    far_side = cam("far-side", at=(180.0, 89.9995))
    found = CameraIndex([pole, far_side]).nearest(90.0, 89.9999, within_m=200)
    assert ids(found) == ["pole", "far-side"]


def test_the_two_entrance_cameras_of_an_underpass_beat_a_nearer_one_looking_away() -> None:
    north = cam("n", north_m=66, heading=180, fov=90, range=150)
    south = cam("s", north_m=-66, heading=0, fov=90, range=150)
    elsewhere = cam("x", east_m=30, heading=90, fov=60)
    found = CameraIndex([north, south, elsewhere]).nearest(LON, LAT, count=2)
    assert ids(found) == ["n", "s"]


# -- property: the grid finds exactly what a full scan finds -------------------------------

_offsets = st.floats(-600, 600, allow_nan=False)
_cameras = st.lists(
    st.builds(
        lambda n, e, h, f, r: (n, e, h, f, r),
        _offsets,
        _offsets,
        st.none() | st.floats(-720, 720, allow_nan=False),
        st.none() | st.floats(1, 400, allow_nan=False),
        st.none() | st.floats(1, 800, allow_nan=False),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    specs=_cameras,
    origin=st.tuples(st.floats(-180, 180), st.floats(-89.9, 89.9)),
    count=st.integers(1, 8),
    within=st.floats(0, 900),
    cell=st.sampled_from([20.0, 250.0, 5000.0]),
)
def test_index_equals_scan_and_respects_ranking(
    specs: list[tuple[float, float, float | None, float | None, float | None]],
    origin: tuple[float, float],
    count: int,
    within: float,
    cell: float,
) -> None:
    cameras = [
        cam(f"c{i}", n, e, heading=h, fov=f, range=r, at=origin)
        for i, (n, e, h, f, r) in enumerate(specs)
    ]
    found = CameraIndex(cameras, cell_m=cell).nearest(*origin, count=count, within_m=within)
    assert found == scan(cameras, *origin, count=count, within_m=within)
    assert len(found) <= count
    assert all(m.distance_m <= within for m in found)
    keys = [rank_key(m) for m in found]
    assert keys == sorted(keys)
    # Every covering camera comes before every camera that does not cover the point.
    covers = [m.covers for m in found]
    assert covers == sorted(covers, reverse=True)
    # And nothing left out ranks better than the last one kept.
    if len(found) == count:
        kept = {m.camera.id for m in found}
        rest = [match(c, *origin) for c in cameras if c.id not in kept]
        assert all(rank_key(m) >= keys[-1] for m in rest if m.distance_m <= within)
