"""Each type of feature: the properties it takes, their checks, and the fields it yields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hub.config.problems import KeyPath, describe, did_you_mean
from hub.inventory.model import ACTUATOR_KINDS, SENSOR_KINDS, SITE_TYPES
from hub.inventory.reader import Props, centre, point, polygons
from hub.inventory.scene import lines, zones
from hub.units import check_unit, converter

_COMMON = frozenset({"type", "id", "name"})
ALLOWED: dict[str, frozenset[str]] = {
    "region": _COMMON | {"contacts"},
    "site": _COMMON | {"region", "site_type"},
    "sensor": _COMMON | {"kind", "region", "site", "unit", "expected_interval", "min", "max"},
    "camera": _COMMON
    | {
        "url",
        "region",
        "site",
        "heading",
        "fov",
        "range",
        "privacy",
        "substream",
        "zones",
        "lines",
    },
    "actuator": _COMMON | {"kind", "region", "site"},
}
_STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
# The common case, checked without urlsplit, which costs a second per 100,000 cameras.
_STREAM_URL = re.compile(r"(?i)(?:rtsps?|https?)://(?:[^@/\s]*@)?(?:\[[0-9a-f:.]+\]|[^:/\s?#@]+)")

Fields = dict[str, Any]
Parser = Callable[[Props, KeyPath, object], Fields | None]


def _region(r: Props, where: KeyPath, geometry: object) -> Fields | None:
    name = r.text("name", required=True)
    contacts = r.data.get("contacts", [])
    if not isinstance(contacts, list) or not all(isinstance(c, str) for c in contacts):
        r.problem("contacts", f"expected a list of channel names, got {describe(contacts)}")
        contacts = []
    shape = polygons(r.issues, r.file, where, geometry, ("Polygon", "MultiPolygon"))
    if not r.ok or shape is None:
        return None
    return {"name": name, "polygons": shape[1], "contacts": tuple(contacts)}


def _site(r: Props, where: KeyPath, geometry: object) -> Fields | None:
    region = r.ident("region", required=True)
    site_type = r.ident("site_type", required=True)
    if site_type is not None and site_type not in SITE_TYPES:
        # Other types are allowed, but one a letter or two from a known type is a typo.
        hint = did_you_mean(site_type, SITE_TYPES, cutoff=0.8)
        if hint:
            r.problem("site_type", f"unknown site type {site_type!r}{hint}")
    name = r.text("name")
    shape = polygons(r.issues, r.file, where, geometry, ("Point", "Polygon"))
    if not r.ok or shape is None:
        return None
    kind, (polygon,) = shape
    lon, lat = centre(polygon)
    return {
        "region": region,
        "site_type": site_type,
        "name": name,
        "lon": lon,
        "lat": lat,
        "polygon": polygon if kind == "Polygon" else None,
    }


def _place(r: Props, where: KeyPath, geometry: object) -> Fields:
    """What every device has: a region, perhaps a site, a name and a point."""
    fields: Fields = {
        "region": r.ident("region", required=True),
        "site": r.ident("site"),
        "name": r.text("name"),
    }
    lon_lat = point(r.issues, r.file, where, geometry)
    if lon_lat is None:
        r.ok = False
    else:
        fields["lon"], fields["lat"] = lon_lat
    return fields


def _sensor(r: Props, where: KeyPath, geometry: object) -> Fields | None:
    fields = _place(r, where, geometry)
    kind = r.choice("kind", SENSOR_KINDS, "sensor kind")
    unit = r.data.get("unit")
    if unit is not None and not isinstance(unit, str):
        r.problem("unit", f"expected a unit such as 'm' or 'cm', got {describe(unit)}")
        unit = None
    if kind is not None and unit is not None and (why := check_unit(kind, unit)) is not None:
        r.problem("unit", why)
    interval = r.duration("expected_interval")
    low, high = r.number("min"), r.number("max")
    if low is not None and high is not None and low >= high:
        r.problem("max", f"max ({high:g}) must be greater than min ({low:g})")
    if not r.ok or kind is None:
        return None
    # min/max are written in the sensor's own unit but compared with canonical readings.
    convert = converter(kind, unit)
    return fields | {
        "kind": kind,
        "unit": unit,
        "expected_interval": interval,
        "min": None if low is None else convert(low),
        "max": None if high is None else convert(high),
    }


def _camera_url(r: Props, key: str = "url") -> str | None:
    url = r.text(key, required=key == "url")
    if url is None:
        return None
    if _STREAM_URL.match(url):
        return url
    if "://" not in url:
        # A local image or video, for tests and demos; relative to the inventory file.
        return str((r.file.parent / url).resolve())
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return url
    shown = url if parts.password is None else url.replace(parts.password, "***")
    if parts.scheme.lower() not in _STREAM_SCHEMES:
        r.problem(key, f"expected rtsp://, http(s):// or a local file path, got {shown!r}")
        return None
    if not parts.hostname:
        r.problem(key, f"{shown!r} names no host")
        return None
    return url


def _camera(r: Props, where: KeyPath, geometry: object) -> Fields | None:
    fields = _place(r, where, geometry)
    url = _camera_url(r)
    substream = _camera_url(r, "substream")
    heading = r.bounded("heading", 0.0, 360.0)
    fov = r.bounded("fov", 0.0, 360.0, open_low=True)
    reach = r.number("range")
    if reach is not None and reach <= 0:
        r.problem("range", f"must be more than 0 metres, got {reach:g}")
    privacy = r.data.get("privacy")
    if privacy is not None and not isinstance(privacy, bool | str):
        r.problem("privacy", f"expected true, false or a word, got {describe(privacy)}")
    scene = {"zones": zones(r), "lines": lines(r)}
    if not r.ok:
        return None
    return (
        fields
        | scene
        | {
            "url": url,
            "substream": substream,
            "heading": heading,
            "fov": fov,
            "range": reach,
            "privacy": privacy,
        }
    )


def _actuator(r: Props, where: KeyPath, geometry: object) -> Fields | None:
    fields = _place(r, where, geometry)
    kind = r.choice("kind", ACTUATOR_KINDS, "actuator kind")
    if not r.ok:
        return None
    return fields | {"kind": kind}


PARSERS: dict[str, Parser] = {
    "region": _region,
    "site": _site,
    "sensor": _sensor,
    "camera": _camera,
    "actuator": _actuator,
}
