"""Rule engine benchmark: readings/s through the pure engine, and the latency from a reading to
the action events it causes, for 1,000 rules over 10,000 sensors built in memory. Not a test:
it prints figures.

    .venv/bin/python bench/rules.py [--readings 1000000] [--batch 1000]

The province: 100 regions of 10 sites; each site has 4 water gauges, 2 flood switches, 2 rain
gauges and 2 inclinometers reporting every 30 s, 2 cameras and 2 barriers. The rules: per
site, a flood rule (`for` + hysteresis clear + three actions + escalation) on its gauges
(600), a tilt rate rule (150), a flood switch rule (100), a slope rule per site with `all`
of a rate and a rain `for` (100); and a `missing` rule per region (50). Every 20th site
floods halfway through, so incidents open and actions are asked for.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

import orjson

from hub.ingest.validate import Reading
from hub.inventory import Actuator, Camera, Inventory, Region, Sensor, Site
from hub.rules import ActionRequested, Engine
from hub.rules.check import check_text

NS = 1_000_000_000
T0 = 1_780_000_000 * NS
KINDS = ["water_level"] * 4 + ["flood_switch"] * 2 + ["rain_rate"] * 2 + ["tilt"] * 2


def province() -> Inventory:
    """100 regions, 1,000 sites, 10,000 sensors, 2,000 cameras, 2,000 barriers."""
    regions, sites, sensors, cameras, actuators = {}, {}, {}, {}, {}
    for g in range(100):
        regions[f"r{g}"] = Region(f"r{g}", f"Region {g}", (), (f"office-{g}",))
        for k in range(10):
            n = g * 10 + k
            sid, lon, lat = f"s{n}", 126.0 + n * 0.002, 37.0 + g * 0.01
            sites[sid] = Site(sid, f"r{g}", "underpass", sid, lon, lat)
            for j, kind in enumerate(KINDS):
                ident = f"{sid}-{kind}-{j}"
                sensors[ident] = Sensor(
                    ident, kind, f"r{g}", sid, "underpass", None, ident, 30.0, None, None,
                    lon, lat,
                )  # fmt: skip
            for j in range(2):
                cameras[f"{sid}-cam{j}"] = Camera(
                    f"{sid}-cam{j}", "file:x.jpg", f"r{g}", sid, "underpass", "", None, None,
                    None, None, lon, lat,
                )  # fmt: skip
                actuators[f"{sid}-bar{j}"] = Actuator(
                    f"{sid}-bar{j}", "barrier", f"r{g}", sid, "underpass", "", lon, lat
                )
    return Inventory(regions, sites, sensors, cameras, actuators)


FLOOD = """  - id: flood-{i}
    severity: severe
    sensors: {{site: s{i}, kind: water_level}}
    trigger: {{above: 15 cm, for: 30s}}
    clear: {{below: 10 cm, for: 5m}}
    actions:
      - actuate: {{actuators: site, kind: barrier, command: close, on_clear: open}}
      - detect: {{cameras: nearest, count: 2, within: 500 m, classes: [person, car]}}
      - notify: {{channels: [room], region_contacts: true}}
    escalate: [{{after: 10m, unless: acknowledged, notify: {{channels: [duty]}}}}]"""
TILT = """  - id: tilt-{i}
    severity: severe
    sensors: {{site: s{site}, kind: tilt}}
    trigger: {{rate: {{rise: 0.5 deg, within: 1h}}}}"""
SWITCH = """  - id: switch-{i}
    severity: severe
    sensors: {{site: s{site}, kind: flood_switch}}
    trigger: {{equals: 1, for: 10s}}
    actions: [{{notify: {{channels: [room]}}}}]"""
SLOPE = """  - id: slope-{i}
    severity: extreme
    per: site
    sensors: {{site: s{site}}}
    all:
      - {{sensors: {{kind: tilt}}, rate: {{rise: 0.5 deg, within: 1h}}}}
      - {{sensors: {{kind: rain_rate}}, above: 30 mm/h, for: 10m}}"""
SILENT = """  - id: silent-{i}
    severity: minor
    sensors: {{region: r{i}, kind: water_level}}
    trigger: {{missing: 5m}}"""


def rule_text() -> str:
    """The 1,000 rules, as a rule file."""
    out = ["rules:"]
    out += [FLOOD.format(i=i) for i in range(600)]
    out += [TILT.format(i=i, site=600 + i) for i in range(150)]
    out += [SWITCH.format(i=i, site=750 + i) for i in range(100)]
    out += [SLOPE.format(i=i, site=850 + i) for i in range(100)]
    out += [SILENT.format(i=i) for i in range(50)]
    return "\n".join(out) + "\n"


def stream(inventory: Inventory, count: int) -> list[Reading]:
    """Each sensor every 30 s, round robin; every 20th site floods from the halfway point."""
    sensors = list(inventory.sensors.values())
    step = 30 * NS // len(sensors)
    normal = {"water_level": 0.05, "flood_switch": 0.0, "rain_rate": 5.0, "tilt": 1.0}
    flooded = {"water_level": 0.25, "flood_switch": 1.0, "rain_rate": 5.0, "tilt": 1.0}

    def value(i: int, s: Sensor) -> float:
        site = int(s.site[1:]) if s.site else 0
        return (flooded if i > count // 2 and site % 20 == 0 else normal)[s.kind]

    return [
        Reading(s, value(i, s), T0 + i * step)
        for i, s in ((i, sensors[i % len(sensors)]) for i in range(count))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--latency-readings", type=int, default=200_000)
    opts = parser.parse_args()

    inventory = province()
    started = time.perf_counter()
    rules, problems = check_text(rule_text(), "bench.yaml", inventory)
    assert rules is not None, problems[:5]
    checked = time.perf_counter() - started
    started = time.perf_counter()
    engine = Engine(rules, inventory)
    built = time.perf_counter() - started
    readings = stream(inventory, opts.readings)
    print(f"{len(rules)} rules over {len(inventory.sensors)} sensors: checked in {checked:.2f}s, "
          f"compiled in {built:.2f}s")  # fmt: skip

    # A service freezes what it built so that full collections do not walk the compiled
    # rules (without this, one reading in 50,000 waits ~70 ms for the collector).
    gc.collect()
    gc.freeze()
    events = 0
    started = time.perf_counter()
    for i in range(0, len(readings), opts.batch):
        events += len(engine.on_readings(readings[i : i + opts.batch]))
    took = time.perf_counter() - started
    gc.unfreeze()
    print(f"throughput: {len(readings) / took:,.0f} readings/s ({len(readings):,} readings in "
          f"batches of {opts.batch}, {events:,} events, {took:.2f}s)")  # fmt: skip

    engine = Engine(rules, inventory)
    readings = stream(inventory, opts.latency_readings)
    every: list[int] = []
    action: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    t0 = clock()
    engine.tick(T0)
    print(f"first tick (starts watching for missing readings): {(clock() - t0) / 1e6:.1f} ms")
    for reading in readings:
        t0 = clock()
        out = engine.on_readings((reading,))
        elapsed = clock() - t0
        every.append(elapsed)
        if any(isinstance(e, ActionRequested) for e in out):
            action.append(elapsed)
    for label, sample in (("reading -> action event", action), ("any reading", every)):
        sample.sort()
        p50 = sample[len(sample) // 2] / 1000
        p99 = sample[int(len(sample) * 0.99)] / 1000
        print(f"latency, {label}: p50 {p50:.1f} us, p99 {p99:.1f} us, "
              f"max {sample[-1] / 1000:.0f} us (n={len(sample):,}, "
              f"mean {statistics.fmean(sample) / 1000:.1f} us)")  # fmt: skip

    gc.unfreeze()
    started = time.perf_counter()
    state = json.dumps(engine.snapshot())
    took = time.perf_counter() - started
    started = time.perf_counter()
    Engine(rules, inventory, json.loads(state))
    restored = time.perf_counter() - started
    print(
        f"snapshot: {len(state) / 1e6:.1f} MB of JSON in {took:.2f}s; restored in {restored:.2f}s"
    )

    # The hub's periodic save: encoded incidents and subjects are kept until they change, so
    # a save costs the state that changed since the last one (here: one second of readings).
    gc.collect()
    gc.freeze()
    saves: list[float] = []
    per_second = readings[-(len(inventory.sensors) // 30) :]
    for second in range(1, 21):
        engine.on_readings([r._replace(ts_ns=r.ts_ns + second * NS) for r in per_second])
        started = time.perf_counter()
        orjson.dumps(engine.snapshot(encoded=True))
        saves.append(time.perf_counter() - started)
    first, rest = saves[0], sorted(saves[1:])
    print(
        f"periodic state save (snapshot + encode, on the event loop in the hub): "
        f"{first * 1000:.1f} ms the first time, then {statistics.median(rest) * 1000:.2f} ms "
        f"median after a second of readings"
    )


if __name__ == "__main__":
    main()
