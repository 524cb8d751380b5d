"""Reading GeoJSON values one at a time, noting each problem and carrying on."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from hub.config.problems import KeyPath, describe, did_you_mean, format_path
from hub.durations import DurationError, parse_duration
from hub.inventory.model import LonLat, Polygon, Ring

# Ids appear in MQTT topics, so they cannot hold a level separator, a wildcard or spaces.
_ID = re.compile(r"[^\s/+#]+")
# Properties anyone may add for their own notes; QGIS adds `fid` on export.
_FREE = frozenset({"description", "notes", "fid"})
# The largest number a property may hold, either side of zero: no sensor limit or camera
# measure comes near it in any unit, and it stays finite through every unit conversion.
MAX_MAGNITUDE = 1e12


def is_id(value: object) -> bool:
    """Whether `value` can be an id."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(slots=True)
class Issue:
    """A problem at a path in a file, positioned once every file has been read."""

    file: Path
    path: KeyPath
    message: str
    at_key: bool = False
    # Another place the message names, such as the first use of a duplicate id.
    ref: tuple[Path, KeyPath] | None = None


class Issues(list[Issue]):
    """The problems of one load, in the order they were found."""

    def add(
        self,
        file: Path,
        path: KeyPath,
        message: str,
        *,
        at_key: bool = False,
        ref: tuple[Path, KeyPath] | None = None,
    ) -> None:
        """Note a problem; the message is prefixed with the path, as in `features[3].id: ...`."""
        where = format_path(path)
        self.append(Issue(file, path, f"{where}: {message}" if where else message, at_key, ref))


class Props:
    """The properties of one feature, read with checks; `ok` turns False on any problem."""

    __slots__ = ("data", "file", "issues", "ok", "path", "what")

    def __init__(
        self, issues: Issues, file: Path, path: KeyPath, data: dict[str, object], what: str
    ) -> None:
        self.issues = issues
        self.file = file
        self.path = path
        self.data = data
        self.what = what
        self.ok = True

    def problem(self, key: str | None, message: str, *, at_key: bool = False) -> None:
        """Note a problem with the property `key` (None: with the properties as a whole)."""
        path = self.path if key is None else (*self.path, key)
        self.issues.add(self.file, path, message, at_key=at_key)
        self.ok = False

    def unknown(self, allowed: frozenset[str]) -> None:
        """Report properties that this type of feature does not take."""
        for key in self.data.keys() - allowed:
            if key in _FREE or key.startswith("_"):
                continue
            hint = did_you_mean(key, allowed) or (
                f"; a {self.what} takes {', '.join(sorted(allowed))} "
                "(names starting with '_' are free for notes)"
            )
            self.problem(key, f"unknown property {key!r}{hint}", at_key=True)

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A string property."""
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(None, f"missing property {key!r}, which every {self.what} needs")
            return None
        if not isinstance(value, str) or not value.strip():
            quote = "; put it in quotes" if isinstance(value, int | float) else ""
            self.problem(key, f"expected text, got {describe(value)}{quote}")
            return None
        return value

    def ident(self, key: str, *, required: bool = False) -> str | None:
        """An id, or a reference to one."""
        value = self.data.get(key)
        if type(value) is str and _ID.fullmatch(value):
            return value  # the common case, without the checks that explain the others
        value = self.text(key, required=required)
        if value is not None and not _ID.fullmatch(value):
            self.problem(key, f"{value!r} cannot be an id: ids have no spaces, '/', '+' or '#'")
            return None
        return value

    def choice(self, key: str, choices: tuple[str, ...], what: str) -> str | None:
        """One of `choices`; a miss suggests the nearest."""
        value = self.text(key, required=True)
        if value is not None and value not in choices:
            hint = did_you_mean(value, choices) or f" (one of {', '.join(choices)})"
            self.problem(key, f"unknown {what} {value!r}{hint}")
            return None
        return value

    def number(self, key: str) -> float | None:
        """A finite number, at most MAX_MAGNITUDE either side of zero."""
        value = self.data.get(key)
        if value is None:
            return None
        # Exact types: a bool is an int, and json gives only int and float for numbers
        # (NaN, Infinity and 1e400 among them).
        if type(value) is not int and type(value) is not float:
            self.problem(key, f"expected a number, got {describe(value)}")
            return None
        if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # NaN is refused here too
            self.problem(
                key,
                f"must be a finite number from {-MAX_MAGNITUDE:g} to {MAX_MAGNITUDE:g}, "
                f"got {_shown(value)}",
            )
            return None
        return float(value)

    def bounded(self, key: str, low: float, high: float, *, open_low: bool = False) -> float | None:
        """A number from `low` to `high` (above `low` when `open_low`)."""
        value = self.number(key)
        if value is not None and (value < low or value > high or (open_low and value == low)):
            span = f"more than {low:g} and at most" if open_low else f"from {low:g} to"
            self.problem(key, f"must be {span} {high:g}, got {value:g}")
            return None
        return value

    def duration(self, key: str) -> float | None:
        """A positive duration such as `60s` or `5m`, in seconds."""
        value = self.data.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise DurationError(f"expected a duration such as 60s, got {describe(value)}")
            seconds = parse_duration(value)
        except DurationError as exc:
            self.problem(key, str(exc))
            return None
        if seconds <= 0:
            self.problem(key, f"must be longer than 0s, got {describe(value)}")
            return None
        return seconds


def _shown(value: float) -> str:
    """A number in a message, short even when it runs to hundreds of digits."""
    return describe(value) if type(value) is int and value.bit_length() > 64 else f"{value:g}"


def _lon_lat(issues: Issues, file: Path, path: KeyPath, value: object) -> LonLat | None:
    # Exact type checks: bool is an int, and this runs once per feature.
    if (
        type(value) is not list
        or not 2 <= len(value) <= 3
        or any(type(v) is not float and type(v) is not int for v in value)
    ):
        issues.add(file, path, f"expected a position [lon, lat], got {describe(value)}")
        return None
    for i, v in enumerate(value):
        # json reads NaN, Infinity and 1e400 as floats; an altitude must be finite too.
        if type(v) is float and not math.isfinite(v):
            what = ("longitude", "latitude", "altitude")[i]
            issues.add(file, (*path, i), f"{what} must be a finite number, got {v:g}")
            return None
    # Compared before float(): a whole number of hundreds of digits has no float.
    lon, lat = value[0], value[1]
    swapped = ""
    if abs(lon) <= 90 < abs(lat) <= 180:
        swapped = " (GeoJSON writes [lon, lat]: are the two swapped?)"
    if not -180 <= lon <= 180:
        issues.add(file, (*path, 0), f"longitude {_shown(lon)} is outside -180..180{swapped}")
        return None
    if not -90 <= lat <= 90:
        issues.add(file, (*path, 1), f"latitude {_shown(lat)} is outside -90..90{swapped}")
        return None
    return float(lon), float(lat)


def _geometry(
    issues: Issues, file: Path, path: KeyPath, geometry: object, types: tuple[str, ...]
) -> tuple[str, object] | None:
    """The geometry's type and coordinates, if it is a GeoJSON object of one of `types`."""
    want = " or ".join(types)
    if not isinstance(geometry, dict):
        issues.add(file, path, f"expected a {want} geometry, got {describe(geometry)}")
        return None
    kind = geometry.get("type")
    if kind not in types:
        hint = did_you_mean(kind, types) if isinstance(kind, str) else ""
        issues.add(file, (*path, "type"), f"expected a {want}, got {describe(kind)}{hint}")
        return None
    if "coordinates" not in geometry:
        issues.add(file, path, "missing 'coordinates'")
        return None
    return str(kind), geometry["coordinates"]


def point(issues: Issues, file: Path, path: KeyPath, geometry: object) -> LonLat | None:
    """The [lon, lat] of a Point geometry."""
    found = _geometry(issues, file, path, geometry, ("Point",))
    if found is None:
        return None
    return _lon_lat(issues, file, (*path, "coordinates"), found[1])


def _polygon(issues: Issues, file: Path, path: KeyPath, value: object) -> Polygon | None:
    if not isinstance(value, list) or not value:
        issues.add(file, path, f"expected a list of rings of positions, got {describe(value)}")
        return None
    rings: list[Ring] = []
    for r, ring in enumerate(value):
        where = (*path, r)
        if not isinstance(ring, list) or len(ring) < 4:
            issues.add(file, where, "a ring needs 4 or more positions, the last equal to the first")
            return None
        points = [_lon_lat(issues, file, (*where, i), p) for i, p in enumerate(ring)]
        if any(p is None for p in points):
            return None
        if points[0] != points[-1]:
            issues.add(file, (*where, len(ring) - 1), "a ring must end where it starts")
            return None
        rings.append(tuple(p for p in points if p is not None))
    return tuple(rings)


def polygons(
    issues: Issues, file: Path, path: KeyPath, geometry: object, types: tuple[str, ...]
) -> tuple[str, tuple[Polygon, ...]] | None:
    """A Polygon or MultiPolygon (or, among `types`, a Point) as its type and polygons."""
    found = _geometry(issues, file, path, geometry, types)
    if found is None:
        return None
    kind, coordinates = found
    where = (*path, "coordinates")
    if kind == "Point":
        lon_lat = _lon_lat(issues, file, where, coordinates)
        return None if lon_lat is None else (kind, (((lon_lat,),),))
    if kind == "Polygon":
        polygon = _polygon(issues, file, where, coordinates)
        return None if polygon is None else (kind, (polygon,))
    if not isinstance(coordinates, list) or not coordinates:
        issues.add(file, where, f"expected a list of polygons, got {describe(coordinates)}")
        return None
    parts = [_polygon(issues, file, (*where, i), p) for i, p in enumerate(coordinates)]
    if any(p is None for p in parts):
        return None
    return kind, tuple(p for p in parts if p is not None)


def centre(polygon: Polygon) -> LonLat:
    """The mean of the outline's corners: near enough the middle for small areas."""
    corners = polygon[0][:-1] or polygon[0]
    return (
        sum(p[0] for p in corners) / len(corners),
        sum(p[1] for p in corners) / len(corners),
    )
