"""`hub rules test`: the shipped rule tests pass, failures show a diff, bad files say where."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hub.rules.cli import add_test_arguments
from hub.rules.cli import test_main as run_cli
from hub.rules.testing.runner import relative, run_file
from tests.rules.helpers import ROOT

TEST_FILES = sorted((ROOT / "rules" / "tests").glob("*.yaml"))
SITE = ROOT / "site"
RULE = ROOT / "rules" / "semi_basement.yaml"


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_test_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_shipped_rule_test_passes(path: Path) -> None:
    result = run_file(path)
    assert result.problems == []
    failed = [(r.case.name, r.lines) for r in result.results if not r.ok]
    assert failed == []
    assert result.results


def test_the_docs_example_is_a_shipped_test_that_passes() -> None:
    """docs/rules.md shows rules/tests/walkthrough.yaml as it is: a newcomer's copy works."""
    walkthrough = (ROOT / "rules" / "tests" / "walkthrough.yaml").read_text()
    assert "```yaml\n" + walkthrough + "```" in (ROOT / "docs" / "rules.md").read_text()


def test_every_example_rule_has_a_test() -> None:
    tested = " ".join(p.read_text() for p in TEST_FILES)
    ids = [
        line.split("id:")[1].strip()
        for p in (ROOT / "rules").glob("*.yaml")
        for line in p.read_text().splitlines()
        if line.strip().startswith("- id:")
    ]
    assert ids
    assert [i for i in ids if f"opened: {i}" not in tested] == []


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(f"rules: [{RULE}]\ninventory: [{SITE}]\ntests:\n{body}")
    return path


def test_a_failing_test_prints_a_diff_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
  - name: pump starts late
    rules: [semi-basement-flooding]
    steps:
      - {at: 0s, sensor: suwon-jidong-fs-1, value: 1}
    ignore: [action]
    expect:
      - {at: 10s, opened: semi-basement-flooding, subject: suwon-jidong-fs-1}
""",
    )
    assert run_cli(args(str(path))) == 1
    out = capsys.readouterr().out
    assert "FAIL  pump starts late" in out
    assert "-       10s  opened semi-basement-flooding suwon-jidong-fs-1    (line 11)" in out
    assert "+        0s  opened semi-basement-flooding suwon-jidong-fs-1 severity=extreme" in out
    assert "hub rules test: 0 passed, 1 failed in 1 file" in out


def test_problems_in_a_test_file_are_reported_with_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
  - name: typos
    steps:
      - {at: 0s, sensor: suwon-jidong-fs-9, value: 1}
      - {at: 1m, tick: true, ack: x}
      - {at: soon, tick: true}
    expect:
      - {at: 0s, openned: semi-basement-flooding}
      - {at: 0s, opened: semi-basement-flooding, command: start}
""",
    )
    assert run_cli(args(str(path))) == 1
    err = capsys.readouterr().err
    assert "case.yaml:7:26: tests[0].steps[0].sensor: unknown sensor 'suwon-jidong-fs-9', " in err
    assert "case.yaml:8:9: tests[0].steps[1]: a step needs exactly one of sensor, tick, " in err
    assert "case.yaml:9:14: tests[0].steps[2].at: cannot read 'soon' as a duration" in err
    assert "case.yaml:11:18: tests[0].expect[0].openned: unknown key 'openned', did you " in err
    assert "tests[0].expect[1].command: command: does not apply to opened events" in err


def test_rules_and_inventory_come_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text(
        """
tests:
  - name: switch
    rules: [semi-basement-flooding]
    steps:
      - {at: 0s, sensor: suwon-jidong-fs-1, value: 1}
      - {at: 1m, sensor: suwon-jidong-fs-1, value: 0}
    ignore: [action]
    expect: [{at: 0s, opened: semi-basement-flooding}]
"""
    )
    assert run_cli(args(str(path), "--rules", str(RULE), "--site", str(SITE), "-v")) == 0
    assert "ok    switch" in capsys.readouterr().out


def test_a_test_file_without_rules_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    path = tmp_path / "bare.yaml"
    path.write_text("tests: []\n")
    assert run_cli(args(str(path))) == 1
    err = capsys.readouterr().err
    assert "bare.yaml:1:1: no rules: name them here with rules: [...], or on the command" in err


def test_missing_paths_and_empty_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(args(str(tmp_path / "nope"))) == 1
    assert "nope: no such file or folder" in capsys.readouterr().err
    assert run_cli(args(str(tmp_path))) == 1
    assert "no test files found" in capsys.readouterr().err


def test_relative_times_read_like_durations() -> None:
    s = 1_000_000_000
    assert [relative(x * s) for x in (0, 30, 630, 3600, 3661, 90000)] == [
        "0s", "30s", "10m30s", "1h", "1h1m1s", "1d1h",
    ]  # fmt: skip
    assert relative(s // 4) == "250ms"
