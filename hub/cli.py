"""The `hub` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hub.cameras.local import add_cameras_arguments
from hub.demo import add_demo_arguments
from hub.live.relay import add_relay_arguments
from hub.rules.cli import add_test_arguments
from hub.rules.replay_cli import add_replay_arguments
from hub.store.recover import add_store_arguments


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="hub.yaml (default: $HUB_CONFIG, else ./hub.yaml)"
    )
    parser.add_argument(
        "--mqtt", metavar="URL", help="broker URL (beats $HUB_MQTT_URL and the file)"
    )
    parser.add_argument(
        "--influx", metavar="URL", help="InfluxDB URL (beats $HUB_INFLUX_URL and the file)"
    )


def _seconds(text: str) -> float:
    from hub.durations import DurationError, parse_duration

    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the hub")
    _connection_flags(run)
    run.add_argument(
        "--local-services",
        metavar="DIR",
        help="start Mosquitto, InfluxDB and the sample camera server as child processes "
        "with data in DIR when nothing answers at the configured URLs",
    )
    run.add_argument(
        "--detectors",
        type=int,
        default=0,
        metavar="N",
        help="also start N detection workers (`hub detector`) as child processes",
    )
    run.add_argument(
        "--streams",
        type=int,
        default=0,
        metavar="N",
        help="also start N stream workers (`hub streams`) as child processes",
    )

    check = sub.add_parser("check", help="validate config, inventory and rules")
    _connection_flags(check)

    rules = sub.add_parser("rules", help="rule tools")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    add_test_arguments(rules_sub.add_parser("test", help="run rule test cases"))

    simulate = sub.add_parser("simulate", help="publish a storm or a scripted stream of readings")
    _connection_flags(simulate)
    simulate.add_argument("scenario", help="`storm` (generated over the inventory) or a YAML file")
    simulate.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="compress the storm's ten minutes by this factor (default 1)",
    )
    simulate.add_argument(
        "--calm",
        type=_seconds,
        default=3900.0,
        metavar="DURATION",
        help="how long the sensors go on reporting after the storm, in real time, so that "
        "incidents clear (default 65m)",
    )
    simulate.add_argument("--qos", type=int, choices=(0, 1), default=0)

    replay = sub.add_parser(
        "replay", help="run the rules over stored history and report what they would have done"
    )
    add_replay_arguments(replay)

    add_store_arguments(
        sub.add_parser("store", help="check the hub's store, or restore from a moved file")
    )

    add_demo_arguments(sub.add_parser("demo", help="the whole system on the example province"))

    add_cameras_arguments(
        sub.add_parser("cameras", help="the sample cameras: `serve` them, or make their `media`")
    )

    detector = sub.add_parser("detector", help="a detection worker (start several to scale out)")
    _connection_flags(detector)
    detector.add_argument(
        "--id",
        required=True,
        help="this worker's name, unique among the workers (its MQTT client id is detector-ID)",
    )
    detector.add_argument(
        "--data-dir", metavar="DIR", help="the hub's data_dir, where evidence goes (beats the file)"
    )
    streams = sub.add_parser(
        "streams", help="a stream worker: continuous analysis of camera streams (start several)"
    )
    _connection_flags(streams)
    streams.add_argument(
        "--id",
        required=True,
        help="this worker's name, unique in the fleet (its MQTT client id is streams-ID)",
    )
    streams.add_argument(
        "--data-dir", metavar="DIR", help="the hub's data_dir, where evidence goes (beats the file)"
    )
    streams.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )

    relay = sub.add_parser("relay", help="serve cameras live to the page (the hub starts one)")
    add_relay_arguments(relay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from hub.check import main as check_main

        return check_main(args)
    if args.command == "rules":
        from hub.rules.cli import test_main

        return test_main(args)
    if args.command == "simulate":
        from hub.simulate import main as simulate_main

        return simulate_main(args)
    if args.command == "replay":
        from hub.rules.replay_cli import replay_main

        return replay_main(args)
    if args.command == "demo":
        from hub.demo import main as demo_main

        return demo_main(args)
    if args.command == "streams":
        from hub.streams.worker import main as streams_main

        return streams_main(args)
    if args.command == "detector":
        from hub.detection.worker import main as detector_main

        return detector_main(args)
    if args.command == "cameras":
        from hub.cameras.local import cameras_main

        return cameras_main(args)
    if args.command == "store":
        from hub.store.recover import store_main

        return store_main(args)
    if args.command == "relay":
        from hub.live.relay import relay_main

        return relay_main(args)
    if args.command == "run":
        from hub.app import main as run_main

        return run_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
