"""Failover benchmark: how long a province's barriers wait when the active hub dies, and what
the pair costs on the way from a reading to a barrier. Not a test: it prints figures.

    .venv/bin/python bench/failover.py [--trials 20] [--samples 50]

Two `hub run` processes as an active/standby pair (`ha.enabled`, `ha.ttl: 2`) on a 3-member
etcd cluster, one Mosquitto and an InfluxDB started here, with a barrier controller (paho, in
this process, so both ends read one monotonic clock), as in tests/ha/test_pair.py.

- **Failover**: SIGKILL of the active hub, then at once a gauge above the rule's level (a
  flood that starts as the hub dies): the time from the kill to the new active hub's close
  command at the controller, p50 and p95 over `--trials` kills. The killed hub is started
  again as the standby before the next trial.
- **Barrier path**: a reading above the level published -> the close command at the
  controller, `--samples` times, through the pair's active hub, beside a single hub (SQLite
  store, no pair) on the same broker in the same run.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.services import EtcdCluster, LocalInflux, LocalMosquitto, free_port
from tests.actuators.controller import Controller
from tests.app.torture_support import threaded_webhook
from tests.ha.test_pair import Pair, level, pair_configs
from tests.helpers import HubProcess, Peer, wait_for, write_config

PREFIX, DATABASE = "bench", "bench"


def closes(controller: Controller) -> int:
    return sum(1 for c in list(controller.commands.values()) if c["action"] == "close")


def opens(controller: Controller) -> int:
    return sum(1 for c in list(controller.commands.values()) if c["action"] == "open")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Poll every millisecond; the monotonic time the check first held."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.001)
    return time.monotonic()


def flood_and_clear(sensor: Peer, controller: Controller, at: float | None = None) -> float:
    """One flood: the time from publishing the high level (or `at`) to the close command."""
    n = closes(controller)
    start = time.monotonic() if at is None else at
    level(sensor, PREFIX, 20)
    arrived = wait_until(lambda: closes(controller) > n, "the close command")
    level(sensor, PREFIX, 5)
    wait_until(lambda: opens(controller) > n, "the open command")
    return arrived - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(name: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> None:
    print(
        f"  {name:<28} p50 {pct(values, 0.5) * scale:8.1f} {unit}   "
        f"p95 {pct(values, 0.95) * scale:8.1f} {unit}   n={len(values)}"
    )


def failover(pair: Pair, controller: Controller, sensor: Peer, trials: int) -> list[float]:
    active = wait_for(pair.active, "a hub to be active", timeout=30)
    out = []
    for trial in range(trials):
        successor = pair.other(active)
        proc = pair.hubs[active].proc
        assert proc is not None
        n = closes(controller)
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        level(sensor, PREFIX, 20)
        arrived = wait_until(lambda n=n: closes(controller) > n, f"trial {trial}: close", 30)
        out.append(arrived - killed)
        proc.wait()
        level(sensor, PREFIX, 5)
        wait_until(lambda n=n: opens(controller) > n, f"trial {trial}: open", 30)
        pair.start(active)  # back as the standby
        wait_for(
            lambda a=active: pair.hubs[a].health().get("role") == "standby",
            "the killed hub back as the standby",
            timeout=30,
        )
        print(f"  trial {trial + 1:2d}: first command {out[-1]:.2f} s after the kill", flush=True)
        active = successor
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hub-failover-") as tmp, threaded_webhook() as hook:
        root = Path(tmp)
        mosquitto = LocalMosquitto(data_dir=root / "mosquitto", port=free_port())
        influx = LocalInflux(data_dir=root / "influx", port=free_port())
        etcd = EtcdCluster(root / "etcd")
        for service in (mosquitto, influx, etcd):
            service.start()
        controller = Controller(mosquitto.url, "bench-barrier", PREFIX, "suwon", "bar-1")
        sensor = Peer(mosquitto.url, "bench-sensor")
        try:
            configs = pair_configs(
                root / "pair", mosquitto, influx, etcd, PREFIX, DATABASE, "bench", hook.url
            )
            pair = Pair(configs)
            pair.start("a")
            pair.start("b")
            try:
                wait_for(pair.active, "a hub to be active", timeout=30)
                ha_path = [flood_and_clear(sensor, controller) for _ in range(args.samples)]
                print(f"failover: {args.trials} SIGKILLs of the active hub (lease ttl 2 s)")
                kills = failover(pair, controller, sensor, args.trials)
            finally:
                pair.stop()
            # The same rule, province and broker, one hub with its SQLite store.
            sections = json.loads(configs[0].read_text())  # write_config writes JSON
            single = write_config(
                root / "single.yaml",
                **{k: v for k, v in sections.items() if k not in ("ha", "store")},
            )
            hub = HubProcess.for_config(single)
            hub.start()
            try:
                single_path = [flood_and_clear(sensor, controller) for _ in range(args.samples)]
            finally:
                hub.stop()
        finally:
            sensor.close()
            controller.close()
            for service in (etcd, influx, mosquitto):
                service.stop()
    print("\nfailover: kill of the active hub -> first close command from the new one")
    show("takeover + command", kills, "s", 1.0)
    print("  limit: 10 s (the product's bound)")
    print("\nbarrier path: reading published -> close command at the controller")
    show("active/standby pair (etcd)", ha_path)
    show("single hub (SQLite)", single_path)
    print(f"  pair - single at p50: {(pct(ha_path, 0.5) - pct(single_path, 0.5)) * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
