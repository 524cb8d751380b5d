"""`hub check`: the example province passes; a broken copy fails with every problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub import check
from hub.cli import main
from hub.config import HubConfig, Problem, load_config
from hub.inventory import Inventory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUB_CONFIG", "HUB_MQTT_URL", "HUB_INFLUX_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example hub.yaml and site/ as the working folder.

    hub.yaml names rules/, which git does not keep while it is empty; the copy has one.
    """
    shutil.copy(REPO / "hub.yaml", tmp_path / "hub.yaml")
    shutil.copytree(REPO / "site", tmp_path / "site")
    (tmp_path / "rules").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_example_config_loads_clean(copy: Path) -> None:
    config = load_config(Path("hub.yaml"), env={})
    assert config.inventory == (copy / "site",)
    assert config.rules == (copy / "rules",)
    assert config.influx.spool_dir == copy / "var" / "spool"
    assert [(t.name, t.role) for t in config.api.tokens] == [
        ("demo-operator", "operator"),
        ("demo-viewer", "viewer"),
    ]


def test_hub_check_passes_on_the_example(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(copy / "hub.yaml")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        "hub.yaml: ok: 4 regions, 12 sites, 34 sensors, 11 cameras, 11 actuators, 0 rule files\n"
    )


def test_hub_check_reports_config_and_inventory_problems_together(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(copy / "hub.yaml", "  batch_size: 5000", "  batch_sise: 5000")
    edit(copy / "site" / "sensors.geojson", '"kind": "water_level"', '"kind": "water_lvl"')
    edit(copy / "site" / "cameras.geojson", '"fov": 90', '"fov": 900')
    assert main(["check", "-c", "hub.yaml", "--mqtt", "mqtt://flag:1883"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "hub.yaml:22:3: influx.batch_sise: unknown key 'batch_sise', did you mean 'batch_size'?",
        "hub check: 1 problem in 1 file(s)",
    ]


def test_hub_check_reports_every_inventory_problem_sorted(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(copy / "site" / "sensors.geojson", '"kind": "water_level"', '"kind": "water_lvl"')
    edit(copy / "site" / "sensors.geojson", '"unit": "mm/h"', '"unit": "mm"')
    edit(copy / "site" / "cameras.geojson", '"fov": 90', '"fov": 900')
    edit(copy / "site" / "actuators.geojson", '"site": "suwon-jidong-homes"', '"site": "x"')
    assert main(["check", "-c", "hub.yaml"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "site/actuators.geojson:48:17: features[3].properties.site: unknown site 'x' "
        "(there are 12 sites)",
        "site/cameras.geojson:15:16: features[0].properties.fov: must be more than 0 and "
        "at most 360, got 900",
        "site/sensors.geojson:10:17: features[0].properties.kind: unknown sensor kind "
        "'water_lvl', did you mean 'water_level'?",
        "site/sensors.geojson:104:17: features[6].properties.unit: unit 'mm' does not fit a "
        "rain_rate sensor, whose readings are in mm/h",
        "hub check: 4 problems in 3 file(s)",
    ]


def test_a_file_with_problems_of_its_own_hides_nothing_else(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "site" / "extra.geojson").write_text('{"type": "FeatureCollection", "features": [}')
    edit(copy / "site" / "sites.geojson", '"site_type": "river"', '"site_type": "rivr"')
    assert main(["check", "-c", "hub.yaml"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "site/extra.geojson:1:44: invalid JSON: Expecting value",
        "site/sites.geojson:33:22: features[2].properties.site_type: unknown site type "
        "'rivr', did you mean 'river'?",
        "hub check: 2 problems in 2 file(s)",
    ]


def test_further_checkers_run_and_are_reported(
    copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[HubConfig, Inventory | None]] = []

    def rules(config: HubConfig, inventory: Inventory | None) -> list[Problem]:
        seen.append((config, inventory))
        return [Problem("rules/flood.yaml", 4, 3, "trigger.abvoe: unknown key 'abvoe'")]

    monkeypatch.setattr(check, "CHECKERS", [rules])
    assert main(["check", "-c", "hub.yaml"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "rules/flood.yaml:4:3: trigger.abvoe: unknown key 'abvoe'",
        "hub check: 1 problem in 1 file(s)",
    ]
    [(_, inventory)] = seen
    assert inventory is not None
    assert len(inventory.sensors) == 34


def test_hub_check_reads_hub_config(
    copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (copy / "other.yaml").write_text("mqtt: {keepalive: 3 sec}\n")
    monkeypatch.setenv("HUB_CONFIG", "other.yaml")
    assert main(["check"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "other.yaml:1:19: mqtt.keepalive: cannot read '3 sec' as a duration; "
        "write it like 30s, 5m, 1h30m, 250ms or 2d"
    )


def test_removed_keys_are_warnings_that_fail_nothing(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(copy / "hub.yaml", "  keepalive: 30s\n", "  keepalive: 30s\n  qos: 2\n")
    edit(copy / "hub.yaml", "  timeout: 10s\n", "  timeout: 10s\n  create_database: false\n")
    assert main(["check", "-c", "hub.yaml"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "hub.yaml:15:3: warning: mqtt.qos was removed, and is ignored: it was never read: each "
        "subscription and message has the QoS it needs (readings, commands and incidents "
        "QoS 1); delete it (a later release will refuse it)",
        "hub.yaml:26:3: warning: influx.create_database was removed, and is ignored: it was "
        "never read: the hub always asks InfluxDB to create the database and goes on if the "
        "user may not (the database must then exist); delete it (a later release will refuse "
        "it)",
    ]
    assert out.startswith("hub.yaml: ok: ")


def test_hub_check_reports_secrets_whose_variables_are_unset(
    copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(
        copy / "hub.yaml",
        "notify:\n  channels:\n",
        "notify:\n  channels:\n"
        "    city-hook: {type: webhook, url: 'http://127.0.0.1:9/hook', "
        "secret_env: HUB_TEST_HOOK_KEY}\n"
        "    desk-mail:\n"
        "      type: email\n"
        "      to: [desk@example.org]\n"
        "      username: hub\n"
        "      password_env: HUB_TEST_SMTP_PASSWORD\n"
        "    public-feed: {type: cap, url: 'http://127.0.0.1:9/cap', secret_env: HUB_TEST_CAP}\n",
    )
    monkeypatch.delenv("HUB_TEST_HOOK_KEY", raising=False)
    monkeypatch.setenv("HUB_TEST_SMTP_PASSWORD", "")  # empty counts as unset, as for hub run
    monkeypatch.setenv("HUB_TEST_CAP", "set")
    assert main(["check", "-c", "hub.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "hub.yaml:64:76: notify.channels.city-hook.secret_env: the environment variable "
        "HUB_TEST_HOOK_KEY is not set",
        "hub.yaml:69:21: notify.channels.desk-mail.password_env: the environment variable "
        "HUB_TEST_SMTP_PASSWORD is not set",
        "hub check: 2 problems in 1 file(s)",
    ]
    monkeypatch.setenv("HUB_TEST_HOOK_KEY", "k")
    monkeypatch.setenv("HUB_TEST_SMTP_PASSWORD", "p")
    assert main(["check", "-c", "hub.yaml"]) == 0
    assert capsys.readouterr().err == ""


BARRIER_RULE = """rules:
  - id: underpass-flooding
    severity: severe
    sensors: {kind: water_level, site_type: underpass}
    trigger: {above: 15 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: lock, on_clear: open}
"""


def test_hub_check_refuses_a_rule_command_its_actuator_kind_does_not_take(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "rules" / "flood.yaml").write_text(BARRIER_RULE)
    assert main(["check", "-c", "hub.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "rules/flood.yaml:7:60: actions[0].actuate.command: 'lock' is not a command of "
        "barrier; a barrier takes close, open",
        "hub check: 1 problem in 1 file(s)",
    ]
    # A command the configuration adds for the kind is taken.
    with (copy / "hub.yaml").open("a", encoding="utf-8") as f:
        f.write(
            "\nactuators:\n"
            "  commands:\n"
            "    barrier: [close, open, lock]\n"
            "    pump: [start, stop]\n"
            '    siren: ["on", "off"]\n'
            "    sign: [show, clear]\n"
        )
    assert main(["check", "-c", "hub.yaml"]) == 0
    assert capsys.readouterr().out.endswith(", 1 rule files\n")
