"""Look-ups over the inventory that rules do many times: sensors by selector, cameras and
actuators by site, region and position. Built once per inventory and kept while it is used,
so that checking or compiling a thousand rules over ten thousand sensors takes seconds."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from hub.inventory import Sensor

if TYPE_CHECKING:
    from hub.rules.model import Selector

# A degree of latitude is at least this long, anywhere: a safe bound for a first cut.
_M_PER_DEG_LAT = 110_500.0
_KEEP = 4  # inventories (old and new, across a reload) whose indexes are kept

T = TypeVar("T")
_FIELDS = (
    ("ids", "id"),
    ("kinds", "kind"),
    ("regions", "region"),
    ("sites", "site"),
    ("site_types", "site_type"),
)


class _Cache(Generic[T]):
    """Indexes by the identity of the mapping they index, holding it so the id stays valid."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[object, T]] = {}

    def get(self, key: object, make: Any) -> T:
        """The index of `key`, made with `make(key)` on first use."""
        found = self._items.get(id(key))
        if found is not None and found[0] is key:
            return found[1]
        value: T = make(key)
        if len(self._items) >= _KEEP:
            self._items.pop(next(iter(self._items)))
        self._items[id(key)] = (key, value)
        return value


class SensorIndex:
    """Sensors by id, kind, region, site and site type; selections are cached."""

    def __init__(self, sensors: Mapping[str, Sensor]) -> None:
        self.sensors = sensors
        self.order = sorted(sensors)
        self.by: dict[str, dict[str | None, set[str]]] = {attr: {} for attr, _ in _FIELDS}
        for sid, sensor in sensors.items():
            for attr, field in _FIELDS:
                self.by[attr].setdefault(getattr(sensor, field), set()).add(sid)
        self._selections: dict[tuple[Selector, ...], list[Sensor]] = {}

    def select(self, chain: tuple[Selector, ...]) -> list[Sensor]:
        """The sensors that every selector of `chain` picks, sorted by id."""
        found = self._selections.get(chain)
        if found is not None:
            return found
        candidates: set[str] | None = None
        for sel in chain:
            for attr, _ in _FIELDS:
                values = getattr(sel, attr)
                if values:
                    table = self.by[attr]
                    hits = set().union(*(table.get(v, set()) for v in values))
                    candidates = hits if candidates is None else candidates & hits
        ids = self.order if candidates is None else sorted(candidates)
        found = [self.sensors[i] for i in ids]
        self._selections[chain] = found
        return found


class PlacedIndex:
    """Cameras or actuators by site and region, and sorted by latitude for `nearest`."""

    def __init__(self, pool: Mapping[str, Any]) -> None:
        self.pool = pool
        self.by_site: dict[str | None, list[str]] = {}
        self.by_region: dict[str, list[str]] = {}
        for ident in sorted(pool):
            item = pool[ident]
            self.by_site.setdefault(item.site, []).append(ident)
            self.by_region.setdefault(item.region, []).append(ident)
        ranked = sorted((item.lat, ident) for ident, item in pool.items())
        self.lats = [lat for lat, _ in ranked]
        self.ids = [ident for _, ident in ranked]
        # What each (targets, place) resolved to: actions resolve while an incident opens,
        # which should not cost a scan of the province.
        self.resolved: dict[tuple[object, object], tuple[str, ...]] = {}

    def near(self, lon: float, lat: float, metres: float) -> list[str]:
        """Ids of the items that may lie within `metres` of (lon, lat): a cheap first cut."""
        dlat = metres / _M_PER_DEG_LAT
        dlon = dlat / max(math.cos(math.radians(min(abs(lat) + dlat, 89.0))), 1e-6)
        lo = bisect.bisect_left(self.lats, lat - dlat)
        hi = bisect.bisect_right(self.lats, lat + dlat)
        return [i for i in self.ids[lo:hi] if abs(self.pool[i].lon - lon) <= dlon]


_SENSORS: _Cache[SensorIndex] = _Cache()
_PLACED: _Cache[PlacedIndex] = _Cache()


def sensor_index(sensors: Mapping[str, Sensor]) -> SensorIndex:
    """The index of this sensor mapping, built on first use."""
    return _SENSORS.get(sensors, SensorIndex)


def placed_index(pool: Mapping[str, Any]) -> PlacedIndex:
    """The index of this camera or actuator mapping, built on first use."""
    return _PLACED.get(pool, PlacedIndex)
