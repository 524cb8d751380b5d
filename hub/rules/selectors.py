"""`sensors:` selectors: by id, kind, region, site and site type, checked against the inventory."""

from __future__ import annotations

from hub.config.problems import KeyPath, did_you_mean
from hub.inventory import SENSOR_KINDS, SITE_TYPES, Sensor
from hub.rules.model import Selector, select
from hub.rules.schema import Ctx, known_names, mapping, names

SELECTOR_KEYS = ("id", "kind", "region", "site", "site_type")
_EXAMPLE = "{kind: water_level, site_type: underpass}"


def _site_types(ctx: Ctx, path: KeyPath, value: object) -> tuple[str, ...] | None:
    found = names(ctx, path, value, "site type")
    if found is None:
        return None
    inv = ctx.inventory
    pool = sorted(set(SITE_TYPES) | ({s.site_type for s in inv.sites.values()} if inv else set()))
    ok = True
    for i, name in enumerate(found):
        if name in pool:
            continue
        hint = did_you_mean(name, pool)
        # The list of site types is open; without an inventory only near misses are typos.
        if inv is not None or hint:
            where = path if isinstance(value, str) else (*path, i)
            ctx.error(where, f"unknown site type {name!r}{hint}")
            ok = False
    return found if ok else None


def parse_selector(ctx: Ctx, path: KeyPath, value: object) -> Selector | None:
    """A selector mapping, or a sensor id or list of ids as a shorthand."""
    inv = ctx.inventory
    if isinstance(value, str | list):
        ids = known_names(ctx, path, value, inv.sensors if inv else None, "sensor id")
        return None if ids is None else Selector(ids=ids)
    data = mapping(ctx, path, value, SELECTOR_KEYS, _EXAMPLE)
    if data is None:
        return None
    if not any(key in data for key in SELECTOR_KEYS):
        if not data:  # otherwise its unknown keys were reported
            ctx.error(path, f"say which sensors, for example {_EXAMPLE}")
        return None
    fields: dict[str, tuple[str, ...]] = {}
    ok = True
    for key, attr, pool, what in (
        ("id", "ids", inv.sensors if inv else None, "sensor id"),
        ("kind", "kinds", SENSOR_KINDS, "sensor kind"),
        ("region", "regions", inv.regions if inv else None, "region"),
        ("site", "sites", inv.sites if inv else None, "site"),
    ):
        if key in data:
            found = known_names(ctx, (*path, key), data[key], pool, what)
            ok = ok and found is not None
            fields[attr] = found or ()
    if "site_type" in data:
        found = _site_types(ctx, (*path, "site_type"), data["site_type"])
        ok = ok and found is not None
        fields["site_types"] = found or ()
    return Selector(**fields) if ok else None


def describe_chain(chain: tuple[Selector, ...]) -> str:
    """The selectors of a chain in words, e.g. "kind water_level, site_type underpass"."""
    parts: list[str] = []
    for sel in chain:
        for label, values in (
            ("id", sel.ids),
            ("kind", sel.kinds),
            ("region", sel.regions),
            ("site", sel.sites),
            ("site_type", sel.site_types),
        ):
            if values:
                parts.append(f"{label} {'/'.join(values)}")
    return ", ".join(parts) or "every sensor"


def selected(ctx: Ctx, path: KeyPath, chain: tuple[Selector, ...]) -> list[Sensor] | None:
    """The sensors picked by `chain`; reports an empty selection. None: no inventory to ask."""
    if ctx.inventory is None:
        return None
    found = select(ctx.inventory.sensors, chain)
    if not found:
        together = " (together with the rule's sensors:)" if len(chain) > 1 else ""
        ctx.error(
            path,
            f"selects no sensor in the inventory{together}: nothing matches "
            f"{describe_chain(chain)}",
        )
    return found


def kinds_of(chain: tuple[Selector, ...], sensors: list[Sensor] | None) -> set[str] | None:
    """The sensor kinds a condition reads: from the inventory, else from `kind:` if given."""
    if sensors is not None:
        return {s.kind for s in sensors}
    declared: set[str] | None = None
    for sel in chain:
        if sel.kinds:
            declared = set(sel.kinds) if declared is None else declared & set(sel.kinds)
    return declared
