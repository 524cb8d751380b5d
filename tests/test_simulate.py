"""`hub simulate`: the storm over the example province, and a scripted scenario, published to
a running hub through a real Mosquitto, every reading valid and stored."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path

import pytest

from hub import metrics
from hub.actuators.jobs import CommandJob
from hub.app import load_rules, running
from hub.cli import main
from hub.config import load_config
from hub.ingest.validate import Reading
from hub.inventory import load_inventory
from hub.mqtt import MqttClient
from hub.rules.engine import Engine
from hub.rules.events import ActionRequested, IncidentOpened
from hub.services import LocalInflux, LocalMosquitto, free_port
from hub.simulate import CALM_S, PEAK_S, RECEDE, Controllers, scripted, storm
from hub.units import converter
from tests.helpers import aquery, eventually, service_sections, write_config

ROOT = Path(__file__).parent.parent
NS = 1_000_000_000


def test_storm_shape_over_the_example_province() -> None:
    inventory = load_inventory([ROOT / "site"])
    steps = list(storm(inventory, speed=60))
    assert {s.sensor for s in steps} == set(inventory.sensors)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    length = 600 / 60
    hold = PEAK_S - 0.45 * length  # the peak is held to last PEAK_S in real time
    above = [
        s.at
        for s in steps
        if s.sensor == "suwon-seryu-wl-1" and s.value is not None and s.value > 0.15
    ]
    assert above[-1] - above[0] > 60  # the underpass rule's `for: 30s` holds, even at speed 60

    def values(kind: str, site_type: str | None, start: float, end: float) -> list[float]:
        return [
            s.value
            for s in steps  # type: ignore[misc]
            if inventory.sensors[s.sensor].kind == kind
            and (site_type is None or inventory.sensors[s.sensor].site_type == site_type)
            and start < s.at <= end
        ]

    def peak(kind: str, site_type: str | None = None) -> list[float]:
        return values(kind, site_type, 0.9 * length, length)

    def after(kind: str, site_type: str | None = None) -> list[float]:
        return values(kind, site_type, RECEDE[1] * length + hold, steps[-1].at)

    assert min(peak("water_level", "underpass")) > 0.15  # above the underpass rule's 15 cm
    assert min(peak("rain_rate")) > 30
    assert set(peak("flood_switch")) == {1.0}
    # The storm passes: below every clear threshold, for longer than the longest `for`.
    assert max(after("water_level", "underpass")) < 0.10
    assert max(after("rain_rate")) < 20
    assert set(after("flood_switch")) == {0.0}
    assert steps[-1].at - RECEDE[1] * length - hold > CALM_S - 10 > 3600
    silent = next(
        s for s in inventory.sensors.values() if s.kind == "water_level" and s.site_type == "river"
    )
    heard = [s.at for s in steps if s.sensor == silent.id]
    gap = max(b - a for a, b in itertools.pairwise(heard))
    assert gap > 300  # the example `missing: 5m` rule notices
    assert heard[-1] == pytest.approx(steps[-1].at, abs=10)  # and it reports again
    for step in steps:
        sensor = inventory.sensors[step.sensor]
        assert step.value is not None
        assert sensor.min is None or step.value >= sensor.min
        assert sensor.max is None or step.value <= sensor.max


def test_every_incident_of_the_storm_clears_and_the_barriers_reopen() -> None:
    """The example rules over the whole storm at the demo's speed, on the readings' own time."""
    inventory = load_inventory([ROOT / "site"])
    engine = Engine(load_rules(load_config(ROOT / "hub.yaml", env={}), inventory), inventory)
    start = 1_800_000_000 * NS
    events = []
    for step in storm(inventory, speed=10):
        now = start + int(step.at * NS)
        sensor = inventory.sensors[step.sensor]
        value = converter(sensor.kind, step.unit or sensor.unit)(step.value or 0.0)
        events += engine.tick(now)
        events += engine.on_readings([Reading(sensor, value, now)])
    events += engine.tick(now + 60 * NS)
    opened = {e.incident.id for e in events if isinstance(e, IncidentOpened)}
    assert len(opened) >= 10  # underpasses, semi-basements, slopes, reservoirs, the silent gauge
    rules_seen = {engine.incident(i).rule for i in opened}  # type: ignore[union-attr]
    assert {"underpass-flooding", "gauge-silent", "semi-basement-flooding"} <= rules_seen
    still_open = [i for i in engine.incidents() if i.state in ("active", "acknowledged")]
    assert still_open == []
    barriers = [
        e.params.get("command")
        for e in events
        if isinstance(e, ActionRequested) and e.kind == "actuate" and e.rule == "underpass-flooding"
    ]
    assert "close" in barriers
    assert "open" in barriers


def test_scripted_scenario_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - {at: soon, sensor: wl-1, value: 1}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: steps\[0\]: cannot read 'soon'"):
        scripted(path)


@pytest.mark.integration
async def test_storm_readings_are_all_valid_and_stored(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    config_path = write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto.url, influx.url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(ROOT / "site")],
        rules=[str(ROOT / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
    )
    config = load_config(config_path)
    rejected_before = _rejected()
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        rc = await asyncio.to_thread(
            main, ["simulate", "storm", "--speed", "300", "--calm", "2s", "-c", str(config_path)]
        )
        assert rc == 0
        expected = len(list(storm(load_inventory(config.inventory), speed=300, calm=2)))
        silent = 1  # one gauge stops reporting at 60% of the storm
        assert expected > len(hub.inventory.sensors) - silent
        await eventually(
            lambda: _count(influx, database, expected),
            f"{expected} readings stored",
            timeout=30,
        )
    # Every generated reading passed validation: none was refused.
    assert _rejected() == rejected_before


def _rejected() -> float:
    return sum(
        sample.value
        for family in metrics.READINGS_REJECTED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def _count(influx: LocalInflux, database: str, want: int) -> bool:
    rows = await aquery(influx.url, database, "SELECT count(value) FROM reading")
    got = int(rows[0]["count"]) if rows else 0  # type: ignore[call-overload]
    assert got <= want
    return got == want


def test_simulate_refuses_a_bad_speed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "storm", "--speed", "0"]) == 2
    assert "--speed must be more than 0" in capsys.readouterr().err


def test_scripted_steps(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        json.dumps(
            {
                "steps": [
                    {"at": "2s", "sensor": "wl-1", "value": 16, "unit": "cm"},
                    {"at": "0s", "sensor": "wl-1", "value": 5, "unit": "cm"},
                ]
            }
        )
    )
    assert [(s.at, s.value) for s in scripted(path)] == [(0.0, 5.0), (2.0, 16.0)]


CLOSE_RULE = """
rules:
  - id: close-seryu
    severity: severe
    sensors: [suwon-seryu-wl-1]
    trigger: {above: 15 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close}
"""


@pytest.mark.integration
async def test_simulated_controllers_complete_the_commands(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "close.yaml").write_text(CLOSE_RULE)
    config = load_config(
        write_config(
            tmp_path / "hub.yaml",
            **service_sections(mosquitto.url, influx.url, prefix, database, uid),
            inventory=[str(ROOT / "site")],
            rules=[str(tmp_path / "rules")],
            api={"listen": f"127.0.0.1:{free_port()}"},
            data_dir=str(tmp_path / "var"),
        )
    )
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        client = MqttClient(
            mosquitto.url, client_id=f"controllers-{uid}", clean_start=True, session_expiry=0
        )
        runner = asyncio.create_task(client.run())
        await client.wait_connected(10)
        controllers = asyncio.create_task(
            Controllers(client, prefix, dict(config.actuators.states), travel_s=0.1).run()
        )
        try:
            body = json.dumps({"value": 20, "unit": "cm"}).encode()
            await client.publish(f"{prefix}/sensors/suwon/suwon-seryu-wl-1", body, qos=1)

            def both_done() -> list[CommandJob] | None:
                done = [j for j in hub.actuators.commands_list() if j.state == "done"]
                return done if len(done) >= 2 else None

            jobs = await eventually(both_done, "both barriers' close commands to be done")
        finally:
            controllers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controllers
            await client.stop()
            await runner
        assert {j.actuator for j in jobs} == {"suwon-seryu-barrier-n", "suwon-seryu-barrier-s"}
        assert {j.action for j in jobs} == {"close"}
        assert not [i for i in hub.rules.engine.incidents() if i.rule == "actuator-command"]
