"""`hub simulate SCENARIO`: publish a storm (generated over the inventory) or a scripted stream.

Readings carry the time they are published, so the hub's rules see them as live data;
`--speed` compresses the scenario's shape (how fast the rain and the water rise), not time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from hub.config import ConfigError, HubConfig, load_config
from hub.config.yaml_source import load_yaml
from hub.durations import DurationError, parse_duration
from hub.inventory import Inventory, Sensor, load_inventory
from hub.mqtt import Message, MqttClient
from hub.tls import mqtt_ssl_context
from hub.units import CANONICAL

log = logging.getLogger("hub.simulate")

STORM_S = 600.0  # the storm's shape at speed 1: ten minutes from first rain to flood
# Then the rain stops and the water falls, over half as long again (fractions 1 to 1.5 of the
# storm).
RECEDE = (1.0, 1.5)
# The peak (fractions 0.55 to 1) lasts at least this long in real time, so that the rules'
# `for` durations (the underpass's 30 s) hold at any speed; fraction 1 is held to make it up.
PEAK_S = 90.0
# A river gauge goes silent at 0.6 of the storm for this long (real time, longer than the
# example `missing: 5m` rule), then reports again.
SILENT_S = 420.0
# After that the sensors report calm values, at their own pace, for this long in real time
# whatever the speed: the rules' `clear` durations and rates are measured on the readings' own
# time (underpass barriers reopen 5 minutes after the water falls; the example reservoirs
# clear after 30 minutes and the slopes' one-hour rates of movement after an hour).
CALM_S = 3900.0


@dataclass(frozen=True, slots=True)
class Step:
    """One reading of a scenario, `at` seconds after the start (in scenario time)."""

    at: float
    sensor: str
    value: float | None  # None: the sensor says nothing (a silent gauge)
    unit: str | None = None


def _ramp(x: float, start: float, end: float) -> float:
    """0 before `start`, 1 after `end`, smooth in between (fractions of the storm)."""
    if x <= start:
        return 0.0
    if x >= end:
        return 1.0
    t = (x - start) / (end - start)
    return t * t * (3 - 2 * t)


def storm_value(sensor: Sensor, x: float) -> float | None:
    """The reading of `sensor` at fraction `x` of the storm, in its canonical unit: rising
    from 0 to 1, receding from RECEDE[0] to RECEDE[1], calm after."""
    wobble = 0.02 * math.sin(17 * x + zlib.crc32(sensor.id.encode()) % 7)
    site = sensor.site_type or ""
    falls = 1 - _ramp(x, *RECEDE)  # 1 through the storm, 0 once it has passed
    value: float | None
    if sensor.kind == "rain_rate":
        value = 2 + 70 * _ramp(x, 0.0, 0.35) * (1 + wobble) * (1 - _ramp(x, 1.0, 1.2))
    elif sensor.kind == "rain_total":
        value = 120 * _ramp(x, 0.0, 1.0)
    elif sensor.kind == "water_level":
        if site in ("underpass", "underground_road"):
            value = 0.02 + 0.45 * _ramp(x, 0.15, 0.55) * falls
        elif site == "semi_basement":
            value = 0.01 + 0.25 * _ramp(x, 0.2, 0.6) * falls
        elif site == "reservoir":
            # From 60% of the gauge's range to 95% and back: each reservoir's own levels.
            top = sensor.max if sensor.max is not None else 18.0
            value = top * (0.6 + 0.35 * _ramp(x, 0.1, 0.9) * falls)
        else:
            value = 1.0 + 3.0 * _ramp(x, 0.1, 0.8) * falls
        value *= 1 + wobble / 10
    elif sensor.kind == "flood_switch":
        value = 1.0 if 0.5 < x < sum(RECEDE) / 2 else 0.0
    elif sensor.kind == "tilt":
        value = 0.2 + 1.6 * _ramp(x, 0.3, 0.7)
    elif sensor.kind == "displacement":
        value = 1.0 + 40 * _ramp(x, 0.3, 0.75)
    elif sensor.kind == "soil_moisture":
        value = 30 + 55 * _ramp(x, 0.0, 0.6) - 20 * _ramp(x, RECEDE[0], RECEDE[1] + 0.5)
    elif sensor.kind == "battery":
        value = 12.6 - 0.3 * x
    else:
        return None
    if sensor.min is not None:
        value = max(value, sensor.min)
    if sensor.max is not None:
        value = min(value, sensor.max)
    return round(value, 4)


def storm(inventory: Inventory, speed: float, calm: float = CALM_S) -> Iterator[Step]:
    """Every sensor reporting through the storm and for `calm` seconds after it; one
    water-level gauge goes silent midway and reports again later."""
    length = STORM_S / speed
    hold = max(0.0, PEAK_S - 0.45 * length)
    hush = (0.6 * length, 0.6 * length + SILENT_S)
    passed = length * RECEDE[1] + hold  # when the calm begins
    end = passed + calm

    def fraction(t: float) -> float:
        if t <= length:
            return t / length
        return 1.0 + max(0.0, t - length - hold) / length

    silent = next(
        (
            s.id
            for s in inventory.sensors.values()
            if s.kind == "water_level" and s.site_type == "river"
        ),
        None,
    )
    steps: list[Step] = []
    for sensor in inventory.sensors.values():
        pace = min(sensor.expected_interval or 10.0, 10.0)
        every = max(pace / max(speed, 1.0), 0.25)
        t = 0.0
        while t <= end:
            if t > passed:
                every = max(every, pace)  # the calm after the storm, at the sensors' own pace
            x = fraction(t)
            if sensor.id == silent and hush[0] < t < hush[1]:
                t += every
                continue  # the gauge is silent: its `missing` rule should notice
            value = storm_value(sensor, x)
            if value is not None:
                steps.append(Step(t, sensor.id, value, _canonical(sensor.kind)))
            t += every
    steps.sort(key=lambda s: s.at)
    yield from steps


def _canonical(kind: str) -> str | None:
    return CANONICAL.get(kind) or None


def scripted(path: Path) -> list[Step]:
    """Steps from a YAML file: `steps: [{at: 10s, sensor: id, value: 16, unit: cm}, ...]`."""
    data, _ = load_yaml(path.read_text(), str(path))
    steps: list[Step] = []
    for index, item in enumerate(data.get("steps", []) if isinstance(data, dict) else []):
        try:
            at = parse_duration(item["at"])
            steps.append(Step(at, str(item["sensor"]), float(item["value"]), item.get("unit")))
        except (KeyError, TypeError, ValueError, DurationError) as exc:
            raise ValueError(f"{path}: steps[{index}]: {exc}") from None
    if not steps:
        raise ValueError(f"{path}: no steps; write steps: [{{at: 0s, sensor: ID, value: 1}}]")
    return sorted(steps, key=lambda s: s.at)


@contextlib.asynccontextmanager
async def side_client(config: HubConfig, client_id: str) -> AsyncIterator[MqttClient]:
    """A connected MQTT client for a side task (a simulation), on the hub's broker and
    credentials, with a clean session: nothing of it is kept once the task is over."""
    client = MqttClient(
        config.mqtt.url,
        client_id=client_id,
        username=config.mqtt.username,
        password=config.mqtt.password,
        ssl_context=mqtt_ssl_context(config.mqtt),
        clean_start=True,
        session_expiry=0,
    )
    runner = asyncio.create_task(client.run(), name=client_id)
    try:
        await client.wait_connected(30)
        yield client
    finally:
        await client.stop()
        await runner


async def publish(
    client: MqttClient,
    inventory: Inventory,
    steps: Iterator[Step] | list[Step],
    prefix: str,
    *,
    qos: int = 0,
) -> int:
    """Publish the steps at their times (relative to now); return how many were sent."""
    start = time.monotonic()
    sent = 0
    for step in steps:
        delay = start + step.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sensor = inventory.sensors.get(step.sensor)
        if sensor is None or step.value is None:
            continue
        body: dict[str, object] = {"value": step.value, "ts": time.time()}
        if step.unit:
            body["unit"] = step.unit
        topic = f"{prefix}/sensors/{sensor.region}/{sensor.id}"
        await client.publish(topic, orjson.dumps(body), qos=qos)
        sent += 1
    return sent


async def _run(args: argparse.Namespace) -> int:
    config = load_config(
        Path(args.config) if args.config else None, mqtt_url=args.mqtt, influx_url=args.influx
    )
    inventory = load_inventory(config.inventory)
    if args.scenario == "storm":
        steps: Iterator[Step] | list[Step] = storm(inventory, args.speed, args.calm)
    else:
        steps = scripted(Path(args.scenario))
    async with side_client(config, f"{config.mqtt.client_id}-simulate") as client:
        sent = await publish(client, inventory, steps, config.mqtt.prefix, qos=args.qos)
    print(f"hub simulate: {sent} readings published")
    return 0


def main(args: argparse.Namespace) -> int:
    """`hub simulate SCENARIO`."""
    if args.speed <= 0:
        print("hub simulate: --speed must be more than 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"hub simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class Controllers:
    """Stand in for the province's actuator controllers: accept each command, move for
    `travel_s`, then report the new state (retained) and that the command is done.

    Commands carry their id, so a resent command is answered again but moved only once.
    """

    def __init__(
        self, client: MqttClient, prefix: str, states: dict[str, str], *, travel_s: float = 1.5
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.states = states
        self.travel_s = travel_s
        self._done: set[str] = set()
        self._queue: asyncio.Queue[tuple[str, dict[str, object]]] = asyncio.Queue()

    def _on_messages(self, messages: list[Message]) -> None:
        for msg in messages:
            try:
                self._queue.put_nowait((msg.topic, orjson.loads(msg.payload)))
            except orjson.JSONDecodeError:
                log.warning("controller: unreadable command on %s", msg.topic)

    async def run(self) -> None:
        """Answer commands until cancelled."""
        self.client.on_messages = self._on_messages
        await self.client.subscribe(f"{self.prefix}/actuators/+/+/command", 1)
        async with asyncio.TaskGroup() as tg:
            while True:
                topic, command = await self._queue.get()
                tg.create_task(self._answer(topic, command))

    async def _answer(self, topic: str, command: dict[str, object]) -> None:
        base = topic.rsplit("/", 1)[0]
        command_id = str(command.get("command_id"))
        action = str(command.get("action"))
        state = self.states.get(action, action)
        if command_id not in self._done:
            ack = {"command_id": command_id, "status": "accepted"}
            await self.client.publish(f"{base}/ack", orjson.dumps(ack), qos=1)
            await asyncio.sleep(self.travel_s)  # the barrier arm moving
            self._done.add(command_id)
        report = {"state": state, "ts": time.time()}
        await self.client.publish(f"{base}/state", orjson.dumps(report), qos=1, retain=True)
        ack = {"command_id": command_id, "status": "done", "state": state}
        await self.client.publish(f"{base}/ack", orjson.dumps(ack), qos=1)
