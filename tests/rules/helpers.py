"""A small inventory and shorthands for rule tests: times are whole seconds after T0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hub.ingest.validate import Reading
from hub.inventory import Actuator, Camera, Inventory, Region, Sensor, Site
from hub.rules import Engine, Event, RuleSet, event_to_dict
from hub.rules.check import check_text

S = 1_000_000_000
T0 = 1_780_000_000 * S
ROOT = Path(__file__).resolve().parents[2]


def _sensor(sid: str, kind: str, site: str | None, region: str, interval: float = 30.0) -> Sensor:
    site_type = {"u1": "underpass", "u2": "underpass", "s1": "steep_slope"}.get(site or "")
    return Sensor(
        id=sid,
        kind=kind,
        region=region,
        site=site,
        site_type=site_type,
        unit=None,
        name=sid,
        expected_interval=interval,
        min=None,
        max=None,
        lon=127.0 + len(sid) * 0.0001,
        lat=37.0,
    )


def small_inventory() -> Inventory:
    """Two regions; underpasses u1 (r1) and u2 (r2), a slope s1 (r1); a few devices each."""
    regions = {
        "r1": Region("r1", "Region one", (), ("r1-office",)),
        "r2": Region("r2", "Region two", ()),
    }
    sites = {
        "u1": Site("u1", "r1", "underpass", "Underpass one", 127.0, 37.0),
        "u2": Site("u2", "r2", "underpass", "Underpass two", 127.5, 37.5),
        "s1": Site("s1", "r1", "steep_slope", "Slope one", 127.2, 37.2),
    }
    sensors = [
        _sensor("wl-1", "water_level", "u1", "r1"),
        _sensor("wl-2", "water_level", "u1", "r1"),
        _sensor("fs-1", "flood_switch", "u1", "r1", 60.0),
        _sensor("wl-3", "water_level", "u2", "r2"),
        _sensor("tilt-1", "tilt", "s1", "r1", 60.0),
        _sensor("rain-1", "rain_rate", "s1", "r1", 60.0),
        _sensor("aws-1", "rain_rate", None, "r1", 60.0),
    ]
    cameras = {
        "cam-1": Camera("cam-1", "file:a.jpg", "r1", "u1", "underpass", "cam one", None, None,
                        None, None, 127.0, 37.0),
        "cam-2": Camera("cam-2", "file:b.jpg", "r2", "u2", "underpass", "cam two", None, None,
                        None, None, 127.5, 37.5),
    }  # fmt: skip
    actuators = {
        "barrier-1": Actuator("barrier-1", "barrier", "r1", "u1", "underpass", "b1", 127.0, 37.0),
        "siren-1": Actuator("siren-1", "siren", "r1", "s1", "steep_slope", "s1", 127.2, 37.2),
    }
    return Inventory(regions, sites, {s.id: s for s in sensors}, cameras, actuators)


INVENTORY = small_inventory()


def rules(text: str, inventory: Inventory = INVENTORY) -> RuleSet:
    """Rules from YAML text, which must be valid."""
    found, problems = check_text(text, "test.yaml", inventory)
    assert not problems, "\n".join(str(p) for p in problems)
    assert found is not None
    return found


def problems(
    text: str,
    inventory: Inventory | None = INVENTORY,
    commands: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The problems of YAML rule text, as `line:col: message` strings; `commands` are what
    each actuator kind takes (by default hub.yaml's defaults)."""
    _, found = check_text(text, "test.yaml", inventory, commands)
    return [f"{p.line}:{p.col}: {p.message}" for p in found]


def engine(text: str, inventory: Inventory = INVENTORY) -> Engine:
    """An engine on rules from YAML text."""
    return Engine(rules(text, inventory), inventory)


def r(sensor: str, value: float, t: float, inventory: Inventory = INVENTORY) -> Reading:
    """A reading in canonical units at T0 + t seconds."""
    return Reading(inventory.sensors[sensor], value, T0 + round(t * S))


def at(t: float) -> int:
    """T0 + t seconds, in ns."""
    return T0 + round(t * S)


def brief(events: list[Event]) -> list[tuple[float, str, str, str]]:
    """(seconds, event, rule or action kind, subject or command) for each event."""
    out = []
    for e in events:
        d = event_to_dict(e)
        when = (e.at - T0) / S
        if d["event"] == "action":
            detail = d["params"].get("command") or ",".join(
                d["params"].get("channels") or d["params"].get("cameras") or []
            )
            out.append((when, "action", d["kind"], detail))
        else:
            out.append((when, d["event"], d["incident"]["rule"], d["incident"]["subject"]))
    return out


def feed(eng: Engine, *items: tuple[str, float, float]) -> list[Event]:
    """Feed (sensor, value, t) readings one at a time, ticking to each first."""
    events: list[Event] = []
    for sensor, value, t in items:
        events += eng.tick(at(t))
        events += eng.on_readings([r(sensor, value, t)])
    return events
