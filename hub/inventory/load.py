"""Load the inventory from GeoJSON files, reporting every problem as `file:line:col: message`.

Files are parsed with the json module, which is fast enough for inventories of 100,000
features; only a file with problems is read again, to find where each problem was written.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hub.config.paths import collect_files
from hub.config.problems import ConfigError, KeyPath, Problem, describe, did_you_mean, display_path
from hub.inventory.features import ALLOWED, PARSERS, Fields
from hub.inventory.model import Actuator, Camera, Inventory, Region, Sensor, Site
from hub.inventory.positions import JsonSourceMap
from hub.inventory.reader import Issues, Props, is_id

INVENTORY_SUFFIXES = (".geojson", ".json")
_DEVICES: tuple[tuple[str, type[Sensor | Camera | Actuator]], ...] = (
    ("sensor", Sensor),
    ("camera", Camera),
    ("actuator", Actuator),
)
# (id, file, path of the feature, fields) of a feature that passed its own checks.
_Parsed = tuple[str, Path, KeyPath, Fields]


def _text_position(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    return line, len(before) - (before.rfind(b"\n") + 1) + 1


def _source_map(path: Path) -> JsonSourceMap:
    """Positions in a JSON file (none if it cannot be read again)."""
    try:
        return JsonSourceMap(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        return JsonSourceMap("")


class _Loader:
    """One load: every file's features, then the references between them."""

    def __init__(self) -> None:
        self.issues = Issues()
        self.problems: list[Problem] = []
        self.ids: dict[str, tuple[str, Path, KeyPath]] = {}
        self.parsed: dict[str, list[_Parsed]] = {kind: [] for kind in PARSERS}
        self.regions: dict[str, Region] = {}
        # (type, file, path of the feature, region, site) of every feature that has a place.
        self.places: list[tuple[str, Path, KeyPath, str | None, str | None]] = []
        self.sites: dict[str, Site] = {}

    def read(self, path: Path) -> None:
        shown = display_path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(shown, 0, 0, f"cannot read: {exc.strerror}"))
            return
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, col = _text_position(raw, exc.start)
            self.problems.append(Problem(shown, line, col, f"not UTF-8 text: {exc.reason}"))
            return
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            self.problems.append(Problem(shown, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}"))
            return
        except ValueError:  # an integer of more digits than Python converts
            self.problems.append(Problem(shown, 1, 1, "a number has more than 4300 digits"))
            return
        self.collection(path, doc)

    def collection(self, file: Path, doc: object) -> None:
        if not isinstance(doc, dict):
            shape = '{"type": "FeatureCollection", "features": [...]}'
            self.issues.add(file, (), f"expected a FeatureCollection {shape}, got {describe(doc)}")
            return
        if doc.get("type") != "FeatureCollection":
            got = describe(doc.get("type"))
            self.issues.add(file, ("type",), f"expected 'FeatureCollection', got {got}")
        features = doc.get("features")
        if not isinstance(features, list):
            self.issues.add(file, ("features",), f"expected a list, got {describe(features)}")
            return
        for i, feature in enumerate(features):
            self.feature(file, ("features", i), feature)

    def feature(self, file: Path, path: KeyPath, feature: object) -> None:
        if not isinstance(feature, dict):
            self.issues.add(file, path, f"expected a Feature object, got {describe(feature)}")
            return
        if feature.get("type") != "Feature":
            got = describe(feature.get("type"))
            self.issues.add(file, (*path, "type"), f"expected 'Feature', got {got}")
        props = feature.get("properties")
        where = (*path, "properties")
        if not isinstance(props, dict):
            self.issues.add(file, where, f"expected an object, got {describe(props)}")
            return
        kind = props.get("type")
        if kind not in PARSERS:
            known = ", ".join(PARSERS)
            if kind is None:
                self.issues.add(file, where, f"missing property 'type' (one of {known})")
            else:
                hint = did_you_mean(kind, PARSERS) or f" (one of {known})"
                self.issues.add(
                    file, (*where, "type"), f"unknown feature type {describe(kind)}{hint}"
                )
            return
        reader = Props(self.issues, file, where, props, kind)
        reader.unknown(ALLOWED[kind])
        ident = reader.ident("id", required=True)
        if ident is not None:
            self.register(kind, ident, file, where)
        fields = PARSERS[kind](reader, (*path, "geometry"), feature.get("geometry"))
        if ident is not None and fields is not None and reader.ok:
            self.parsed[kind].append((ident, file, path, fields))
        if kind != "region":
            # References are checked even for a feature with other problems: all in one pass.
            region = props.get("region")
            site = props.get("site") if kind != "site" else None
            self.places.append(
                (kind, file, path, region if is_id(region) else None, site if is_id(site) else None)
            )

    def register(self, kind: str, ident: str, file: Path, where: KeyPath) -> None:
        first = self.ids.setdefault(ident, (kind, file, (*where, "id")))
        if first[1:] != (file, (*where, "id")):
            self.issues.add(
                file,
                (*where, "id"),
                f"duplicate id {ident!r}: already the id of the {first[0]} at",
                ref=(first[1], first[2]),
            )

    def reference(
        self, file: Path, path: KeyPath, key: str, ident: str, known: dict[str, Any]
    ) -> bool:
        """Whether `ident`, the value of the property `key`, names a `key` that exists."""
        if ident in known:
            return True
        # A feature that had problems of its own is not reported again as missing.
        if self.ids.get(ident, ("",))[0] != key:
            hint = did_you_mean(ident, known) or f" (there are {len(known)} {key}s)"
            self.issues.add(file, (*path, "properties", key), f"unknown {key} {ident!r}{hint}")
        return False

    def build(self, files: tuple[Path, ...]) -> Inventory:
        regions, sites = self.regions, self.sites
        for ident, _, _, fields in self.parsed["region"]:
            regions[ident] = Region(id=ident, **fields)
        for ident, _, _, fields in self.parsed["site"]:
            sites[ident] = Site(id=ident, **(fields | {"name": fields["name"] or ident}))
        for kind, file, path, region, site_id in self.places:
            self.place(kind, file, path, region, site_id)
        devices: dict[str, dict[str, Any]] = {}
        for kind, cls in _DEVICES:
            found = devices[kind] = {}
            for ident, _, _, fields in self.parsed[kind]:
                site = sites.get(fields["site"])
                found[ident] = cls(
                    id=ident,
                    site_type=site.site_type if site else None,
                    **(fields | {"name": fields["name"] or ident}),
                )
        return Inventory(
            regions, sites, devices["sensor"], devices["camera"], devices["actuator"], files
        )

    def place(
        self, kind: str, file: Path, path: KeyPath, region: str | None, site_id: str | None
    ) -> None:
        """Check that a feature's region and site exist, and that the site is in the region."""
        if region is not None:
            self.reference(file, path, "region", region, self.regions)
        if site_id is None or not self.reference(file, path, "site", site_id, self.sites):
            return
        site = self.sites[site_id]
        if region is not None and site.region != region:
            self.issues.add(
                file,
                (*path, "properties", "site"),
                f"site {site.id!r} is in region {site.region!r}, "
                f"but this {kind} says region {region!r}",
            )

    def positioned(self) -> list[Problem]:
        """Every problem, with the line and column where it was written."""
        files = {i.file for i in self.issues} | {i.ref[0] for i in self.issues if i.ref}
        maps = {file: _source_map(file) for file in files}
        problems = list(self.problems)
        for issue in self.issues:
            pos = maps[issue.file].nearest(issue.path, key=issue.at_key)
            text = issue.message
            if issue.ref is not None:
                ref = maps[issue.ref[0]].nearest(issue.ref[1])
                text += f" {display_path(issue.ref[0])}" + (f":{ref.line}:{ref.col}" if ref else "")
            line, col = (pos.line, pos.col) if pos else (0, 0)
            problems.append(Problem(display_path(issue.file), line, col, text))
        return problems


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector, which would otherwise walk the growing heap again and again.

    Loading makes hundreds of thousands of objects and no reference cycles; with the
    collector running, 100,000 features take a third longer to load.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def inventory_files(paths: Iterable[Path]) -> tuple[list[Path], list[Problem]]:
    """The GeoJSON files named by `paths` (folders expanded), and problems with the paths."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        found = collect_files([path], INVENTORY_SUFFIXES)
        if not path.exists():
            problems.append(Problem(display_path(path), 0, 0, "no such file or folder"))
        elif not found:
            problems.append(
                Problem(display_path(path), 0, 0, "no .geojson or .json files in this folder")
            )
        files.extend(found)
    return files, problems


def load_inventory(paths: Iterable[Path]) -> Inventory:
    """Load GeoJSON files and folders into an Inventory, or raise ConfigError with every problem."""
    files, problems = inventory_files(paths)
    loader = _Loader()
    loader.problems.extend(problems)
    with _no_cyclic_gc():
        for file in files:
            loader.read(file)
        inventory = loader.build(tuple(files))
    if loader.problems or loader.issues:
        raise ConfigError(loader.positioned())
    return inventory
