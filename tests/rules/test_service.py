"""Rules in the hub: `hub run` refuses an invalid rule file; a hot reload that fails keeps the
last good rules and says what is wrong; one that succeeds puts the new rules in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import metrics
from hub.app import running
from hub.cli import main
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import eventually, write_config, write_site

GOOD = """
rules:
  - id: flood
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm}
"""
TWO = (
    GOOD
    + """
  - id: rain
    severity: minor
    sensors: [rain-1]
    trigger: {above: 30 mm/h}
"""
)
BROKEN = """
rules:
  - id: flood
    severity: severe
    sensors: [wl-1]
    trigger: {abvoe: 15 cm}
"""


def _config(tmp_path: Path, rules: str, **extra: object) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "flood.yaml").write_text(rules)
    return write_config(
        tmp_path / "hub.yaml",
        inventory=[str(write_site(tmp_path / "site"))],
        rules=[str(folder)],
        data_dir=str(tmp_path / "var"),
        **extra,  # type: ignore[arg-type]
    )


def test_run_refuses_an_invalid_rule_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, BROKEN)
    assert main(["run", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "flood.yaml:6:15: trigger.abvoe: unknown key 'abvoe', did you mean 'above'?" in err
    assert "not starting" in err


@pytest.mark.integration
async def test_hot_reload_keeps_the_last_good_rules_on_error(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    config = load_config(
        _config(
            tmp_path,
            GOOD,
            mqtt={"url": mosquitto.url, "client_id": f"hub-{uid}", "prefix": prefix},
            influx={"url": influx.url, "database": database},
            api={"listen": f"127.0.0.1:{free_port()}"},
        )
    )
    rule_file = tmp_path / "rules" / "flood.yaml"
    async with running(config, load_inventory(config.inventory)) as hub:
        assert [r.id for r in hub.rules.engine.rules.rules] == ["flood"]

        rule_file.write_text(BROKEN)
        problems = await eventually(lambda: hub.rules.reload_problems, "the reload to fail")
        assert any("unknown key 'abvoe', did you mean 'above'?" in p for p in problems)
        assert metrics.RULES_VALID._value.get() == 0
        assert [r.id for r in hub.rules.engine.rules.rules] == ["flood"]
        report = hub.health()
        assert report.rules_loaded == 1
        assert report.rule_errors == problems

        rule_file.write_text(TWO)
        await eventually(lambda: len(hub.rules.engine.rules) == 2, "the new rules in force")
        assert hub.rules.reload_problems == []
        assert metrics.RULES_VALID._value.get() == 1
