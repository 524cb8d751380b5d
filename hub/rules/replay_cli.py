"""`hub replay --from T --to T`: run the rules over stored readings and report what they
would have done, without sending anything (it never connects to MQTT).

The configuration (`-c`, `$HUB_CONFIG`, or ./hub.yaml; `--influx` and `$HUB_INFLUX_URL`
override its URL) names InfluxDB, the inventory and the rules; `--rules` replaces its rules.
Exit status: 0 with a report, 1 when the configuration, inventory or rules have problems or
InfluxDB cannot be read, 2 for a time that cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from hub.config import ConfigError, HubConfig, Problem, load_config
from hub.durations import DurationError, parse_duration
from hub.inventory import Inventory, load_inventory
from hub.rules.check import check_rules
from hub.rules.model import RuleSet

NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SECONDS = re.compile(r"\d+(\.\d+)?")
# What argparse should read as a value rather than an option: negative numbers (its own
# rule) and times before now.
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(\d+(\.\d+)?(ms|s|m|h|d|w))+$")
_SHAPES = "2026-07-14T03:00:00Z, 2026-07-14T12:00:00+09:00, epoch seconds, now, or -6h"


class TimeError(ValueError):
    """A --from or --to that cannot be read."""


def parse_time(text: str, now_ns: int) -> int:
    """A time as ns since the epoch: RFC 3339, epoch seconds, `now`, or `-DURATION` ago."""
    value = text.strip()
    if value.lower() == "now":
        return now_ns
    if value.startswith("-"):
        try:
            return now_ns - round(parse_duration(value[1:]) * NS)
        except DurationError:
            shapes = "-6h, -30m, -2d or -1h30m"
            raise TimeError(
                f"cannot read {text!r} as a time before now; write it like {shapes}"
            ) from None
    if _EPOCH_SECONDS.fullmatch(value):
        try:
            # Decimal, not float: a float loses the nanoseconds of today's epoch seconds.
            return int(Decimal(value) * NS)
        except InvalidOperation:
            raise TimeError(f"cannot read {text!r} as epoch seconds") from None
    try:
        stamp = datetime.fromisoformat(value.upper())
    except ValueError:
        raise TimeError(f"cannot read {text!r} as a time; write it like {_SHAPES}") from None
    if stamp.tzinfo is None:
        # A time without a zone means different instants on different machines.
        raise TimeError(f"{text!r} has no time zone; add Z for UTC or an offset such as +09:00")
    return (stamp - _EPOCH) // timedelta(microseconds=1) * 1000


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `hub replay`."""
    # argparse takes `-6h` for an unknown option, so `--from -6h` would need `--from=-6h`;
    # this parser has no options that look like times, so such words can only be values.
    parser._negative_number_matcher = _NEGATIVE
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="T",
        help=f"start of the history to replay: {_SHAPES}",
    )
    parser.add_argument(
        "--to", dest="end", default="now", metavar="T", help="end of the history (default: now)"
    )
    parser.add_argument(
        "--rules",
        action="append",
        metavar="PATH",
        help="rule files or folders to run instead of the config's (repeatable)",
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="hub.yaml (default: $HUB_CONFIG, else ./hub.yaml)"
    )
    parser.add_argument(
        "--influx", metavar="URL", help="InfluxDB URL (beats $HUB_INFLUX_URL and the file)"
    )
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="accepted as by every hub command; a replay never connects to MQTT",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _fail(problems: list[Problem], what: str) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    noun = "problem" if len(problems) == 1 else "problems"
    print(f"hub replay: {len(problems)} {noun} in {what}; nothing replayed", file=sys.stderr)
    return 1


def _load(args: argparse.Namespace) -> tuple[HubConfig, Inventory, RuleSet] | int:
    config_file = getattr(args, "config", None)
    try:
        config = load_config(
            Path(config_file) if config_file else None,
            mqtt_url=getattr(args, "mqtt", None),
            influx_url=getattr(args, "influx", None),
        )
    except ConfigError as exc:
        return _fail(exc.problems, "the configuration")
    try:
        inventory = load_inventory(config.inventory)
    except ConfigError as exc:
        return _fail(exc.problems, "the inventory")
    paths = [Path(p) for p in args.rules] if getattr(args, "rules", None) else list(config.rules)
    if not paths:
        print("hub replay: no rules to run: give --rules or rules: in hub.yaml", file=sys.stderr)
        return 1
    rules, problems = check_rules(paths, inventory, config.actuators.commands)
    if rules is None:
        return _fail(problems, "the rules")
    return config, inventory, rules


async def _replay(
    loaded: tuple[HubConfig, Inventory, RuleSet], start_ns: int, end_ns: int, *, as_json: bool
) -> str | int:
    # aiohttp is imported only here, so that `hub --help` and other commands stay quick.
    from hub.rules.replay import format_json, format_text, replay  # noqa: PLC0415
    from hub.storage.influx import InfluxClient, InfluxError  # noqa: PLC0415

    config, inventory, rules = loaded
    influx = config.influx
    client = InfluxClient(
        influx.url,
        influx.database,
        username=influx.username,
        password=influx.password,
        timeout=influx.timeout,
    )
    try:
        report = await replay(client, inventory, rules, start_ns, end_ns)
    except InfluxError as exc:
        print(f"hub replay: cannot read the history from InfluxDB: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return format_json(report) if as_json else format_text(report)


def replay_main(args: argparse.Namespace) -> int:
    """Run `hub replay`; print the report and return 0, or print why not and return 1 or 2."""
    now_ns = time.time_ns()  # once, so that `--from -1h --to now` is exactly one hour
    times: list[int] = []
    for flag, text in (("--from", args.start), ("--to", getattr(args, "end", "now"))):
        try:
            times.append(parse_time(text, now_ns))
        except TimeError as exc:
            print(f"hub replay: {flag}: {exc}", file=sys.stderr)
            return 2
    start_ns, end_ns = times
    if start_ns >= end_ns:
        print(
            f"hub replay: --from ({args.start}) must be before --to ({args.end})", file=sys.stderr
        )
        return 2
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    import asyncio  # noqa: PLC0415 - here, not at the top, to keep `hub --help` quick

    outcome = asyncio.run(_replay(loaded, start_ns, end_ns, as_json=getattr(args, "json", False)))
    if isinstance(outcome, int):
        return outcome
    sys.stdout.write(outcome)
    return 0
