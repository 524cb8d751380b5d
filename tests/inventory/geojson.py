"""Small GeoJSON inventories for tests, one feature a line, and positions found in them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SQUARE = [[[127.0, 37.0], [127.2, 37.0], [127.2, 37.2], [127.0, 37.2], [127.0, 37.0]]]


def point(lon: float = 127.1, lat: float = 37.1) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def feature(geometry: Any = None, **props: Any) -> dict[str, Any]:
    """A Feature with `props` as its properties (a Point geometry unless told otherwise)."""
    return {
        "type": "Feature",
        "properties": props,
        "geometry": point() if geometry is None else geometry,
    }


def region(ident: str = "north", **props: Any) -> dict[str, Any]:
    return feature({"type": "Polygon", "coordinates": SQUARE}, type="region", id=ident, **props)


def collection(*features: Any) -> str:
    """A FeatureCollection with each feature on a line of its own, from line 2."""
    lines = ",\n".join(json.dumps(f, ensure_ascii=False) for f in features)
    return '{"type": "FeatureCollection", "features": [\n' + lines + "\n]}\n"


def write(folder: Path, name: str, *features: Any) -> str:
    """Write a collection to folder/name and return its text."""
    text = collection(*features)
    (folder / name).write_text(text, encoding="utf-8")
    return text


def pos(text: str, marked: str) -> str:
    """`line:col` of the `|` in `marked`, which must occur exactly once in `text`."""
    needle = marked.replace("|", "")
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    offset = text.index(needle) + marked.index("|")
    line = text.count("\n", 0, offset) + 1
    return f"{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"
