"""What every command that runs (`hub run`, `hub detector`, `hub streams`) does first: load
the config and the inventory, say each problem and refuse to start on any, set up logging."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hub.config import ConfigError, HubConfig, load_config
from hub.inventory import Inventory, load_inventory


def not_starting(command: str, exc: ConfigError) -> int:
    """Print each problem, then that `command` does not start; the exit status (1)."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    print(f"{command}: not starting: {len(exc.problems)} problem(s)", file=sys.stderr)
    return 1


def read_config(args: argparse.Namespace) -> HubConfig:
    """The config named by -c (else $HUB_CONFIG or ./hub.yaml), with --mqtt / --influx, and
    --data-dir where the command has it; ConfigError lists every problem."""
    config = load_config(
        Path(args.config) if args.config else None, mqtt_url=args.mqtt, influx_url=args.influx
    )
    if getattr(args, "data_dir", None):
        # A hub that runs with another data folder (`hub demo`) has its evidence there.
        config = config.model_copy(update={"data_dir": Path(args.data_dir)})
    return config


def log_to_stderr(config: HubConfig) -> None:
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def load_for_worker(args: argparse.Namespace, command: str) -> tuple[HubConfig, Inventory] | None:
    """A worker's config and inventory, logging set up; None once the problems are printed."""
    try:
        config = read_config(args)
        inventory = load_inventory(config.inventory)
    except ConfigError as exc:
        not_starting(command, exc)
        return None
    log_to_stderr(config)
    return config, inventory
