"""`hub replay`: rules over history stored in a real InfluxDB, equal to the live engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from hub.ingest.validate import Reading
from hub.inventory import Inventory, load_inventory
from hub.rules import Engine, Event, RuleSet, check_rules, event_to_dict
from hub.rules.replay import replay, span
from hub.rules.replay_cli import TimeError, add_replay_arguments, parse_time, replay_main
from hub.services import LocalInflux, free_port
from hub.storage.influx import InfluxClient
from hub.storage.line import reading_line
from tests.helpers import influx_write, point, square, write_config, write_site

S = 1_000_000_000
T0 = 1_783_998_000 * S  # 2026-07-14T03:00:00Z
FROM, TO = "2026-07-14T03:00:00Z", "2026-07-14T03:20:00Z"
END = T0 + 20 * 60 * S

RULES = """\
rules:
  - id: flooding
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm, for: 30s}
    clear: {below: 10 cm, for: 1m}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open}
      - notify: {channels: [situation-room]}
    escalate:
      - {after: 2m, unless: acknowledged, notify: {channels: [duty-officer]}}
  - id: silent
    severity: minor
    sensors: [wl-2, wl-3]
    trigger: {missing: 5m}
    actions:
      - notify: {channels: [maintenance]}
  - id: below-zero
    severity: minor
    sensors: [wl-1]
    trigger: {below: 0 m}
"""


def _site() -> dict[str, object]:
    sensor = {"kind": "water_level", "region": "r1", "site": "u1", "expected_interval": "10s"}
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": square(127.0, 37.0),
                "properties": {"type": "region", "id": "r1", "name": "Region one"},
            },
            point("site", 127.01, 37.01, id="u1", region="r1", site_type="underpass"),
            point(
                "actuator", 127.01, 37.01, id="barrier-1", kind="barrier", region="r1", site="u1"
            ),
            *(point("sensor", 127.01, 37.01, id=f"wl-{i}", **sensor) for i in (1, 2, 3)),
        ],
    }


def _history() -> list[tuple[str, float, int]]:
    """wl-1 above 15 cm from 2m to 6m; wl-2 silent from 3m to 12m; wl-3 never heard from."""
    out = [("wl-1", 0.5, T0 - 60 * S), ("wl-1", 0.5, END)]  # outside [from, to)
    for t in range(0, 20 * 60, 10):
        out.append(("wl-1", 0.20 if 120 <= t < 360 else 0.05, T0 + t * S))
    out += [("wl-2", 0.01, T0 + m * 60 * S) for m in (0, 1, 2, 3, *range(12, 20))]
    out.append(("ghost-1", 1.0, T0 + 30 * S))  # a sensor no longer in the inventory
    return out


@pytest.fixture
def setup(tmp_path: Path, influx: LocalInflux, database: str) -> tuple[Path, Inventory, RuleSet]:
    """A config, inventory and rules in tmp_path, and the history stored in `database`."""
    site = write_site(tmp_path / "site", _site())
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(RULES)
    config = write_config(
        tmp_path / "hub.yaml",
        influx={"url": influx.url, "database": database},
        inventory=["site"],
        rules=["rules"],
    )
    lines = b"".join(
        reading_line(sid, "water_level", "r1", "u1", value, ts) for sid, value, ts in _history()
    )
    influx_write(influx.url, database, lines)
    inventory = load_inventory([site])
    rules, problems = check_rules([tmp_path / "rules"], inventory)
    assert rules is not None, problems
    return config, inventory, rules


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    return parser.parse_args(list(argv))


def _live(inventory: Inventory, rules: RuleSet) -> list[Event]:
    """An engine ticked every second, as live, fed the history's readings in range."""
    engine = Engine(rules, inventory)
    readings = sorted(
        (ts, sid, value)
        for sid, value, ts in _history()
        if T0 <= ts < END and sid in inventory.sensors
    )
    events: list[Event] = []
    pending = iter(readings)
    upcoming = next(pending, None)
    for now in range(T0, END + 1, S):
        events += engine.tick(now)
        while upcoming is not None and upcoming[0] == now:
            ts, sid, value = upcoming
            events += engine.on_readings([Reading(inventory.sensors[sid], value, ts)])
            upcoming = next(pending, None)
    return events


def _json(events: list[Event]) -> list[dict[str, Any]]:
    """The events as they come back from JSON (tuples become lists)."""
    found: list[dict[str, Any]] = json.loads(json.dumps([event_to_dict(e) for e in events]))
    return found


def at(seconds: int) -> str:
    """T0 + seconds as RFC 3339."""
    minutes, sec = divmod(seconds, 60)
    return f"2026-07-14T03:{minutes:02d}:{sec:02d}Z"


@pytest.mark.integration
def test_replay_reports_what_the_live_engine_would_have_done(
    setup: tuple[Path, Inventory, RuleSet], capsys: pytest.CaptureFixture[str]
) -> None:
    config, inventory, rules = setup
    assert replay_main(_args("--from", FROM, "--to", TO, "-c", str(config), "--json")) == 0
    doc = json.loads(capsys.readouterr().out)

    flooding, silent, quiet = doc["rules"]
    assert quiet == {"id": "below-zero", "incidents": []}
    [flood] = flooding["incidents"]
    assert (flood["subject"], flood["opened_at"], flood["cleared_at"]) == ("wl-1", at(150), at(420))
    steps = [(a["at"], a["step"], a["kind"], a["params"].get("command")) for a in flood["actions"]]
    assert steps == [
        (at(150), "open", "actuate", "close"),
        (at(150), "open", "notify", None),
        (at(270), "escalate[0]", "notify", None),
        (at(420), "clear", "actuate", "open"),
    ]
    assert flood["actions"][2]["params"]["channels"] == ["duty-officer"]
    # wl-3 was never heard from: missing 5 min after the replay's start, on the clock alone.
    found = [(i["subject"], i["opened_at"], i["cleared_at"]) for i in silent["incidents"]]
    assert found == [("wl-3", at(300), None), ("wl-2", at(480), at(720))]
    assert doc["summary"] == {
        "readings": 120 + 12 + 1,
        "skipped": 1,
        "unknown_sensors": {"ghost-1": 1},
        "without_value": 0,
        "late": 0,
        "incidents_opened": 3,
        "incidents_cleared": 2,
        "open_at_end": 1,
        "actions": 6,
    }
    assert doc["events"] == _json(_live(inventory, rules))


@pytest.mark.integration
def test_the_text_report_names_times_and_actions(
    setup: tuple[Path, Inventory, RuleSet], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    assert replay_main(_args("--from", FROM, "--to", str(END // S), "-c", str(config))) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"replay {FROM} .. {TO}"
    assert out[1] == "flooding: 1 incident"
    assert out[2].startswith(f"  wl-1  opened {at(150)}  cleared {at(420)} (after 4m30s)")
    assert out[3:8] == [
        f"    {at(150)}  open: actuate close -> barrier-1",
        f"    {at(150)}  open: notify situation-room: 'flooding (severe, active)'",
        f"    {at(270)}  updated: escalate[0], severity severe",
        f"    {at(270)}  escalate[0]: notify duty-officer: 'flooding (severe, active)'",
        f"    {at(420)}  clear: actuate open -> barrier-1",
    ]
    assert "still open at the end" in out[9]
    assert out[-2] == "no incidents: below-zero"
    assert out[-1] == (
        "readings: 133 read, 1 skipped (1 sensor not in the inventory: ghost-1), 0 late; "
        "incidents: 3 opened, 2 cleared, 1 open at the end; actions: 6"
    )


@pytest.mark.integration
async def test_the_window_size_does_not_change_the_events(
    setup: tuple[Path, Inventory, RuleSet], influx: LocalInflux, database: str
) -> None:
    _, inventory, rules = setup
    client = InfluxClient(influx.url, database)
    try:
        whole = await replay(client, inventory, rules, T0, END)
        windows = await replay(client, inventory, rules, T0, END, window_ns=45 * S)
    finally:
        await client.close()
    assert windows.events == whole.events
    assert windows.readings == whole.readings == 133


@pytest.mark.integration
def test_rules_given_on_the_command_line_replace_the_configs(
    setup: tuple[Path, Inventory, RuleSet], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    only = tmp_path / "only.yaml"
    only.write_text(RULES.split("  - id: silent", maxsplit=1)[0])
    argv = ["--from", FROM, "--to", TO, "-c", str(config), "--rules", str(only), "--json"]
    assert replay_main(_args(*argv)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [rule["id"] for rule in doc["rules"]] == ["flooding"]
    assert doc["summary"]["incidents_opened"] == 1


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "yesterday"], "--from: cannot read 'yesterday' as a time; write it like"),
        (["--from", "2026-07-14T03:00:00"], "has no time zone; add Z for UTC"),
        (["--from", "-6 hours"], "cannot read '-6 hours' as a time before now"),
        (["--from", "-1h", "--to", "-2h"], "--from (-1h) must be before --to (-2h)"),
    ],
)
def test_a_bad_time_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay_main(_args(*argv)) == 2
    assert message in capsys.readouterr().err


def test_invalid_rules_are_reported_with_positions_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_site(tmp_path / "site", _site())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    severity: severe\n    sensors: [wl-1]\n    trigger: {abvoe: 1}\n"
        "  - id: y\n    severity: awful\n    sensors: [wl-9]\n    trigger: {missing: 5m}\n"
    )
    config = write_config(tmp_path / "hub.yaml", inventory=["site"])
    argv = ["--from", FROM, "--to", TO, "-c", str(config), "--rules", str(bad)]
    assert replay_main(_args(*argv)) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"{bad}:5:15: trigger.abvoe: unknown key 'abvoe'") for line in err)
    assert any(line.startswith(f"{bad}:7:15: severity:") for line in err)
    assert any(line.startswith(f"{bad}:8:15: ") and "wl-9" in line for line in err)
    assert err[-1].startswith("hub replay: ")
    assert err[-1].endswith("in the rules; nothing replayed")


@pytest.mark.integration
def test_influxdb_that_does_not_answer_exits_1(
    setup: tuple[Path, Inventory, RuleSet], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    url = f"http://127.0.0.1:{free_port()}"
    assert replay_main(_args("--from", FROM, "--to", TO, "-c", str(config), "--influx", url)) == 1
    assert f"cannot read the history from InfluxDB: InfluxDB at {url}" in capsys.readouterr().err


# -- times ----------------------------------------------------------------------------------------

NOW = 1_800_000_000 * S + 123


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-07-14T03:00:00Z", T0),
        ("2026-07-14t03:00:00z", T0),
        ("2026-07-14T12:00:00+09:00", T0),
        ("2026-07-14T03:00:00.25Z", T0 + S // 4),
        ("1783998000", T0),
        ("1783998000.000000001", T0 + 1),
        ("now", NOW),
        ("-6h", NOW - 6 * 3600 * S),
        ("-30m", NOW - 1800 * S),
        ("-2d", NOW - 2 * 86400 * S),
        ("-1h30m", NOW - 5400 * S),
    ],
)
def test_times(text: str, ns: int) -> None:
    assert parse_time(text, NOW) == ns


@pytest.mark.parametrize("text", ["", "soon", "-", "-x", "2026-13-01T00:00:00Z", "1.2.3"])
def test_times_that_cannot_be_read(text: str) -> None:
    with pytest.raises(TimeError):
        parse_time(text, NOW)


def test_times_before_now_need_no_equals_sign() -> None:
    parser = argparse.ArgumentParser(prog="hub")
    sub = parser.add_subparsers(dest="command", required=True)
    add_replay_arguments(sub.add_parser("replay"))
    args = parser.parse_args(["replay", "--from", "-6h", "--to", "-1h30m", "-c", "x.yaml"])
    assert (args.start, args.end, args.config) == ("-6h", "-1h30m", "x.yaml")
    assert parser.parse_args(["replay", "--from", "-1.5"]).start == "-1.5"


@pytest.mark.integration
def test_an_empty_range_says_so(
    setup: tuple[Path, Inventory, RuleSet], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    argv = ["--from", "2026-07-14T02:00:00Z", "--to", "2026-07-14T02:01:00Z", "-c", str(config)]
    assert replay_main(_args(*argv)) == 0
    out = capsys.readouterr().out.splitlines()
    assert "no readings are stored in this range: check --from, --to and influx.database" in out
    assert out[-1].startswith("readings: 0 read, 0 skipped, 0 late; incidents: 0 opened")


def test_how_long_an_incident_lasted_reads_as_people_write_it() -> None:
    ns = 1_000_000_000
    assert span(754 * ns + 123_456) == "12m34s", "not 754000.123ms"
    assert span(90 * ns + 600_000_000) == "1m31s"
    assert span(250_000_000) == "250ms"
    assert span(3 * 3600 * ns) == "3h"
