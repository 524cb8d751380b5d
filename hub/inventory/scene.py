"""A camera's zones and lines: areas and trip lines in its image, for `hub streams`.

They are GeoJSON properties of the camera feature, so that QGIS keeps them as they are:

    "zones": [{"id": "ramp", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]],
               "loiter": "30s", "crowd": 5}],
    "lines": [{"id": "kerb", "points": [[0, 0.6], [1, 0.6]], "in": "right"}]

Coordinates are normalised to the image: x and y from 0 to 1, origin at the top left.
"""

from __future__ import annotations

from hub.config.problems import KeyPath, describe, did_you_mean
from hub.durations import DurationError, parse_duration
from hub.inventory.model import ImagePoint, Line, Zone
from hub.inventory.reader import Props, is_id

_ZONE_KEYS = ("id", "polygon", "loiter", "crowd")
_LINE_KEYS = ("id", "points", "in")
SIDES = ("left", "right")
# More corners than anyone draws by hand; a traced outline of thousands is a mistake.
MAX_CORNERS = 256
MAX_CROWD = 100_000


class _Reader:
    """Notes problems at paths below the camera's properties."""

    def __init__(self, r: Props) -> None:
        self.r = r

    def problem(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.r.issues.add(self.r.file, (*self.r.path, *path), message, at_key=at_key)
        self.r.ok = False

    def items(
        self, key: str, keys: tuple[str, ...], what: str
    ) -> list[tuple[int, dict[str, object]]]:
        """The objects of the list property `key`, each checked for unknown keys and an id."""
        value = self.r.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem((key,), f"expected a list of {what}s, got {describe(value)}")
            return []
        found: list[tuple[int, dict[str, object]]] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.problem(
                    (key, i), f"expected a {what} object {{id, ...}}, got {describe(item)}"
                )
                continue
            for unknown in item.keys() - set(keys):
                hint = did_you_mean(unknown, keys) or f" (a {what} takes {', '.join(keys)})"
                self.problem((key, i, unknown), f"unknown key {unknown!r}{hint}", at_key=True)
            ident = item.get("id")
            if not is_id(ident):
                self.problem(
                    (key, i, "id"),
                    f"a {what} needs an id without spaces, '/', '+' or '#', got {describe(ident)}",
                )
                continue
            assert isinstance(ident, str)
            if ident in seen:
                self.problem((key, i, "id"), f"{what} id {ident!r} is used twice in this camera")
                continue
            seen.add(ident)
            found.append((i, item))
        return found

    def point(self, path: KeyPath, value: object) -> ImagePoint | None:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(type(v) is not int and type(v) is not float for v in value)
        ):
            self.problem(path, f"expected a point [x, y] in the image, got {describe(value)}")
            return None
        x, y = float(value[0]), float(value[1])
        for axis, v in (("x", x), ("y", y)):
            if not 0.0 <= v <= 1.0:  # NaN fails this too
                self.problem(
                    path,
                    f"{axis} = {v:g} is outside 0..1: zones and lines are drawn in normalised "
                    "image coordinates (0, 0 top left; 1, 1 bottom right)",
                )
                return None
        return x, y

    def points(self, path: KeyPath, value: object, low: int, high: int) -> list[ImagePoint] | None:
        if not isinstance(value, list) or not low <= len(value) <= high:
            count = f"{low}" if low == high else f"{low} to {high}"
            self.problem(path, f"expected a list of {count} points [x, y], got {describe(value)}")
            return None
        points = [self.point((*path, i), p) for i, p in enumerate(value)]
        if any(p is None for p in points):
            return None
        return [p for p in points if p is not None]


def _area(polygon: list[ImagePoint]) -> float:
    n = len(polygon)
    twice = sum(
        polygon[i][0] * polygon[(i + 1) % n][1] - polygon[(i + 1) % n][0] * polygon[i][1]
        for i in range(n)
    )
    return abs(twice) / 2


def zones(r: Props) -> tuple[Zone, ...]:
    """The camera's `zones`, each checked; problems go to `r`."""
    read = _Reader(r)
    found: list[Zone] = []
    for i, item in read.items("zones", _ZONE_KEYS, "zone"):
        where = ("zones", i)
        polygon = read.points((*where, "polygon"), item.get("polygon"), 3, MAX_CORNERS)
        if polygon and polygon[0] == polygon[-1] and len(polygon) > 3:
            polygon = polygon[:-1]  # a closed ring, as GeoJSON writes them, is the same area
        if polygon is not None and _area(polygon) == 0:
            read.problem((*where, "polygon"), "the polygon has no area: its corners are in a line")
            polygon = None
        loiter = _loiter(read, where, item.get("loiter"))
        crowd = item.get("crowd")
        if crowd is not None and (type(crowd) is not int or not 1 <= crowd <= MAX_CROWD):
            read.problem(
                (*where, "crowd"),
                f"expected a number of people from 1 to {MAX_CROWD}, got {describe(crowd)}",
            )
            crowd = None
        if polygon is not None:
            ident = str(item["id"])
            found.append(
                Zone(ident, tuple(polygon), loiter, crowd if isinstance(crowd, int) else None)
            )
    return tuple(found)


def _loiter(read: _Reader, where: KeyPath, value: object) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise DurationError(f"expected a duration such as 30s, got {describe(value)}")
        seconds = parse_duration(value)
    except DurationError as exc:
        read.problem((*where, "loiter"), str(exc))
        return None
    if seconds <= 0:
        read.problem((*where, "loiter"), f"must be longer than 0s, got {describe(value)}")
        return None
    return seconds


def lines(r: Props) -> tuple[Line, ...]:
    """The camera's `lines`, each checked; problems go to `r`."""
    read = _Reader(r)
    found: list[Line] = []
    for i, item in read.items("lines", _LINE_KEYS, "line"):
        where = ("lines", i)
        ends = read.points((*where, "points"), item.get("points"), 2, 2)
        if ends is not None and ends[0] == ends[1]:
            read.problem((*where, "points"), "the line's two points are the same point")
            ends = None
        side = item.get("in", "left")
        if side not in SIDES:
            hint = did_you_mean(side, SIDES) if isinstance(side, str) else ""
            read.problem(
                (*where, "in"),
                f"expected 'left' or 'right' (the side of the line, walking from its first "
                f"point to its second, that counts as in), got {describe(side)}{hint}",
            )
            continue
        if ends is not None:
            found.append(Line(str(item["id"]), ends[0], ends[1], str(side)))
    return tuple(found)
