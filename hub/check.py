"""`hub check`: validate the configuration, the inventory and the rules, like a compiler."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel

from hub.api.check import tokens_checker
from hub.config import ConfigError, HubConfig, KeyPath, Problem, format_path, load_config
from hub.config.problems import display_path
from hub.config.yaml_source import source_map
from hub.inventory import Inventory, load_inventory
from hub.notify.check import notify_checker
from hub.rules.check import rules_checker

# A further check: given the loaded configuration and inventory (None when the inventory
# has problems of its own), it returns its problems. Rule validation registers here, so
# that one `hub check` reports the config, the inventory and every rule file together.
Checker = Callable[[HubConfig, Inventory | None], list[Problem]]
CHECKERS: list[Checker] = [rules_checker, notify_checker, tokens_checker]


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
    problems.extend(unset_secrets(config, env))
    problems.extend(config.warnings)
    source = display_path(config.source) if config.source else "defaults"
    counts = inventory.summary() if inventory else "no inventory"
    summary = f"{source}: ok: {counts}, {len(config.rule_files())} rule files"
    return sorted(problems), summary


def _secrets(value: object, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Each `*_env` key in the configuration (the name of the variable that holds a secret)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            if name.endswith("_env") and isinstance(field, str):
                yield (*path, name), field
            else:
                yield from _secrets(field, (*path, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secrets(item, (*path, str(key)))
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from _secrets(item, (*path, i))


def unset_secrets(config: HubConfig, env: Mapping[str, str]) -> list[Problem]:
    """A problem for each secret named in the config (`secret_env`, `password_env`) whose
    environment variable is unset or empty: `hub run` would refuse to start."""
    missing = [(path, name) for path, name in _secrets(config, ()) if not env.get(name)]
    if not missing:
        return []
    file, where = source_map(config.source)
    problems = []
    for path, name in missing:
        pos = where.nearest(path)
        text = f"{format_path(path)}: the environment variable {name} is not set"
        problems.append(Problem(file, pos.line if pos else 0, pos.col if pos else 0, text))
    return problems


def main(args: argparse.Namespace) -> int:
    """Run `hub check`; print problems to stderr and return 1, or a summary and return 0.

    Warnings (keys that were removed) are printed among the problems, and fail nothing."""
    config_file = Path(args.config) if args.config else None
    found, summary = run_checks(config_file, mqtt_url=args.mqtt, influx_url=args.influx)
    for problem in found:
        print(problem, file=sys.stderr)
    problems = [p for p in found if not p.warning]
    if problems:
        files = len({p.file for p in problems})
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"hub check: {len(problems)} {noun} in {files} file(s)", file=sys.stderr)
        return 1
    print(summary)
    return 0
