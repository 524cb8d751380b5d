"""`hub check`: validate the configuration, the inventory and the rules, like a compiler."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from hub.config import ConfigError, HubConfig, Problem, load_config
from hub.config.problems import display_path
from hub.inventory import Inventory, load_inventory
from hub.notify.check import notify_checker
from hub.rules.check import rules_checker

# A further check: given the loaded configuration and inventory (None when the inventory
# has problems of its own), it returns its problems. Rule validation registers here, so
# that one `hub check` reports the config, the inventory and every rule file together.
Checker = Callable[[HubConfig, Inventory | None], list[Problem]]
CHECKERS: list[Checker] = [rules_checker, notify_checker]


def run_checks(
    config_file: Path | None,
    *,
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> tuple[list[Problem], str]:
    """Every problem found, sorted by file and position, and a one-line summary."""
    try:
        config = load_config(config_file, mqtt_url=mqtt_url, influx_url=influx_url, env=env)
    except ConfigError as exc:
        # Without a valid config the inventory and rules cannot be found.
        return exc.problems, ""
    problems: list[Problem] = []
    inventory: Inventory | None = None
    try:
        inventory = load_inventory(config.inventory)
    except ConfigError as exc:
        problems.extend(exc.problems)
    for checker in CHECKERS:
        problems.extend(checker(config, inventory))
    source = display_path(config.source) if config.source else "defaults"
    counts = inventory.summary() if inventory else "no inventory"
    summary = f"{source}: ok: {counts}, {len(config.rule_files())} rule files"
    return sorted(problems), summary


def main(args: argparse.Namespace) -> int:
    """Run `hub check`; print problems to stderr and return 1, or a summary and return 0."""
    config_file = Path(args.config) if args.config else None
    problems, summary = run_checks(config_file, mqtt_url=args.mqtt, influx_url=args.influx)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        files = len({p.file for p in problems})
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"hub check: {len(problems)} {noun} in {files} file(s)", file=sys.stderr)
        return 1
    print(summary)
    return 0
