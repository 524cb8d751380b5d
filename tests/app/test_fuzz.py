"""Ten thousand random and mutated messages through a real Mosquitto while the hub runs: sensor
and gateway payloads, actuator acks and states, detection results. The hub stays up, every
valid reading among them is stored, every invalid one is dead-lettered with a reason, and its
memory and queues stay bounded. The seed is printed; HUB_FUZZ_SEED repeats a run."""

from __future__ import annotations

import json
import os
import random
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.config import load_config
from hub.ingest.validate import Validator
from hub.inventory import Inventory, load_inventory
from hub.services import LocalInflux, LocalMosquitto
from tests.actuators.conftest import FLOOD, province
from tests.helpers import (
    Peer,
    eventually,
    hub_in_process,
    hub_yaml,
    readings_stored_are,
)

pytestmark = pytest.mark.integration

MESSAGES = 10_000
# What the fuzz may add to the process's peak memory (the hub, the test's peers and the
# oracle together); a leak of a few hundred bytes per message would pass this by far.
MEMORY_GROWTH_MB = 300


def _values(rng: random.Random) -> object:
    return rng.choice(
        [
            rng.uniform(-5, 50),
            rng.randint(-(10**30), 10**30),
            "high",
            None,
            True,
            [],
            {"v": 1},
            1e308,
            "1e308",
            -0.0,
            rng.uniform(0, 5),
            rng.uniform(0, 5),
            rng.uniform(0, 5),
        ]
    )


class Storm:
    """Makes the messages and keeps what the pure validator (the oracle) makes of them."""

    def __init__(self, rng: random.Random, inventory: Inventory, prefix: str) -> None:
        self.rng = rng
        self.inventory = inventory
        self.prefix = prefix
        self.sensors = sorted(inventory.sensors.values(), key=lambda s: s.id)
        self.oracle = Validator(inventory)
        self.base = time.time() - 3600
        self.explicit: set[tuple[str, int]] = set()  # (sensor, ts) of readings with a ts
        self.stamped = 0  # valid readings without ts: stamped by the hub on arrival
        self.rejections = 0
        self.counter = 0

    def _ts(self) -> object:
        self.counter += 1
        fresh = self.base + self.counter / 1000  # a distinct time for every message
        return self.rng.choice(
            [
                fresh,
                fresh,
                fresh,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(fresh)) + "Z",
                fresh * 1000,  # milliseconds: refused
                "yesterday",
                -5,
                self.base + 10 * 86400,  # far in the future
            ]
        )

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"value": _values(self.rng)}
        if self.rng.random() < 0.9:
            body["ts"] = self._ts()
        if self.rng.random() < 0.2:
            body["unit"] = self.rng.choice(["m", "cm", "km", "mm", "mm/h", "furlong", 3])
        return body

    def _mutate(self, payload: bytes) -> bytes:
        data = bytearray(payload)
        for _ in range(self.rng.randint(1, 4)):
            what = self.rng.random()
            if what < 0.4 and data:
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            elif what < 0.6 and data:
                del data[self.rng.randrange(len(data)) :]
            elif what < 0.8:
                data.insert(self.rng.randrange(len(data) + 1), self.rng.randrange(256))
            else:
                data += self.rng.choice([b"\xff\xfe", b"NaN", b"{" * 50, b"\\ud800"])
        return bytes(data)

    def sensor(self) -> tuple[str, bytes]:
        sensor = self.rng.choice(self.sensors)
        region = sensor.region if self.rng.random() < 0.9 else "elsewhere"
        sid = sensor.id if self.rng.random() < 0.95 else "ghost-7"
        payload = json.dumps(self._body()).encode()
        if self.rng.random() < 0.25:
            payload = self._mutate(payload)
        self._judge(self.oracle.sensor_message(region, sid, payload, time.time_ns()))
        return f"{self.prefix}/sensors/{region}/{sid}", payload

    def gateway(self) -> tuple[str, bytes]:
        region = self.rng.choice(self.sensors).region
        readings = [
            {**self._body(), "sensor": self.rng.choice(self.sensors).id}
            for _ in range(self.rng.randint(0, 8))
        ]
        body: object = {"readings": readings}
        if self.rng.random() < 0.05:
            body = readings  # not an object
        payload = json.dumps(body).encode()
        if self.rng.random() < 0.2:
            payload = self._mutate(payload)
        self._judge(self.oracle.gateway_message(region, "gw-9", payload, time.time_ns()))
        return f"{self.prefix}/gateways/{region}/gw-9", payload

    def _judge(self, outcome: tuple[list[Any], list[Any]]) -> None:
        readings, rejections = outcome
        self.rejections += len(rejections)
        for reading in readings:
            if reading.ts_ns >= self.oracle_now_floor:
                self.stamped += 1
            else:
                self.explicit.add((reading.sensor.id, reading.ts_ns))

    @property
    def oracle_now_floor(self) -> int:
        # Readings with a ts are at least ten minutes old here; a stamp is now.
        return int((time.time() - 600) * 1e9)

    def device(self) -> tuple[str, bytes]:
        actuator = self.rng.choice(sorted(self.inventory.actuators))
        region = self.inventory.actuators[actuator].region
        kind = self.rng.choice(["ack", "state"])
        body = self.rng.choice(
            [
                {"command_id": "nope", "status": self.rng.choice(["done", "accepted", "x", 3])},
                {"state": self.rng.choice(["closed", "open", "", None, 7, "\u0000"])},
                {"status": "done"},
                [],
                "text",
            ]
        )
        payload = json.dumps(body).encode()
        if self.rng.random() < 0.3:
            payload = self._mutate(payload)
        return f"{self.prefix}/actuators/{region}/{actuator}/{kind}", payload

    def detection(self) -> tuple[str, bytes]:
        camera = self.rng.choice([*sorted(self.inventory.cameras), "cam-ghost"])
        body = self.rng.choice(
            [
                {"job_id": "j-x", "camera_id": camera, "detections": []},
                {"job_id": 5, "detections": [{"class": "person", "score": 2, "box": [1]}]},
                {"camera_id": camera, "detections": "none", "snapshot": "/etc/passwd"},
                {},
            ]
        )
        payload = json.dumps(body).encode()
        if self.rng.random() < 0.3:
            payload = self._mutate(payload)
        return f"{self.prefix}/detect/results/{camera}", payload

    def next(self) -> tuple[str, bytes]:
        pick = self.rng.random()
        if pick < 0.6:
            return self.sensor()
        if pick < 0.8:
            return self.gateway()
        if pick < 0.9:
            return self.device()
        return self.detection()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_ten_thousand_random_messages(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    seed = int(os.environ.get("HUB_FUZZ_SEED", random.randrange(2**32)))
    print(f"fuzz seed {seed} (HUB_FUZZ_SEED={seed} repeats this run)")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "flood.yaml").write_text(FLOOD)  # readings open incidents and close a barrier
    config = hub_yaml(
        tmp_path,
        mosquitto.url,
        influx.url,
        prefix,
        database,
        uid,
        site=province(),
        ingest={"deadletter_queue": 100_000},
        rules=[str(rules)],
    )
    inventory = load_inventory(load_config(config).inventory)
    storm = Storm(random.Random(seed), inventory, prefix)
    messages = [storm.next() for _ in range(MESSAGES)]
    want = len(storm.explicit) + storm.stamped
    assert want > 1000, "the storm holds too few valid readings to tell anything"
    assert storm.rejections > 1000, "the storm holds too few bad readings to tell anything"

    before = _peak_rss_mb()
    async with hub_in_process(config) as hub:
        letters = Peer(mosquitto.url, f"letters-{uid}")
        letters.subscribe(f"{prefix}/deadletter")
        sender = Peer(mosquitto.url, f"fuzz-{uid}")
        try:
            for topic, payload in messages:
                sender.publish(topic, payload)
            await eventually(sender.all_sent, "the broker to take every message", timeout=60)
            await eventually(
                lambda: readings_stored_are(influx.url, database, want),
                f"{want} readings stored",
                90,
            )
            await eventually(
                lambda: len(letters.received) >= storm.rejections,
                f"{storm.rejections} dead letters",
                timeout=60,
            )
            _still_works(hub)
        finally:
            sender.close()
            letters.close()
    assert len(letters.received) == storm.rejections
    for _, body in letters.received:
        letter = json.loads(body)
        assert letter["reason"], letter
        assert letter["error"], letter
    growth = _peak_rss_mb() - before
    print(f"peak memory grew {growth:.0f} MB over {MESSAGES} messages")
    assert growth < MEMORY_GROWTH_MB


def _still_works(hub: Hub) -> None:
    """The hub is up and every queue emptied: nothing is held on to after the storm."""
    health = hub.health()
    assert health.ok, health
    assert hub.writer.buffered == 0
    assert not hub.writer.spooling
    assert hub.ingest._stamped_bytes <= 16 << 20
