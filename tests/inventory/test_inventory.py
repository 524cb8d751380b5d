"""Loading inventories: the example province, what each feature becomes, and big files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hub.config import ConfigError
from hub.inventory import SENSOR_KINDS, SITE_TYPES, Camera, Sensor, load_inventory
from tests.inventory.geojson import SQUARE, feature, point, region, write

REPO = Path(__file__).resolve().parents[2]


def test_the_example_province_loads_clean() -> None:
    inventory = load_inventory([REPO / "site"])
    assert sorted(inventory.regions) == ["gapyeong", "goyang", "suwon", "yangpyeong"]
    assert {s.site_type for s in inventory.sites.values()} == set(SITE_TYPES)
    assert {s.kind for s in inventory.sensors.values()} == set(SENSOR_KINDS)
    assert len(inventory.cameras) >= 8
    barriers = [a for a in inventory.actuators.values() if a.kind == "barrier"]
    assert {a.site_type for a in barriers} == {"underpass", "underground_road"}
    total = sum(
        len(d)
        for d in (
            inventory.regions,
            inventory.sites,
            inventory.sensors,
            inventory.cameras,
            inventory.actuators,
        )
    )
    assert 40 <= total <= 80
    assert [f.name for f in inventory.files] == [
        "actuators.geojson",
        "cameras.geojson",
        "regions.geojson",
        "sensors.geojson",
        "sites.geojson",
    ]


def test_the_example_converts_min_and_max_to_canonical_units() -> None:
    sensors = load_inventory([REPO / "site"]).sensors
    gauge = sensors["suwon-seryu-wl-1"]
    assert (gauge.unit, gauge.min, gauge.max) == ("cm", 0.0, 3.0)
    assert gauge.site_type == "underpass"
    assert gauge.expected_interval == 30.0
    battery = sensors["suwon-seryu-batt-1"]
    assert (battery.unit, battery.min, battery.max) == ("mV", 3.0, 4.2)
    crack = sensors["yangpyeong-yongmun-disp-1"]
    assert (crack.unit, crack.max) == ("cm", 500.0)
    tilt = sensors["yangpyeong-yongmun-tilt-1"]
    assert tilt.max == pytest.approx(14.3239, abs=1e-4)  # 250 mrad in degrees


def test_what_each_feature_becomes(tmp_path: Path) -> None:
    area = [[[127.0, 37.0], [127.2, 37.0], [127.2, 37.2], [127.0, 37.2], [127.0, 37.0]]]
    write(
        tmp_path,
        "all.geojson",
        region("north", name="North", contacts=["situation-room"]),
        feature(
            {"type": "Polygon", "coordinates": area},
            type="site",
            id="pond",
            region="north",
            site_type="reservoir",
        ),
        feature(point(127.05, 37.05), type="site", id="gate", region="north", site_type="dam"),
        feature(
            point(127.01, 37.02),
            type="sensor",
            id="lvl",
            kind="water_level",
            region="north",
            site="pond",
            unit="cm",
            expected_interval="1m",
            min=-50,
            max=250,
            _installer="ACME",
        ),
        feature(type="sensor", id="sw", kind="flood_switch", region="north", unit=""),
        feature(
            type="camera",
            id="cam",
            url="snapshots/cam.jpg",
            region="north",
            site="gate",
            heading=90,
            fov=60.5,
            range=120,
            privacy="blur",
        ),
        feature(type="actuator", id="pump-1", kind="pump", region="north", site="pond"),
    )
    inventory = load_inventory([tmp_path / "all.geojson"])
    north = inventory.regions["north"]
    assert (north.name, north.contacts, north.polygons) == (
        "North",
        ("situation-room",),
        (tuple(tuple(tuple(p) for p in ring) for ring in SQUARE),),
    )
    pond = inventory.sites["pond"]
    assert (pond.name, pond.lon, pond.lat) == ("pond", pytest.approx(127.1), pytest.approx(37.1))
    assert pond.polygon is not None
    # A site type outside the usual list is allowed when it is not a near miss.
    assert inventory.sites["gate"].site_type == "dam"
    assert inventory.sites["gate"].polygon is None
    assert inventory.sensors["lvl"] == Sensor(
        id="lvl",
        kind="water_level",
        region="north",
        site="pond",
        site_type="reservoir",
        unit="cm",
        name="lvl",
        expected_interval=60.0,
        min=-0.5,
        max=2.5,
        lon=127.01,
        lat=37.02,
    )
    switch = inventory.sensors["sw"]
    assert (switch.site, switch.site_type, switch.unit, switch.min) == (None, None, "", None)
    assert inventory.cameras["cam"] == Camera(
        id="cam",
        url=str(tmp_path / "snapshots" / "cam.jpg"),
        region="north",
        site="gate",
        site_type="dam",
        name="cam",
        heading=90.0,
        fov=60.5,
        range=120.0,
        privacy="blur",
        lon=127.1,
        lat=37.1,
    )
    assert inventory.actuators["pump-1"].site_type == "reservoir"
    assert inventory.summary() == "1 regions, 2 sites, 2 sensors, 1 cameras, 1 actuators"


def test_features_may_be_spread_over_files_in_any_order(tmp_path: Path) -> None:
    write(tmp_path, "a.json", feature(type="sensor", id="s", kind="tilt", region="r", site="x"))
    write(tmp_path, "b.geojson", feature(type="site", id="x", region="r", site_type="river"))
    write(tmp_path, "c.geojson", region("r", name="R"))
    (tmp_path / "notes.txt").write_text("not an inventory file")
    inventory = load_inventory([tmp_path])
    assert inventory.sensors["s"].site_type == "river"


@pytest.fixture(scope="module")
def cameras_100k() -> str:
    """An inventory of one region and 100,000 cameras, written over many lines."""
    features = [
        {
            "type": "Feature",
            "properties": {"type": "region", "id": "r", "name": "R"},
            "geometry": {"type": "Polygon", "coordinates": SQUARE},
        }
    ]
    for i in range(100_000):
        props = {
            "type": "camera",
            "id": f"cam-{i}",
            "url": f"rtsp://10.0.{i // 256 % 256}.{i % 256}/stream1",
            "region": "r",
            "heading": i % 360,
            "fov": 90,
            "range": 150,
        }
        features.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Point", "coordinates": [127 + i / 1e6, 37 + i / 1e6]},
            }
        )
    return json.dumps({"type": "FeatureCollection", "features": features}, indent=1)


def test_100k_cameras_load_in_reasonable_time(tmp_path: Path, cameras_100k: str) -> None:
    path = tmp_path / "cameras.geojson"
    path.write_text(cameras_100k)
    started = time.perf_counter()
    inventory = load_inventory([path])
    elapsed = time.perf_counter() - started
    assert len(inventory.cameras) == 100_000
    # About 1.5 s on a laptop; the bound only catches something gone badly wrong.
    assert elapsed < 30, f"loading 100,000 cameras took {elapsed:.1f}s"


def test_a_mistake_deep_in_a_big_file_is_found_quickly(tmp_path: Path, cameras_100k: str) -> None:
    # Camera 99,000 gets a heading of 400 degrees.
    at = cameras_100k.index('"heading": ', cameras_100k.index('"cam-99000"'))
    offset = at + len('"heading": ')
    end = cameras_100k.index(",", offset)
    text = cameras_100k[:offset] + "400" + cameras_100k[end:]
    path = tmp_path / "cameras.geojson"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_inventory([path])
    elapsed = time.perf_counter() - started
    [problem] = caught.value.problems
    line, col = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    assert (problem.line, problem.col) == (line, col)
    assert problem.message == "features[99001].properties.heading: must be from 0 to 360, got 400"
    assert elapsed < 30, f"finding one mistake among 100,000 cameras took {elapsed:.1f}s"
