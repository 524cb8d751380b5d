"""`hub check` reports a rule's notify channel that is not configured, with its position."""

from __future__ import annotations

from pathlib import Path

from hub.check import run_checks
from tests.helpers import write_config, write_site

RULES = """\
rules:
  - id: flooding
    severity: severe
    sensors: {kind: water_level}
    trigger: {above: 15 cm}
    actions:
      - notify: {channels: [situaton-room, fire-119]}
    escalate:
      - {after: 10m, notify: {channels: [duty-oficer]}}
"""


def test_unknown_channels_are_reported_with_a_suggestion(tmp_path: Path) -> None:
    write_site(tmp_path / "site")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(RULES)
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    config = write_config(
        tmp_path / "hub.yaml",
        inventory=["site/"],
        rules=["rules/"],
        data_dir="var",
        notify={"channels": {"situation-room": hook, "fire-119": hook, "duty-officer": hook}},
    )
    problems, _ = run_checks(config, env={})
    assert [str(p).replace(str(tmp_path) + "/", "") for p in problems] == [
        "rules/flood.yaml:7:29: channel 'situaton-room' is not configured in "
        "notify.channels, did you mean 'situation-room'?",
        "rules/flood.yaml:9:42: channel 'duty-oficer' is not configured in "
        "notify.channels, did you mean 'duty-officer'?",
    ]


def test_the_example_configuration_names_every_channel() -> None:
    repo = Path(__file__).resolve().parents[2]
    problems, summary = run_checks(repo / "hub.yaml", env={})
    assert problems == []
    assert "rule files" in summary
