"""What the hub knows about the province: regions, sites, and the devices at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

# GeoJSON geometry as tuples: [lon, lat] points, rings of points, polygons of rings (the
# first ring is the outline, the others holes).
LonLat: TypeAlias = tuple[float, float]
Ring: TypeAlias = tuple[LonLat, ...]
Polygon: TypeAlias = tuple[Ring, ...]

SENSOR_KINDS = (
    "water_level",
    "flood_switch",
    "rain_rate",
    "rain_total",
    "tilt",
    "displacement",
    "soil_moisture",
    "battery",
)
ACTUATOR_KINDS = ("barrier", "sign", "siren", "pump")
# The contract's list is open ("..."): other site types are allowed, but a near miss of
# one of these is taken for a typo.
SITE_TYPES = ("underpass", "underground_road", "steep_slope", "reservoir", "semi_basement", "river")


@dataclass(frozen=True, slots=True)
class Region:
    """A city or county: the unit that incidents and alerts are addressed to."""

    id: str
    name: str
    polygons: tuple[Polygon, ...]
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Site:
    """A place that is watched, such as an underpass or a slope; a point or an area."""

    id: str
    region: str
    site_type: str
    name: str
    lon: float
    lat: float
    # Set when the site is drawn as an area; lon/lat is then the outline's centre.
    polygon: Polygon | None = None


@dataclass(frozen=True, slots=True)
class Sensor:
    """A sensor; min and max are in its kind's canonical unit, whatever its own unit."""

    id: str
    kind: str
    region: str
    site: str | None
    site_type: str | None
    unit: str | None
    name: str
    expected_interval: float | None
    min: float | None
    max: float | None
    lon: float
    lat: float


# A point in a camera's image, normalised: x and y from 0 to 1, origin at the top left.
ImagePoint: TypeAlias = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Zone:
    """An area of a camera's image; `loiter` (s) and `crowd` (people) raise events when set."""

    id: str
    polygon: tuple[ImagePoint, ...]
    loiter: float | None = None
    crowd: int | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """A line across a camera's image, crossed `in` towards its `in_side` (seen from a to b)."""

    id: str
    a: ImagePoint
    b: ImagePoint
    in_side: str = "left"  # "left" or "right" of the direction a -> b, in image coordinates


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera; heading and fov in degrees (heading clockwise from north), range in metres."""

    id: str
    url: str
    region: str
    site: str | None
    site_type: str | None
    name: str
    heading: float | None
    fov: float | None
    range: float | None
    privacy: bool | str | None
    lon: float
    lat: float
    # A lower-resolution stream for continuous analysis (hub streams), when the camera has one.
    substream: str | None = None
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Actuator:
    """Something the hub can command: a barrier, a sign, a siren or a pump."""

    id: str
    kind: str
    region: str
    site: str | None
    site_type: str | None
    name: str
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class Inventory:
    """Every feature of the inventory, by id."""

    regions: dict[str, Region] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)
    sensors: dict[str, Sensor] = field(default_factory=dict)
    cameras: dict[str, Camera] = field(default_factory=dict)
    actuators: dict[str, Actuator] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def summary(self) -> str:
        """Counts of each kind of feature, for logs and `hub check`."""
        return (
            f"{len(self.regions)} regions, {len(self.sites)} sites, {len(self.sensors)} sensors, "
            f"{len(self.cameras)} cameras, {len(self.actuators)} actuators"
        )
