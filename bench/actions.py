"""Action latency benchmark: from a reading crossing a threshold (published on MQTT) to the
barrier's close command arriving at a controller, through a real `hub run` process that
validates and stores every reading of a steady background load. Not a test: it prints figures.

    .venv/bin/python bench/actions.py [--rates 1000,5000,10000] [--samples 200]

Each sample is a gauge at an underpass of its own going above the rule's level once, so each
opens one incident and one command to that underpass's barrier. The controller (paho, in this
process, so both ends read the same monotonic clock) acknowledges and reports the state, so
commands finish as in service. The background load comes from another process over a raw
socket (QoS 0), paced every 10 ms.

The floor is measured in the same run under the same load: the same paho publisher to the same
paho subscriber through the same broker, with no hub in between.

    .venv/bin/python bench/actions.py --peer node-red

also measures a peer after the hub: Node-RED 5 running the same threshold flow
(bench/node-red/flows.json: `mqtt in` on hub/sensors/+/+ at QoS 1, a `switch` passing
value > 0.15, a `function` building the barrier's close command, `mqtt out` at QoS 1),
storing nothing. Once the hub's levels are done the hub is stopped, Node-RED starts headless
on the same broker, and each level runs again with the same load process, controller, spacing
and sample count, on gauges and barriers of its own, each next to a floor of its own. Node-RED
5 needs Node.js >= 22.9; the `node` package from npm brings it, next to Node-RED, once:

    npm ci --prefix bench/node-red

    .venv/bin/python bench/actions.py --baseline f7e0a94

measures, after the hub of this checkout, the hub of an earlier commit (extracted with `git
archive` into the run's folder, with a data folder of its own) on the same broker, load and
controller, with gauges and barriers of its own: a change's cost, measured in one run.

Node-RED's MQTT client leaves Nagle's algorithm on, so its command waits for the broker's
delayed ACK; `--peer node-red-nodelay` preloads bench/node-red/nodelay.js, which turns it off,
the stronger peer. Both can be given, one after the other.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hub.mqtt.codec import encode, encode_publish
from hub.mqtt.packets import Connect
from hub.services import LocalInflux, LocalMosquitto, free_port

PREFIX = "hub"
NODE_RED = Path(__file__).resolve().parent / "node-red"
PEERS = ("node-red", "node-red-nodelay")
# Crossings 100 ms apart: the latency of one crossing under load, not a storm of new incidents
# every few milliseconds (which measures the rules' persistence throughput instead).
SPACING = 0.1
RULES = """
rules:
  - id: underpass-flood
    severity: severe
    sensors: {kind: water_level, site_type: underpass}
    trigger: {above: 0.15}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close}
"""


def _point(feature: str, lon: float, lat: float, **props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"type": feature, **props},
    }


def inventory(background: int, underpasses: int) -> dict[str, object]:
    """Background gauges (no site), and underpasses each with a gauge and a barrier."""
    ring = [[126.0, 37.0], [128.0, 37.0], [128.0, 38.0], [126.0, 38.0], [126.0, 37.0]]
    features: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"type": "region", "id": "bench", "name": "Bench"},
        }
    ]
    features += [
        _point("sensor", 126.5 + i * 1e-5, 37.5, id=f"bg{i}", kind="water_level", region="bench")
        for i in range(background)
    ]
    for i in range(underpasses):
        lon, lat = 127.0 + i * 1e-4, 37.2
        features.append(_point("site", lon, lat, id=f"u{i}", region="bench", site_type="underpass"))
        features.append(
            _point("sensor", lon, lat, id=f"g{i}", kind="water_level", region="bench", site=f"u{i}")
        )
        features.append(
            _point("actuator", lon, lat, id=f"b{i}", kind="barrier", region="bench", site=f"u{i}")
        )
    return {"type": "FeatureCollection", "features": features}


def background_load(port: int, rate: int, sensors: int, stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    """Publish `rate` readings/s (QoS 0), paced every 10 ms, until `stop` is set."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(encode(Connect(keepalive=60, client_id=f"bench-load-{rate}")))
        sock.recv(64)  # CONNACK
        sent, start, n = 0, time.monotonic(), 0
        while not stop.is_set():  # type: ignore[attr-defined]
            due = int((time.monotonic() - start) * rate)
            parts = []
            now = time.time()
            while sent < due:
                topic = f"{PREFIX}/sensors/bench/bg{n % sensors}"
                payload = b'{"value":0.05,"ts":%.6f}' % now
                parts.append(encode_publish(topic, payload))
                sent += 1
                n += 1
            if parts:
                sock.sendall(b"".join(parts))
            time.sleep(0.01)
        sock.sendall(b"\xe0\x00")


class Controller:
    """Notes when each barrier's command arrives, and answers it like a controller."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-barriers")
        self.client.on_message = self._on_message
        self.ready = threading.Event()
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.echoed: dict[str, float] = {}
        self.client.subscribe([(f"{PREFIX}/actuators/+/+/command", 1), ("bench/echo/+", 1)])
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the controller could not subscribe")

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if msg.topic.startswith("bench/echo/"):
            self.echoed.setdefault(msg.topic, now)
            return
        barrier = msg.topic.split("/")[-2]
        self.arrived.setdefault(barrier, now)
        cid = json.loads(msg.payload)["command_id"]
        base = msg.topic.rsplit("/", 1)[0]
        self.client.publish(f"{base}/state", b'{"state":"closed"}', qos=1, retain=True)
        self.client.publish(f"{base}/ack", json.dumps({"command_id": cid, "status": "done"}), 1)


def _metric(listen: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def run_level(
    rate: int, first: int, samples: int, port: int, controller: Controller, listen: str | None
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of `samples` threshold crossings under `rate` readings/s of load, and of
    as many messages from the same publisher to the controller through the broker alone.

    `listen` is the hub's API address when the hub is the path measured (its /metrics say how
    many readings of the load it stored), None when a peer is."""
    stop = multiprocessing.Event()
    load = multiprocessing.Process(target=background_load, args=(port, rate, 1000, stop))
    load.start()
    stored0 = _metric(listen, "hub_readings_accepted_total") if listen else 0.0
    time.sleep(2.0)  # let the load settle before measuring
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gauges-{rate}")
    # The hub acknowledges a reading once it is stored (up to flush_interval later); paho's
    # default of 20 messages in flight would hold later samples back in paho's own queue.
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    sent: dict[str, float] = {}
    try:
        for i in range(first, first + samples):
            payload = json.dumps({"value": 0.3, "ts": time.time()})
            sent[f"b{i}"] = time.perf_counter()
            pub.publish(f"{PREFIX}/sensors/bench/g{i}", payload, qos=1)
            time.sleep(SPACING)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(b in controller.arrived for b in sent):
            time.sleep(0.05)
        echoes: dict[str, float] = {}
        for i in range(samples):
            topic = f"bench/echo/{first + i}"
            echoes[topic] = time.perf_counter()
            pub.publish(topic, json.dumps({"value": 0.3, "ts": time.time()}), qos=1)
            time.sleep(SPACING)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(t in controller.echoed for t in echoes):
            time.sleep(0.05)
    finally:
        stored = _metric(listen, "hub_readings_accepted_total") - stored0 if listen else 0.0
        stop.set()
        load.join(10)
        pub.loop_stop()
        pub.disconnect()
    missing = [b for b in sent if b not in controller.arrived]
    if missing:
        print(f"  {len(missing)} commands did not arrive", file=sys.stderr)
    if listen:
        elapsed = 2.0 + 2 * samples * SPACING
        print(
            f"  background: {stored / elapsed:,.0f} readings/s validated and stored"
            f" (target {rate:,})"
        )
    path = [(controller.arrived[b] - t) * 1000 for b, t in sent.items() if b in controller.arrived]
    floor = [(controller.echoed[e] - t) * 1000 for e, t in echoes.items() if e in controller.echoed]
    return path, floor


def _node_red_install() -> tuple[Path, Path]:
    """The Node.js binary and Node-RED's red.js that `npm ci --prefix bench/node-red` put in
    bench/node-red/node_modules; exits with how to install them when they are not there."""
    node = NODE_RED / "node_modules" / ".bin" / "node"
    red = NODE_RED / "node_modules" / "node-red" / "red.js"
    if not (node.exists() and red.exists()):
        sys.exit(
            f"--peer node-red: Node-RED is not installed in {NODE_RED / 'node_modules'};"
            " run `npm ci --prefix bench/node-red` (or `npm install --prefix bench/node-red`)"
        )
    return node, red


def _package_version(name: str) -> str:
    manifest = NODE_RED / "node_modules" / name / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def start_node_red(tmp: Path, port: int, peer: str) -> subprocess.Popen[bytes]:
    """Node-RED, headless, running bench/node-red/flows.json against the broker on `port`, with
    a userDir of its own under `tmp` and its log in `tmp`/`peer`.log."""
    node, red = _node_red_install()
    user_dir = tmp / peer
    user_dir.mkdir()
    shutil.copy(NODE_RED / "flows.json", user_dir / "flows.json")
    settings = NODE_RED / "settings.js"
    env = {**os.environ, "BENCH_MQTT_PORT": str(port)}
    if peer == "node-red-nodelay":
        env["NODE_OPTIONS"] = f"--require={NODE_RED / 'nodelay.js'}"
    with (tmp / f"{peer}.log").open("wb") as log:
        return subprocess.Popen(
            [str(node), str(red), "--userDir", str(user_dir), "--settings", str(settings)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_for_flow(
    proc: subprocess.Popen[bytes], port: int, controller: Controller, gauge: int, log: Path
) -> None:
    """Until a crossing at gauge `gauge` (one no level uses) brings its barrier's command back:
    the flow is deployed, connected and subscribed."""
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    barrier = f"b{gauge}"
    deadline = time.monotonic() + 60
    try:
        while barrier not in controller.arrived:
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited ({proc.returncode})" if proc.returncode is not None else "timed out"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"Node-RED's flow did not answer a crossing: {why}\n{tail}")
            payload = json.dumps({"value": 0.3, "ts": time.time()})
            pub.publish(f"{PREFIX}/sensors/bench/g{gauge}", payload, qos=1)
            answer_by = time.monotonic() + 0.5
            while barrier not in controller.arrived and time.monotonic() < answer_by:
                time.sleep(0.02)
    finally:
        pub.loop_stop()
        pub.disconnect()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _summary(lat: list[float]) -> str:
    lat = sorted(lat)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {lat[-1]:.2f} ms  (n={len(lat)})"


def run_levels(
    rates: list[int],
    samples: int,
    port: int,
    controller: Controller,
    first: int,
    listen: str | None,
    name: str,
) -> None:
    """Each load level in turn, on gauges from `first` on, printed beside its floor."""
    for n, rate in enumerate(rates):
        print(f"{rate:,} readings/s of background load:")
        ms, floor_ms = run_level(rate, first + n * samples, samples, port, controller, listen)
        print(f"  reading -> {name} -> command: {_summary(ms)}")
        print(f"  broker alone (floor):{' ' * (len(name) + 3)}{_summary(floor_ms)}")


def extract(ref: str, into: Path) -> Path:
    """The `hub` package of git commit `ref`, extracted under `into`."""
    into.mkdir(parents=True)
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref, "hub"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_hub(config: Path, listen: str, tree: Path | None) -> subprocess.Popen[bytes]:
    """`hub run` of this checkout, or of an extracted tree (with a data folder of its own)."""
    env = None
    if tree is not None:
        settings = json.loads(config.read_text())
        settings["data_dir"] = str(tree / "var")
        config = tree / "hub.yaml"
        config.write_text(json.dumps(settings))
        env = {**os.environ, "PYTHONPATH": str(tree)}
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "run", "-c", str(config)], cwd=tree, env=env
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{listen}/api/health", timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return hub


def main() -> None:
    """Run the benchmark and print p50/p99 per load level."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="1000,5000,10000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=PEERS,
        help="after the hub, measure this peer running the same threshold flow (repeatable)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="after this checkout's hub, measure the hub of git commit REF the same way",
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    if args.peer:
        _node_red_install()  # before the hub's levels, not after them
    # paho's network threads note arrival times here: with the default 5 ms GIL switch
    # interval, a thread woken by a message may wait that long to look at the clock.
    sys.setswitchinterval(0.0005)
    tmp = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    broker = LocalMosquitto(data_dir=tmp / "mosquitto", port=free_port())
    influx = LocalInflux(data_dir=tmp / "influxdb", port=free_port())
    broker.start()
    influx.start()
    hub = peer = None
    try:
        site = tmp / "site"
        site.mkdir()
        runs = 1 + len(args.peer) + (1 if args.baseline else 0)
        gauges = args.samples * len(rates) * runs + len(args.peer)
        (site / "bench.geojson").write_text(json.dumps(inventory(1000, gauges)))
        (tmp / "rules").mkdir()
        (tmp / "rules" / "flood.yaml").write_text(RULES)
        listen = f"127.0.0.1:{free_port()}"
        config = tmp / "hub.yaml"
        config.write_text(
            json.dumps(
                {
                    "mqtt": {"url": broker.url, "client_id": "hub-bench", "prefix": PREFIX},
                    "influx": {"url": influx.url, "database": "bench"},
                    "inventory": [str(site)],
                    "rules": [str(tmp / "rules")],
                    "api": {"listen": listen},
                    "actuators": {"rate_limit": {"commands": 1000}},
                    "data_dir": str(tmp / "var"),
                    "log_level": "warning",
                }
            )
        )
        hub = start_hub(config, listen, None)
        controller = Controller(broker.port)
        block = len(rates) * args.samples
        print("threshold crossing on MQTT -> close command at the controller")
        levels = partial(run_levels, rates, args.samples, broker.port, controller)
        levels(0, listen, "hub")
        if (args.peer or args.baseline) and hub is not None:
            # The hub is done: stopped, it takes no CPU from what comes next.
            _stop(hub)
            hub = None
        if args.baseline:
            first = (1 + len(args.peer)) * block + len(args.peer)  # after the peers' probes
            hub = start_hub(config, listen, extract(args.baseline, tmp / "baseline"))
            print(f"the hub at {args.baseline}, same broker, load and controller:")
            levels(first, listen, "hub")
            _stop(hub)
            hub = None
        for k, name in enumerate(args.peer):
            peer = start_node_red(tmp, broker.port, name)
            # Gauges and barriers of its own: the hub's levels used the first block of ids,
            # each peer takes the next one, and the probes come after all of them.
            first = (1 + k) * block
            probe = (1 + len(args.peer)) * block + k
            wait_for_flow(peer, broker.port, controller, probe, tmp / f"{name}.log")
            nagle = "Nagle off" if name == "node-red-nodelay" else "as shipped"
            print(
                f"Node-RED {_package_version('node-red')} (Node.js {_package_version('node')},"
                f" {nagle}), same threshold flow, broker, load and controller; hub stopped:"
            )
            levels(first, None, "node-red")
            _stop(peer)
            peer = None
    finally:
        if peer is not None:
            _stop(peer)
        if hub is not None:
            _stop(hub)
        influx.stop()
        broker.stop()


if __name__ == "__main__":
    main()
