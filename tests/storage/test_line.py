"""Line protocol: escaping by example, and round trips of odd names through a real InfluxDB."""

from __future__ import annotations

import itertools
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub.services import LocalInflux
from hub.storage.line import (
    escape_key,
    escape_measurement,
    escape_string,
    format_value,
    point_line,
    reading_line,
    reading_prefix,
)
from tests.helpers import influx_write


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("cpu", "cpu"),
        ("a b,c", "a\\ b\\,c"),
        ("k=v", "k=v"),  # '=' needs no escape in a measurement
        ('say "hi"', 'say\\ "hi"'),
        ("back\\slash", "back\\slash"),
    ],
)
def test_measurement_escaping(name: str, escaped: str) -> None:
    assert escape_measurement(name) == escaped


@pytest.mark.parametrize(
    ("key", "escaped"),
    [("site", "site"), ("a b", "a\\ b"), ("a,b=c", "a\\,b\\=c"), ("ü 1", "ü\\ 1")],
)
def test_key_escaping(key: str, escaped: str) -> None:
    assert escape_key(key) == escaped


def test_string_escaping() -> None:
    assert escape_string('a "quoted" \\ path') == 'a \\"quoted\\" \\\\ path'


@pytest.mark.parametrize(
    "bad",
    ["", "end\\", "a\\,b", "a\\ b", "a\\=b", 'a\\"b', "a\\\\b", "two\nlines", "cr\r"],
)
def test_names_influxdb_would_alter_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        escape_key(bad)


@pytest.mark.parametrize("bad", ["#comment", "\tindent", "\0nul"])
def test_measurements_influxdb_would_skip_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot start"):
        escape_measurement(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (-2.5e-7, "-2.5e-07"),
        (3, "3i"),
        (-(2**63), "-9223372036854775808i"),
        (True, "true"),
        (False, "false"),
        ('a"b\\', '"a\\"b\\\\"'),
    ],
)
def test_field_values(value: float | bool | str, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2**63])
def test_field_values_influxdb_cannot_store(bad: float) -> None:
    with pytest.raises(ValueError):
        format_value(bad)


def test_unsupported_field_type() -> None:
    with pytest.raises(TypeError):
        format_value(None)  # type: ignore[arg-type]


def test_point_line_sorts_tags_and_leaves_out_empty_values() -> None:
    line = point_line("incident", {"rule": "r 1", "region": "", "a": "x"}, {"id": "i1", "n": 2}, 5)
    assert line == b'incident,a=x,rule=r\\ 1 id="i1",n=2i 5\n'
    assert point_line("m", [], {"v": 1.0}) == b"m v=1.0\n"
    with pytest.raises(ValueError, match="at least one field"):
        point_line("m", {}, {})


def test_reading_line_matches_the_general_encoder() -> None:
    fast = reading_line("wl 1", "water_level", "suwon", "", 0.42, 1_700_000_000_000_000_000)
    general = point_line(
        "reading",
        {"sensor": "wl 1", "kind": "water_level", "region": "suwon", "site": ""},
        {"value": 0.42},
        1_700_000_000_000_000_000,
    )
    assert fast == general
    assert (
        fast
        == b"reading,kind=water_level,region=suwon,sensor=wl\\ 1 value=0.42 1700000000000000000\n"
    )
    assert (
        reading_line("s", "k", "r", "x", 1, 7)
        == b"reading,kind=k,region=r,sensor=s,site=x value=1.0 7\n"
    )
    assert reading_prefix("s", "k", "r", "x") is reading_prefix("s", "k", "r", "x")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_reading_line_refuses_what_influxdb_cannot_store(bad: float) -> None:
    with pytest.raises(ValueError):
        reading_line("s", "k", "r", "", bad, 1)


# --- round trips through a real InfluxDB -------------------------------------------------------

_times = itertools.count(1_000_000_000_000)
# Characters that line protocol or InfluxDB treat specially, and some that they do not.
_special = st.sampled_from(list(",= \"\\\t#\0\r\n'ab-é水"))
# Every example writes at a time of its own, so they may share the test's database.
_SHARED_DB = [HealthCheck.function_scoped_fixture]


def _storable(name: str) -> str:
    """`name` made into one the encoder takes: what it refuses is pinned down above."""
    name = name.replace("\n", "").replace("\r", "")
    name = re.sub(r'\\(?=[,= "\\]|$)', r"\\x", name)  # a backslash before an escape
    return name if name and name[0] not in "#\t\0" else f"m{name}"


names = st.one_of(st.text(_special, min_size=1, max_size=8), st.text(min_size=1, max_size=8)).map(
    _storable
)


def _write(url: str, database: str, body: bytes) -> None:
    request = urllib.request.Request(f"{url}/write?db={database}", data=body)
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"InfluxDB refused {body!r}: {exc.read()!r}") from exc


def _point_at(url: str, database: str, ts: int) -> dict[str, object]:
    """The one series that has a point at `ts`, whatever its measurement: name, tags, row."""
    q = f"SELECT * FROM /.*/ WHERE time = {ts} GROUP BY *"
    params = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as resp:
        series = json.load(resp)["results"][0].get("series", [])
    assert len(series) == 1, series
    (found,) = series
    row = dict(zip(found["columns"], found["values"][0], strict=True))
    tags = {k: v for k, v in found.get("tags", {}).items() if v}
    return {"name": found["name"], "tags": tags, "row": row}


@pytest.fixture
def db(influx: LocalInflux, database: str) -> str:
    # A probe at the epoch, far from every point the tests write and look up by time.
    influx_write(influx.url, database, b"probe n=1 1\n")
    return database


@pytest.mark.integration
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(measurement=names, key=names, value=names, field=names, text=st.text(max_size=20))
def test_odd_names_round_trip(
    influx: LocalInflux, db: str, measurement: str, key: str, value: str, field: str, text: str
) -> None:
    assume(len({key, field, "n", "time"}) == 4)
    ts = next(_times)
    try:
        line = point_line(measurement, {key: value}, {field: text, "n": 1.5}, ts)
    except ValueError:
        assume(False)  # refused up front, which the tests above pin down
        return
    _write(influx.url, db, line)
    got = _point_at(influx.url, db, ts)
    assert got["name"] == measurement
    assert got["tags"] == {key: value}
    row = got["row"]
    assert isinstance(row, dict)
    assert (row[field], row["n"]) == (text, 1.5)


@pytest.mark.integration
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sensor=names,
    region=names,
    site=st.one_of(st.just(""), names),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
def test_readings_round_trip(
    influx: LocalInflux, db: str, sensor: str, region: str, site: str, value: float
) -> None:
    ts = next(_times)
    try:
        line = reading_line(sensor, "water_level", region, site, value, ts)
    except ValueError:
        assume(False)
        return
    _write(influx.url, db, line)
    got = _point_at(influx.url, db, ts)
    expected = {"sensor": sensor, "kind": "water_level", "region": region}
    if site:
        expected["site"] = site
    assert (got["name"], got["tags"]) == ("reading", expected)
    row = got["row"]
    assert isinstance(row, dict)
    assert float(row["value"]) == value  # JSON may spell a large float as an integer
