"""Which cameras or actuators an action means for one subject: at its site, in its region,
the nearest ones, or listed ids."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hub.detection.cameras import match
from hub.inventory.model import Camera
from hub.rules.index import PlacedIndex, placed_index
from hub.rules.model import Targets

_EARTH_M = 6_371_008.8
_MAX_RESOLVED = 200_000


class Placed(Protocol):
    """A camera or an actuator: what target selection needs of it."""

    @property
    def id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Place:
    """Where a subject is: its site and region, and a point to measure distances from."""

    site: str | None
    region: str
    lon: float
    lat: float


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(min(1.0, math.sqrt(a)))


def resolve(targets: Targets, place: Place, pool: Mapping[str, Placed]) -> tuple[str, ...]:
    """The ids of the targets for a subject at `place`, nearest first where it matters."""
    index = placed_index(pool)
    key = (targets, place)
    found = index.resolved.get(key)
    if found is None:
        if len(index.resolved) > _MAX_RESOLVED:
            index.resolved.clear()
        found = index.resolved[key] = _resolve(targets, place, pool, index)
    return found


def _resolve(
    targets: Targets, place: Place, pool: Mapping[str, Placed], index: PlacedIndex
) -> tuple[str, ...]:
    kinds = set(targets.kinds)

    def fits(ident: str) -> bool:
        return not kinds or getattr(pool[ident], "kind", None) in kinds

    if targets.how == "ids":
        return tuple(i for i in targets.ids if i in pool)
    if targets.how == "site":
        if place.site is None:
            return ()
        return tuple(i for i in index.by_site.get(place.site, []) if fits(i))
    if targets.how == "region":
        return tuple(i for i in index.by_region.get(place.region, []) if fits(i))
    ranked = []
    for ident in index.near(place.lon, place.lat, targets.within_m):
        if fits(ident):
            item = pool[ident]
            distance = metres(place.lon, place.lat, item.lon, item.lat)
            if distance <= targets.within_m:
                # A camera that sees the place beats a nearer one looking elsewhere.
                covers = not isinstance(item, Camera) or match(item, place.lon, place.lat).covers
                ranked.append((not covers, distance, ident))
    return tuple(ident for *_, ident in sorted(ranked)[: targets.count])
