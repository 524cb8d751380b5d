"""Camera selection: the nearest cameras that see a point, found through a uniform lat/lon grid.

Ranking, best first, among the cameras within `within_m` of the point:

1. cameras that cover the point come before those that do not, whatever the distances;
2. then nearer before farther (great-circle distance on the WGS 84 mean sphere);
3. at equal distance, a camera with a view sector before an omnidirectional one (a sector
   that contains the point was aimed at it; a PTZ camera still has to be turned);
4. then by camera id, so that the answer never depends on the inventory's order.

A camera covers the point when the point lies within its `range` (no range: any distance)
and, if it has both `heading` and `fov`, within heading ± fov/2 as seen from the camera. A
camera without heading or fov, or with fov >= 360, counts as omnidirectional.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hub.inventory.model import Camera

EARTH_RADIUS_M = 6_371_008.8  # mean radius of the WGS 84 ellipsoid
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


@dataclass(frozen=True, slots=True)
class CameraMatch:
    """A camera near a point: its distance, the bearing from it to the point, and coverage."""

    camera: Camera
    distance_m: float
    bearing_deg: float  # from the camera to the point, clockwise from north, in [0, 360)
    covers: bool

    @property
    def directional(self) -> bool:
        """Whether the camera has a view sector (heading and fov below 360 degrees)."""
        return _directional(self.camera)


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial bearing from the first point to the second, clockwise from north, in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def angle_between(a: float, b: float) -> float:
    """The smaller angle between two bearings in degrees, in [0, 180]; 359 and 1 are 2 apart."""
    d = abs(a - b) % 360.0
    return 360.0 - d if d > 180.0 else d


def _directional(camera: Camera) -> bool:
    return camera.heading is not None and camera.fov is not None and camera.fov < 360.0


def match(camera: Camera, lon: float, lat: float) -> CameraMatch:
    """How `camera` relates to the point: distance, bearing and whether it covers the point."""
    dist = distance_m(camera.lon, camera.lat, lon, lat)
    bearing = bearing_deg(camera.lon, camera.lat, lon, lat)
    covers = camera.range is None or dist <= camera.range
    # A point under the camera has no bearing; it is in view whichever way the camera looks.
    if covers and _directional(camera) and dist > 0.0:
        assert camera.heading is not None and camera.fov is not None  # noqa: PT018
        covers = angle_between(bearing, camera.heading) <= camera.fov / 2.0
    return CameraMatch(camera, dist, bearing, covers)


def rank_key(m: CameraMatch) -> tuple[bool, float, bool, str]:
    """The sort key of the documented ranking: smaller is better."""
    return (not m.covers, m.distance_m, not m.directional, m.camera.id)


def scan(
    cameras: Iterable[Camera],
    lon: float,
    lat: float,
    *,
    count: int = 3,
    within_m: float = 300.0,
    where: Callable[[Camera], bool] | None = None,
) -> list[CameraMatch]:
    """`CameraIndex.nearest` by looking at every camera: the reference for small inventories."""
    found = [match(c, lon, lat) for c in cameras if where is None or where(c)]
    return sorted((m for m in found if m.distance_m <= within_m), key=rank_key)[:count]


class CameraIndex:
    """Cameras bucketed in a uniform grid of lat/lon cells, for nearest-camera queries."""

    def __init__(self, cameras: Iterable[Camera], *, cell_m: float = 250.0) -> None:
        if cell_m <= 0:
            raise ValueError(f"cell_m must be positive, got {cell_m}")
        # Cells are square in degrees, so they narrow towards the poles; a query there simply
        # spans more longitude cells.
        self._step = cell_m / _M_PER_DEG
        self._columns = math.ceil(360.0 / self._step)
        self._cells: dict[tuple[int, int], list[Camera]] = {}
        self._size = 0
        for camera in cameras:
            self._cells.setdefault(self._cell(camera.lon, camera.lat), []).append(camera)
            self._size += 1

    def __len__(self) -> int:
        return self._size

    def _cell(self, lon: float, lat: float) -> tuple[int, int]:
        return math.floor((lon + 180.0) / self._step) % self._columns, math.floor(lat / self._step)

    def _columns_near(self, lon: float, lat: float, within_m: float) -> Iterable[int]:
        angle = within_m / EARTH_RADIUS_M
        # The circle's widest longitude span (exact on a sphere), unless it reaches a pole.
        if angle >= math.pi / 2 - abs(math.radians(lat)):
            return range(self._columns)
        half = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(lat)))))
        first = math.floor((lon - half + 180.0) / self._step)
        last = math.floor((lon + half + 180.0) / self._step)
        if last - first + 1 >= self._columns:
            return range(self._columns)
        # Modulo wraps the antimeridian: a query at 179.999 also looks at -179.999.
        return {i % self._columns for i in range(first, last + 1)}

    def nearest(
        self,
        lon: float,
        lat: float,
        *,
        count: int = 3,
        within_m: float = 300.0,
        where: Callable[[Camera], bool] | None = None,
    ) -> list[CameraMatch]:
        """The best `count` cameras within `within_m` metres of the point, best first."""
        if count <= 0 or within_m < 0:
            return []
        # A hair of slack so that rounding in the degree conversion never drops a camera
        # on the circle's edge; the exact distance test below decides.
        reach = math.degrees(within_m / EARTH_RADIUS_M) * (1 + 1e-9) + 1e-12
        rows = range(
            math.floor((lat - reach) / self._step), math.floor((lat + reach) / self._step) + 1
        )
        found: list[CameraMatch] = []
        for column in self._columns_near(lon, lat, within_m * (1 + 1e-9)):
            for row in rows:
                for camera in self._cells.get((column, row), ()):
                    if where is not None and not where(camera):
                        continue
                    # Most candidates in the cells are outside the circle: skip the bearing.
                    if distance_m(camera.lon, camera.lat, lon, lat) <= within_m:
                        found.append(match(camera, lon, lat))
        found.sort(key=rank_key)
        return found[:count]
