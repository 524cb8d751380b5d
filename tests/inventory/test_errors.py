"""Every kind of inventory mistake, reported at its file:line:col, all in one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError
from hub.inventory import load_inventory
from tests.inventory.geojson import feature, point, pos, region, write


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with two regions and two sites, as the working folder."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "a-regions.geojson", region("north", name="North"), region("south", name="S"))
    write(
        tmp_path,
        "b-sites.geojson",
        feature(type="site", id="n-underpass", region="north", site_type="underpass"),
        feature(type="site", id="s-slope", region="south", site_type="steep_slope"),
    )
    return tmp_path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_inventory(list(paths) or [Path()])
    return [str(p) for p in caught.value.problems]


def sensor(**props: Any) -> dict[str, Any]:
    base = {"type": "sensor", "id": "wl-1", "kind": "water_level", "region": "north"}
    return feature(props.pop("geometry", None), **(base | props))


def camera(**props: Any) -> dict[str, Any]:
    base = {"type": "camera", "id": "cam-1", "url": "rtsp://10.0.0.1/s", "region": "north"}
    return feature(props.pop("geometry", None), **(base | props))


CASES: list[tuple[str, list[Any], list[tuple[str, str]]]] = [
    (
        "unknown feature type",
        [feature(type="sennsor", id="x")],
        [
            (
                '|"sennsor"',
                "features[0].properties.type: unknown feature type 'sennsor', "
                "did you mean 'sensor'?",
            )
        ],
    ),
    (
        "no feature type",
        [feature(id="x")],
        [
            (
                '"properties": |{"id": "x"}',
                "features[0].properties: missing property 'type' "
                "(one of region, site, sensor, camera, actuator)",
            )
        ],
    ),
    (
        "not a feature",
        [
            [1, 2],
            {
                "type": "Featur",
                "properties": {"type": "region", "id": "r", "name": "R"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]},
            },
        ],
        [
            ("|[1, 2]", "features[0]: expected a Feature object, got a list"),
            ('|"Featur"', "features[1].type: expected 'Feature', got 'Featur'"),
        ],
    ),
    (
        "unknown sensor kind",
        [sensor(kind="water_lvl")],
        [
            (
                '|"water_lvl"',
                "features[0].properties.kind: unknown sensor kind 'water_lvl', "
                "did you mean 'water_level'?",
            )
        ],
    ),
    (
        "missing required properties",
        [
            feature(type="sensor", id="s"),
            feature(type="camera", id="c", region="north"),
            feature(type="region", id="r", geometry={"type": "MultiPolygon", "coordinates": []}),
        ],
        [
            (
                '"properties": |{"type": "sensor"',
                "features[0].properties: missing property 'region', which every sensor needs",
            ),
            (
                '"properties": |{"type": "sensor"',
                "features[0].properties: missing property 'kind', which every sensor needs",
            ),
            (
                '"properties": |{"type": "camera"',
                "features[1].properties: missing property 'url', which every camera needs",
            ),
            (
                '"properties": |{"type": "region"',
                "features[2].properties: missing property 'name', which every region needs",
            ),
            (
                '"MultiPolygon", "coordinates": |[]',
                "features[2].geometry.coordinates: expected a list of polygons, got a list",
            ),
        ],
    ),
    (
        "unknown property",
        [sensor(expected_intervall="60s", _notes="kept", colour="red")],
        [
            (
                '|"expected_intervall"',
                "features[0].properties.expected_intervall: unknown "
                "property 'expected_intervall', did you mean 'expected_interval'?",
            ),
            (
                '|"colour"',
                "features[0].properties.colour: unknown property 'colour'; a sensor "
                "takes expected_interval, id, kind, max, min, name, region, site, type, unit "
                "(names starting with '_' are free for notes)",
            ),
        ],
    ),
    (
        "units",
        [
            sensor(id="a", unit="kg"),
            sensor(id="b", unit="furlongs/fortnight"),
            sensor(id="c", kind="flood_switch", unit="m"),
        ],
        [
            (
                '|"kg"',
                "features[0].properties.unit: unit 'kg' does not fit a water_level "
                "sensor, whose readings are in m",
            ),
            (
                '|"furlongs/fortnight"',
                "features[1].properties.unit: unit 'furlongs/fortnight' "
                "does not fit a water_level sensor, whose readings are in m",
            ),
            (
                '"unit": |"m"',
                "features[2].properties.unit: unit 'm' does not fit a "
                "flood_switch, which takes 0/1 and no unit",
            ),
        ],
    ),
    (
        "min and max",
        [sensor(id="a", min=5, max=2), sensor(id="b", min="low")],
        [
            ('"max": |2', "features[0].properties.max: max (2) must be greater than min (5)"),
            ('|"low"', "features[1].properties.min: expected a number, got 'low'"),
        ],
    ),
    (
        "expected interval",
        [sensor(id="a", expected_interval="soon"), sensor(id="b", expected_interval=0)],
        [
            (
                '|"soon"',
                "features[0].properties.expected_interval: cannot read 'soon' as a "
                "duration; write it like 30s, 5m, 1h30m, 250ms or 2d",
            ),
            (
                '"expected_interval": |0',
                "features[1].properties.expected_interval: must be "
                "longer than 0s, got the number 0",
            ),
        ],
    ),
    (
        "ids",
        [sensor(id="a/b"), sensor(id=7)],
        [
            (
                '|"a/b"',
                "features[0].properties.id: 'a/b' cannot be an id: ids have no spaces, "
                "'/', '+' or '#'",
            ),
            (
                '"id": |7',
                "features[1].properties.id: expected text, got the number 7; put it in quotes",
            ),
        ],
    ),
    (
        "references",
        [
            sensor(id="a", region="nort"),
            sensor(id="b", site="n-undrpass"),
            sensor(id="c", region="south", site="n-underpass"),
            camera(region="east"),
        ],
        [
            (
                '|"nort"',
                "features[0].properties.region: unknown region 'nort', did you mean 'north'?",
            ),
            (
                '|"n-undrpass"',
                "features[1].properties.site: unknown site 'n-undrpass', did "
                "you mean 'n-underpass'?",
            ),
            (
                '"south", "site": |"n-underpass"',
                "features[2].properties.site: site "
                "'n-underpass' is in region 'north', but this sensor says region 'south'",
            ),
            (
                '|"east"',
                "features[3].properties.region: unknown region 'east' (there are 2 regions)",
            ),
        ],
    ),
    (
        "coordinates",
        [
            sensor(id="a", geometry=point(37.5, 127.0)),
            sensor(id="b", geometry=point(190.0, 0)),
            sensor(id="c", geometry={"type": "Point", "coordinates": ["127", 37]}),
            sensor(id="d", geometry={"type": "Polygon", "coordinates": []}),
            sensor(id="e", geometry=None) | {"geometry": None},
        ],
        [
            (
                "[37.5, |127.0]",
                "features[0].geometry.coordinates[1]: latitude 127 is outside "
                "-90..90 (GeoJSON writes [lon, lat]: are the two swapped?)",
            ),
            (
                "[|190.0, 0]",
                "features[1].geometry.coordinates[0]: longitude 190 is outside -180..180",
            ),
            (
                '|["127", 37]',
                "features[2].geometry.coordinates: expected a position [lon, lat], got a list",
            ),
            (
                '"type": |"Polygon", "coordinates": []',
                "features[3].geometry.type: expected a Point, got 'Polygon'",
            ),
            (
                '"geometry": |null',
                "features[4].geometry: expected a Point geometry, got nothing (null)",
            ),
        ],
    ),
    (
        "polygons",
        [
            region("open", name="Open")
            | {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
            region("short", name="Short")
            | {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}},
            region("pt", name="Pt") | {"geometry": point()},
        ],
        [
            (
                "[1, 1], |[0, 1]]",
                "features[0].geometry.coordinates[0][3]: a ring must end where it starts",
            ),
            (
                "|[[0, 0], [1, 0], [0, 0]]",
                "features[1].geometry.coordinates[0]: a ring needs 4 "
                "or more positions, the last equal to the first",
            ),
            (
                '"geometry": {"type": |"Point", "coordinates": [127.1, 37.1]}}\n]',
                "features[2].geometry.type: expected a Polygon or MultiPolygon, got 'Point'",
            ),
        ],
    ),
    (
        "cameras",
        [
            camera(id="a", heading=400, fov=0, range=-5),
            camera(id="b", url="ftp://user:pw@host/x", privacy=[1]),
            camera(id="c", url="http:///snap.jpg"),
        ],
        [
            ('"heading": |400', "features[0].properties.heading: must be from 0 to 360, got 400"),
            ('"fov": |0', "features[0].properties.fov: must be more than 0 and at most 360, got 0"),
            ('"range": |-5', "features[0].properties.range: must be more than 0 metres, got -5"),
            (
                '|"ftp://user:pw@host/x"',
                "features[1].properties.url: expected rtsp://, "
                "http(s):// or a local file path, got 'ftp://user:***@host/x'",
            ),
            (
                '"privacy": |[1]',
                "features[1].properties.privacy: expected true, false or a word, got a list",
            ),
            ('|"http:///snap.jpg"', "features[2].properties.url: 'http:///snap.jpg' names no host"),
        ],
    ),
    (
        "actuators and sites",
        [
            feature(type="actuator", id="b1", kind="barier", region="north", site="n-underpass"),
            feature(type="site", id="x", region="north", site_type="underpas"),
            feature(type="site", id="y", region="north", site_type="bridge"),
        ],
        [
            (
                '|"barier"',
                "features[0].properties.kind: unknown actuator kind 'barier', did you "
                "mean 'barrier'?",
            ),
            (
                '|"underpas"',
                "features[1].properties.site_type: unknown site type 'underpas', "
                "did you mean 'underpass'?",
            ),
        ],
    ),
]


@pytest.mark.parametrize(
    ("features", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_kind_of_mistake(
    folder: Path, features: list[Any], expected: list[tuple[str, str]]
) -> None:
    text = write(folder, "inv.geojson", *features)
    want = [f"inv.geojson:{pos(text, marked)}: {message}" for marked, message in expected]
    assert sorted(problems()) == sorted(want)


def test_a_duplicate_id_names_where_the_first_one_is(folder: Path) -> None:
    text = write(folder, "inv.geojson", sensor(id="dup"), sensor(id="dup", kind="tilt"))
    first = pos(text, '"id": |"dup", "kind": "water_level"')
    second = pos(text, '"id": |"dup", "kind": "tilt"')
    assert problems() == [
        f"inv.geojson:{second}: features[1].properties.id: duplicate id 'dup': already the "
        f"id of the sensor at inv.geojson:{first}"
    ]


def test_a_duplicate_across_files_names_the_first_file(folder: Path) -> None:
    text = write(folder, "c.geojson", sensor(id="north"))
    where = pos(text, '"id": |"north"')
    first = pos((folder / "a-regions.geojson").read_text(), '"id": |"north"')
    assert problems() == [
        f"c.geojson:{where}: features[0].properties.id: duplicate id 'north': already the "
        f"id of the region at a-regions.geojson:{first}"
    ]


def test_json_syntax_errors_are_reported_where_json_finds_them(folder: Path) -> None:
    (folder / "bad.geojson").write_text('{"type": "FeatureCollection",\n  "features": [1,,2]}\n')
    assert problems() == ["bad.geojson:2:18: invalid JSON: Expecting value"]


def test_not_a_feature_collection(folder: Path) -> None:
    (folder / "list.json").write_text("[]\n")
    (folder / "typed.json").write_text('{"type": "Feature",\n "features": {}}\n')
    assert problems() == [
        'list.json:1:1: expected a FeatureCollection {"type": "FeatureCollection", '
        '"features": [...]}, got a list',
        "typed.json:1:10: type: expected 'FeatureCollection', got 'Feature'",
        "typed.json:2:14: features: expected a list, got a mapping",
    ]


def test_text_that_is_not_utf8(folder: Path) -> None:
    (folder / "latin.geojson").write_bytes(b'{"type": "FeatureCollection",\n "name": "\xe9"}')
    assert problems() == ["latin.geojson:2:11: not UTF-8 text: invalid continuation byte"]


def test_missing_paths_and_empty_folders(folder: Path) -> None:
    (folder / "empty").mkdir()
    assert problems(Path("nowhere"), Path("empty")) == [
        "empty: no .geojson or .json files in this folder",
        "nowhere: no such file or folder",
    ]


def test_positions_survive_tabs_a_bom_and_one_long_line(folder: Path) -> None:
    text = '\ufeff{"type":\t"FeatureCollection", "features": [{"type": "Feature", "properties":'
    text += '\t{"type": "sensor", "id": "x", "kind": "rain", "region": "north"}, "geometry": '
    text += '{"type": "Point", "coordinates": [127, 37]}}]}'
    (folder / "one.geojson").write_text(text, encoding="utf-8")
    col = text.index('"rain"')  # the BOM is not a column
    assert problems() == [
        f"one.geojson:1:{col}: features[0].properties.kind: unknown sensor kind 'rain', "
        "did you mean 'rain_rate'?"
    ]


def test_a_broken_feature_still_has_its_references_checked(folder: Path) -> None:
    text = write(folder, "inv.geojson", sensor(kind="nope", region="nowhere"))
    kind, region_at = pos(text, '|"nope"'), pos(text, '|"nowhere"')
    assert problems() == [
        f"inv.geojson:{kind}: features[0].properties.kind: unknown sensor kind 'nope' (one "
        "of water_level, flood_switch, rain_rate, rain_total, tilt, displacement, "
        "soil_moisture, battery)",
        f"inv.geojson:{region_at}: features[0].properties.region: unknown region 'nowhere' "
        "(there are 2 regions)",
    ]


def test_a_region_with_problems_is_not_reported_again_as_missing(folder: Path) -> None:
    text = write(folder, "inv.geojson", region("east"), sensor(region="east"))
    where = pos(text, '"properties": |{"type": "region"')
    assert problems() == [
        f"inv.geojson:{where}: features[0].properties: missing property 'name', which every "
        "region needs"
    ]
