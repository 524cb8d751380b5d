"""`hub rules test [PATHS]`: run rule test files and report like a test runner.

Where a test file names no `rules:` or `inventory:` of its own, `--rules` and `--site` are
used, else the `rules:` and `inventory:` of the configuration (`-c`, `$HUB_CONFIG`, or
./hub.yaml). The rules are held to the commands each actuator kind takes from that
configuration's `actuators.commands` (its defaults without one). PATHS default to
`rules/tests/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from hub.config import ConfigError, load_config
from hub.config.paths import collect_files
from hub.config.problems import Problem, display_path
from hub.rules.testing.runner import FileResult, run_file

TEST_SUFFIXES = (".yaml", ".yml")


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `hub rules test`."""
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="rule test files or folders (default: rules/tests/)",
    )
    parser.add_argument(
        "--rules",
        action="append",
        metavar="PATH",
        help="rule files or folders for test files that name none (default: the config's)",
    )
    parser.add_argument(
        "--site",
        action="append",
        metavar="PATH",
        help="inventory files or folders for test files that name none (default: the config's)",
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="hub.yaml (default: $HUB_CONFIG, else ./hub.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")


def _defaults(
    args: argparse.Namespace,
) -> tuple[list[Path] | None, list[Path] | None, Mapping[str, Sequence[str]] | None]:
    """The rules and inventory for test files that name none, and the commands each actuator
    kind takes (the configuration's; None: the defaults)."""
    rules = [Path(p) for p in args.rules] if getattr(args, "rules", None) else None
    site = [Path(p) for p in args.site] if getattr(args, "site", None) else None
    config_file = getattr(args, "config", None)
    try:
        config = load_config(Path(config_file) if config_file else None)
    except ConfigError:
        return rules, site, None  # test files that need the config's paths will say so
    rules = rules if rules is not None else list(config.rules) or None
    site = site if site is not None else list(config.inventory) or None
    return rules, site, config.actuators.commands


def _report(result: FileResult, verbose: bool) -> tuple[int, int]:
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.problems:
        return 0, 1
    passed = sum(r.ok for r in result.results)
    failed = len(result.results) - passed
    if failed or verbose:
        print(f"{display_path(result.path)}: {passed} passed, {failed} failed")
    for r in result.results:
        if r.ok and verbose:
            print(f"  ok    {r.case.name}")
        elif not r.ok:
            print(f"  FAIL  {r.case.name}  ({display_path(result.path)}:{r.case.line})")
            if any(line[:2] in ("- ", "+ ", "  ") for line in r.lines):
                print("        (- expected, + actual)")
            for line in r.lines:
                print(f"        {line}")
    return passed, failed


def test_main(args: argparse.Namespace) -> int:
    """Run `hub rules test`; return 0 when every test passed, else 1."""
    started = time.perf_counter()
    paths = [Path(p) for p in getattr(args, "paths", None) or ["rules/tests"]]
    problems: list[Problem] = []
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem(display_path(path), 0, 0, "no such file or folder"))
        files += collect_files([path], TEST_SUFFIXES)
    for problem in problems:
        print(problem, file=sys.stderr)
    rules, site, commands = _defaults(args)
    passed = failed = 0
    for file in files:
        ok, bad = _report(
            run_file(file, rules=rules, inventory=site, commands=commands),
            getattr(args, "verbose", False),
        )
        passed, failed = passed + ok, failed + bad
    took = time.perf_counter() - started
    if not files and not problems:
        print("hub rules test: no test files found", file=sys.stderr)
        return 1
    print(
        f"hub rules test: {passed} passed, {failed} failed "
        f"in {len(files)} file{'s' if len(files) != 1 else ''} ({took:.2f}s)"
    )
    return 1 if failed or problems or not passed else 0
