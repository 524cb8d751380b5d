"""Numbers in inventory files are finite and in range; a refusal names the key and the range.

Python's json reads NaN, Infinity and -Infinity, and 1e400 as infinity; none may get through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError
from hub.inventory import load_inventory
from tests.inventory.geojson import feature, region, write

SPAN = "must be a finite number from -1e+12 to 1e+12, got "


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a region, as the working folder."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "a-regions.geojson", region("north", name="North"))
    return tmp_path


def sensor(**props: Any) -> dict[str, Any]:
    base = {"type": "sensor", "id": "wl-1", "kind": "water_level", "region": "north"}
    return feature(props.pop("geometry", None), **(base | props))


def camera(**props: Any) -> dict[str, Any]:
    base = {"type": "camera", "id": "cam-1", "url": "rtsp://10.0.0.1/s", "region": "north"}
    return feature(props.pop("geometry", None), **(base | props))


def messages(folder: Path, item: dict[str, Any], raw: str | None = None) -> list[str]:
    """The messages for an inventory of `item`, with "X" in its text replaced by `raw`."""
    text = write(folder, "inv.geojson", item)
    if raw is not None:
        (folder / "inv.geojson").write_text(text.replace('"X"', raw), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_inventory([Path()])
    return [p.message for p in caught.value.problems]


@pytest.mark.parametrize(
    ("item", "raw", "message"),
    [
        (sensor(min="X"), "NaN", "features[0].properties.min: " + SPAN + "nan"),
        (sensor(max="X"), "Infinity", "features[0].properties.max: " + SPAN + "inf"),
        (sensor(min="X"), "-Infinity", "features[0].properties.min: " + SPAN + "-inf"),
        (sensor(max="X"), "1e400", "features[0].properties.max: " + SPAN + "inf"),
        (sensor(max="X"), "1000000000001", "features[0].properties.max: " + SPAN + "1e+12"),
        (
            sensor(max="X"),
            "1" + "0" * 400,
            "features[0].properties.max: " + SPAN + "a number of about 401 digits",
        ),
        (camera(heading="X"), "NaN", "features[0].properties.heading: " + SPAN + "nan"),
        (camera(fov="X"), "Infinity", "features[0].properties.fov: " + SPAN + "inf"),
        (camera(range="X"), "1e400", "features[0].properties.range: " + SPAN + "inf"),
    ],
)
def test_properties_must_be_finite_numbers_in_range(
    folder: Path, item: dict[str, Any], raw: str, message: str
) -> None:
    assert messages(folder, item, raw) == [message]


def test_properties_at_the_limit_are_read(folder: Path) -> None:
    write(folder, "inv.geojson", sensor(min=-1e12, max=1e12), camera(range=1e12))
    inventory = load_inventory([Path()])
    gauge = inventory.sensors["wl-1"]
    assert (gauge.min, gauge.max) == (-1e12, 1e12)
    assert inventory.cameras["cam-1"].range == 1e12


@pytest.mark.parametrize(
    ("coordinates", "message"),
    [
        ("[NaN, 37.1]", "coordinates[0]: longitude must be a finite number, got nan"),
        ("[127.1, 1e400]", "coordinates[1]: latitude must be a finite number, got inf"),
        ("[127.1, 37.1, -Infinity]", "coordinates[2]: altitude must be a finite number, got -inf"),
        (
            f"[{10**400}, 37.1]",
            "coordinates[0]: longitude a number of about 401 digits is outside -180..180",
        ),
    ],
)
def test_positions_must_be_finite(folder: Path, coordinates: str, message: str) -> None:
    item = sensor(geometry={"type": "Point", "coordinates": "X"})
    assert messages(folder, item, coordinates) == ["features[0].geometry." + message]


def test_a_position_with_a_finite_altitude_is_read(folder: Path) -> None:
    item = sensor(geometry={"type": "Point", "coordinates": [127.1, 37.1, -12.5]})
    write(folder, "inv.geojson", item)
    gauge = load_inventory([Path()]).sensors["wl-1"]
    assert (gauge.lon, gauge.lat) == (127.1, 37.1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('"200000d"', "a duration here is at most 3650d, got '200000d'"),
        ("NaN", "a duration here is at most 3650d, got nan"),
        ("Infinity", "a duration here is at most 3650d, got inf"),
        ("1" + "0" * 400, "a duration here is at most 3650d, got a number of about 401 digits"),
    ],
)
def test_durations_have_a_ceiling(folder: Path, raw: str, message: str) -> None:
    found = messages(folder, sensor(expected_interval="X"), raw)
    assert found == ["features[0].properties.expected_interval: " + message]


def test_a_duration_at_the_ceiling_is_read(folder: Path) -> None:
    write(folder, "inv.geojson", sensor(expected_interval="3650d"), camera())
    assert load_inventory([Path()]).sensors["wl-1"].expected_interval == 3650 * 86400


def test_a_number_of_more_digits_than_python_reads_is_a_problem_not_a_crash(
    folder: Path,
) -> None:
    (folder / "b-sensors.geojson").write_text(
        '{"type": "FeatureCollection", "features": [], "x": ' + "9" * 5000 + "}"
    )
    with pytest.raises(ConfigError, match="more than 4300 digits"):
        load_inventory([folder])
