"""Cameras' zones, lines and substreams in the inventory: read, and every mistake placed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError
from hub.inventory import load_inventory
from hub.inventory.model import Line, Zone
from tests.inventory.geojson import feature, pos, region, write


def camera(**props: Any) -> dict[str, Any]:
    base = {"type": "camera", "id": "cam-1", "url": "rtsp://10.0.0.1/s", "region": "north"}
    return feature(None, **(base | props))


def load(tmp_path: Path, *features: Any) -> tuple[str, Any]:
    write(tmp_path, "a-regions.geojson", region("north", name="North"))
    text = write(tmp_path, "cams.geojson", *features)
    try:
        return text, load_inventory([tmp_path])
    except ConfigError as exc:
        return text, [str(p) for p in exc.problems]


def test_zones_lines_and_substream_are_read(tmp_path: Path) -> None:
    _, inventory = load(
        tmp_path,
        camera(
            substream="rtsp://10.0.0.1/sub",
            zones=[{"id": "ramp", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 0.5]],
                    "loiter": "30s", "crowd": 5},
                   {"id": "kerb-side", "polygon": [[0, 0], [1, 0], [1, 0.2]]}],
            lines=[{"id": "kerb", "points": [[0, 0.6], [1, 0.6]], "in": "right"}],
        ),
    )  # fmt: skip
    cam = inventory.cameras["cam-1"]
    assert cam.substream == "rtsp://10.0.0.1/sub"
    assert cam.zones == (
        Zone("ramp", ((0.1, 0.5), (0.9, 0.5), (0.9, 1.0)), 30.0, 5),
        Zone("kerb-side", ((0.0, 0.0), (1.0, 0.0), (1.0, 0.2))),
    )
    assert cam.lines == (Line("kerb", (0.0, 0.6), (1.0, 0.6), "right"),)


def test_each_mistake_is_placed(tmp_path: Path) -> None:
    text, problems = load(
        tmp_path,
        camera(
            substream="ftp://x/y",
            zones=[{"id": "a", "polygon": [[0.1, 0.5], [1.5, 0.5], [0.9, 1]], "crowd": 0},
                   {"id": "a", "polygon": [[0, 0], [1, 1], [0.5, 0.5]], "loitre": "5s"},
                   {"id": "b", "polygon": [[0, 0], [1, 0]], "loiter": "soon"}],
            lines=[{"id": "l", "points": [[0, 0], [0, 0]], "in": "rigth"}],
        ),
    )  # fmt: skip
    assert isinstance(problems, list)
    at = "cams.geojson:"
    expected = [
        (pos(text, '"substream": |"ftp'), "substream: expected rtsp://, http(s)://"),
        (pos(text, "|[1.5, 0.5]"), "zones[0].polygon[1]: x = 1.5 is outside 0..1"),
        (pos(text, '"crowd": |0'), "zones[0].crowd: expected a number of people from 1"),
        (pos(text, '"id": |"a", "polygon": [[0, 0]'), "zones[1].id: zone id 'a' is used twice"),
        (pos(text, '|"loitre"'), "unknown key 'loitre', did you mean 'loiter'?"),
        (pos(text, '"polygon": |[[0, 0], [1, 0]]'), "zones[2].polygon: expected a list of 3"),
        (pos(text, '"loiter": |"soon"'), "zones[2].loiter:"),
        (pos(text, '"points": |[[0, 0], [0, 0]]'), "lines[0].points: the line's two points"),
        (pos(text, '"in": |"rigth"'), "did you mean 'right'?"),
    ]
    for where, message in expected:
        assert any(f"{at}{where}: " in p and message in p for p in problems), (
            where, message, problems)  # fmt: skip


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        ({"id": "z"}, "expected a list of zones"),
        ([["not", "an", "object"]], "expected a zone object"),
        ([{"polygon": [[0, 0], [1, 0], [1, 1]]}], "a zone needs an id"),
        ([{"id": "z", "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}], "no area"),
    ],
)
def test_zone_shapes_refused(tmp_path: Path, zones: object, message: str) -> None:
    _, problems = load(tmp_path, camera(zones=zones))
    assert isinstance(problems, list)
    assert any(message in p for p in problems), problems
