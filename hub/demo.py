"""`hub demo`: the whole system on this machine, on the example province, with a storm.

Mosquitto and InfluxDB are started as child processes on free ports with their data in a
temporary folder (unless --mqtt / --influx name running ones), so the storm's made-up
readings never reach a real broker or database. The sample cameras the inventory points at
(`hub cameras serve`) are started unless they answer already, a detection worker (`hub
detector`) unless --detectors 0, and a stream worker (`hub streams`, events from the
cameras' zones) unless --streams 0. The hub runs in this process, the storm is published into
it, and the situation-room page is served until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hub.cameras.local import LocalCameras, for_inventory
from hub.services import (
    ChildProcess,
    LocalInflux,
    LocalMosquitto,
    LocalService,
    ServiceError,
    free_port,
    port_open,
    start_workers,
)

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.inventory import Inventory

log = logging.getLogger("hub.demo")

# The tokens whose digests the example hub.yaml holds; printed only when they are in force.
DEMO_TOKENS = {"viewer": "demo-viewer-token", "operator": "demo-operator-token"}


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `hub demo`."""
    parser.add_argument(
        "-c", "--config", metavar="FILE", default="hub.yaml", help="default hub.yaml"
    )
    parser.add_argument("--mqtt", metavar="URL", help="use this broker instead of starting one")
    parser.add_argument("--influx", metavar="URL", help="use this InfluxDB instead of starting one")
    parser.add_argument(
        "--speed",
        type=float,
        default=10.0,
        help="storm speed-up (default 10: incidents in a minute)",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="where to serve the page")
    parser.add_argument(
        "--detectors",
        type=int,
        default=1,
        metavar="N",
        help="detection workers to start (default 1; 0: none)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=1,
        metavar="N",
        help="stream workers to start, watching the cameras continuously (default 1; 0: none)",
    )


def _services(args: argparse.Namespace, data: Path) -> tuple[list[LocalService], str, str]:
    """Start what was not given; return the services started and the two URLs."""
    started: list[LocalService] = []
    mqtt_url, influx_url = args.mqtt, args.influx
    if not mqtt_url:
        broker = LocalMosquitto(data_dir=data / "mosquitto", port=free_port())
        broker.start()
        started.append(broker)
        mqtt_url = broker.url
    if not influx_url:
        influx = LocalInflux(data_dir=data / "influxdb", port=free_port())
        influx.start()
        started.append(influx)
        influx_url = influx.url
    return started, mqtt_url, influx_url


def demo_config(config: HubConfig, data: Path, listen: str) -> HubConfig:
    """The config with the demo's own data folder, client id, database and address."""
    return config.model_copy(
        update={
            "mqtt": config.mqtt.model_copy(update={"client_id": "hub-demo"}),
            "influx": config.influx.model_copy(update={"database": "hub_demo", "spool_dir": None}),
            "api": config.api.model_copy(update={"listen": listen}),
            "data_dir": data / "hub",
        }
    )


def _listen(config: HubConfig, wanted: str | None) -> str:
    if wanted:
        return wanted
    if not port_open(config.api.host or "127.0.0.1", config.api.port):
        return config.api.listen
    return f"127.0.0.1:{free_port()}"  # the configured port is taken, by a hub perhaps


def _banner(config: HubConfig, speed: float) -> str:
    host, port = config.api.host, config.api.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - display only
    lines = [
        "",
        f"  Situation room:  http://{shown}:{port}/",
    ]
    digests = {t.sha256: t.role for t in config.api.tokens}
    for role, token in DEMO_TOKENS.items():
        if digests.get(hashlib.sha256(token.encode()).hexdigest()) == role:
            lines.append(f"  {role + ' token:':16} {token}")
    if len(lines) == 2:
        lines.append("  tokens:          those of your config's api.tokens")
    lines += [
        f"  MQTT {config.mqtt.url}   InfluxDB {config.influx.url}/{config.influx.database}",
        f"  A storm at speed {speed:g} is on its way; Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


async def _storm(config: HubConfig, inventory: Inventory, speed: float) -> int:
    from hub.simulate import publish, side_client, storm  # noqa: PLC0415 - see main

    async with side_client(config, "hub-demo-storm") as client:
        return await publish(client, inventory, storm(inventory, speed), config.mqtt.prefix)


async def _controllers(config: HubConfig) -> None:
    from hub.simulate import Controllers, side_client  # noqa: PLC0415 - see main

    async with side_client(config, "hub-demo-controllers") as client:
        await Controllers(client, config.mqtt.prefix, dict(config.actuators.states)).run()


async def run_demo(config: HubConfig, inventory: Inventory, speed: float) -> None:
    """Run the hub and the storm until SIGINT or SIGTERM."""
    from hub.app import running  # noqa: PLC0415 - see main

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, inventory) as hub:
        await hub.mqtt.wait_connected(30)
        print(_banner(config, speed), flush=True)
        async with asyncio.TaskGroup() as tg:
            weather = tg.create_task(_storm(config, inventory, speed), name="storm")
            # The province's barriers, pumps and signs answer as their controllers would.
            controllers = tg.create_task(_controllers(config), name="controllers")
            await stop.wait()
            weather.cancel()
            controllers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            sent = weather.result()
            log.info("the storm published %d readings", sent)
    print("hub demo: stopped", flush=True)


def main(args: argparse.Namespace) -> int:
    """`hub demo`."""
    if args.speed <= 0:
        print("hub demo: --speed must be more than 0", file=sys.stderr)
        return 2
    # Imported here, not at the top: `hub --help` imports this module and must stay instant.
    from hub.config import ConfigError, load_config  # noqa: PLC0415
    from hub.inventory import load_inventory  # noqa: PLC0415

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as tmp:
        data = Path(tmp)
        services: list[LocalService] = []
        helpers: list[LocalCameras | ChildProcess] = []
        try:
            services, mqtt_url, influx_url = _services(args, data)
            env = {
                k: v for k, v in os.environ.items() if k not in ("HUB_MQTT_URL", "HUB_INFLUX_URL")
            }
            config = load_config(
                Path(args.config), mqtt_url=mqtt_url, influx_url=influx_url, env=env
            )
            config = demo_config(config, data, _listen(config, args.listen))
            inventory = load_inventory(config.inventory)
            _start_helpers(
                helpers, args, config=config, inventory=inventory, data=data, mqtt_url=mqtt_url
            )
            asyncio.run(run_demo(config, inventory, args.speed))
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        except (ServiceError, OSError) as exc:
            print(f"hub demo: {exc}", file=sys.stderr)
            return 1
        finally:
            for helper in reversed(helpers):
                helper.stop()
            for service in reversed(services):
                service.stop()
    return 0


def _start_helpers(
    started: list[LocalCameras | ChildProcess],
    args: argparse.Namespace,
    *,
    config: HubConfig,
    inventory: Inventory,
    data: Path,
    mqtt_url: str,
) -> None:
    """Start the cameras the inventory points at (unless they answer) and the detectors,
    each added to `started` at once, so that a failure still stops those before it."""
    cameras = for_inventory((c.url for c in inventory.cameras.values()), data / "cameras")
    if cameras is not None:
        cameras.start()
        started.append(cameras)
        log.info(
            "sample cameras on rtsp port %d, http port %d", cameras.rtsp_port, cameras.http_port
        )
    if args.detectors > 0 and config.detection.detector is None:
        log.warning("no detection.detector in %s: detect actions will fail", args.config)
        args.detectors = 0
    if args.streams > 0 and (config.streams.detector or config.detection.detector) is None:
        log.warning("no streams.detector in %s: no stream workers", args.config)
        args.streams = 0
    for command, count in (("detector", args.detectors), ("streams", args.streams)):
        started += start_workers(
            command,
            count,
            config=Path(args.config),
            log_dir=data / "logs",
            mqtt_url=mqtt_url,
            data_dir=Path(config.data_dir),
            prefix="demo",
        )
