"""Ingest benchmark: readings/s end to end (published on MQTT -> stored in InfluxDB) through a
real `hub run` process, beside what a bare `mosquitto_sub` takes of the same stream in the
same run. Not a test: it prints figures.

    .venv/bin/python bench/ingest.py [--messages 200000] [--batch-messages 10000 --per-batch 100]

Both sides get the identical byte stream: a raw socket sends one pre-encoded blob of QoS 0
PUBLISH packets, so the publisher costs next to nothing and the consumer is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from hub.mqtt.codec import encode, encode_publish
from hub.mqtt.packets import Connect
from hub.services import LocalInflux, LocalMosquitto, free_port

REGION = "bench"
PREFIX = "hub"


def single_stream(count: int, sensors: int, base: float) -> bytes:
    """`count` single-reading messages over `sensors` topics, each with its own timestamp."""
    parts = []
    for i in range(count):
        sensor = f"s{i % sensors}"
        payload = b'{"value": %.3f, "ts": %.6f}' % (i % 1000 / 100, base + i / 1e6)
        parts.append(encode_publish(f"{PREFIX}/sensors/{REGION}/{sensor}", payload))
    return b"".join(parts)


def untimed_stream(count: int, sensors: int) -> bytes:
    """`count` single-reading messages without `ts`: the hub stamps each on arrival."""
    parts = []
    for i in range(count):
        payload = b'{"value": %.3f}' % (i % 1000 / 100)
        parts.append(encode_publish(f"{PREFIX}/sensors/{REGION}/s{i % sensors}", payload))
    return b"".join(parts)


def distinct_since(influx: LocalInflux, since_ns: int, want: int) -> int:
    """Readings InfluxDB holds from `since_ns` on: those that no other overwrote. A write
    InfluxDB acknowledged shows in queries a moment later: ask until `want` or 10 s."""
    query = urllib.parse.urlencode(
        {"db": "bench", "q": f"SELECT count(value) FROM reading WHERE time >= {since_ns}"}
    )
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{influx.url}/query?{query}", timeout=30) as resp:
            series = json.load(resp)["results"][0].get("series") or [{"values": [[0, 0]]}]
        got = int(series[0]["values"][0][1])
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def gateway_stream(messages: int, per: int, sensors: int, base: float) -> bytes:
    parts = []
    n = 0
    for m in range(messages):
        readings = []
        for _ in range(per):
            readings.append(
                {"sensor": f"s{n % sensors}", "value": n % 1000 / 100, "ts": base + n / 1e6}
            )
            n += 1
        parts.append(
            encode_publish(
                f"{PREFIX}/gateways/{REGION}/gw{m % 50}",
                json.dumps({"readings": readings}).encode(),
            )
        )
    return b"".join(parts)


def send(port: int, blob: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(encode(Connect(keepalive=60, client_id=f"bench-pub-{os.getpid()}")))
        sock.recv(64)  # CONNACK
        sock.sendall(blob)
        sock.sendall(b"\xe0\x00")  # DISCONNECT: the broker has every message once it reads this
        sock.settimeout(30)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def bare_rate(broker: LocalMosquitto, blob: bytes, messages: int) -> float:
    """Messages/s a bare `mosquitto_sub > /dev/null` takes of the stream."""
    client_id = f"bench-sub-{time.monotonic_ns()}"
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "0",
            "-t",
            f"{PREFIX}/#",
            "-C",
            str(messages),
            "-i",
            client_id,
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait_for_log(broker, f"{client_id} 0 {PREFIX}/#")
    start = time.perf_counter()
    send(broker.port, blob)
    sub.wait(timeout=600)
    return messages / (time.perf_counter() - start)


def _wait_for_log(broker: LocalMosquitto, text: str) -> None:
    """The broker logs each subscription (log_type subscribe): the subscriber is ready."""
    deadline = time.monotonic() + 10
    log = broker.data_dir.parent / "subscriptions.log"
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"no subscription {text!r} in the broker's log")
        time.sleep(0.005)


def _stored(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("hub_points_stored_total"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def hub_rate(metrics_url: str, port: int, blob: bytes, readings: int, before: float) -> float:
    start = time.perf_counter()
    send(port, blob)
    deadline = time.monotonic() + 600
    while _stored(metrics_url) - before < readings:
        if time.monotonic() > deadline:
            raise SystemExit(f"hub stored {_stored(metrics_url) - before} of {readings}")
        time.sleep(0.01)
    return readings / (time.perf_counter() - start)


def _runs(rates: list[float]) -> str:
    return "[" + ", ".join(f"{r:,.0f}" for r in rates) + "]"


def inventory(sensors: int) -> dict[str, object]:
    feats: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[127, 37], [128, 37], [128, 38], [127, 37]]],
            },
            "properties": {"type": "region", "id": REGION, "name": "Bench"},
        }
    ]
    feats += [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [127.5, 37.5]},
            "properties": {
                "type": "sensor",
                "id": f"s{i}",
                "kind": "water_level",
                "region": REGION,
            },
        }
        for i in range(sensors)
    ]
    return {"type": "FeatureCollection", "features": feats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--batch-messages", type=int, default=10_000)
    parser.add_argument("--per-batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    # Mosquitto flushes a log file line by line (its stdout is buffered): subscriptions show
    # there at once, which tells when a subscriber is ready.
    sublog = tmp / "subscriptions.log"
    broker = LocalMosquitto(
        data_dir=tmp / "mosquitto",
        port=free_port(),
        extra_config=f"log_dest file {sublog}\nlog_type subscribe\n",
    )
    influx = LocalInflux(data_dir=tmp / "influxdb", port=free_port())
    broker.start()
    influx.start()
    site = tmp / "site"
    site.mkdir()
    (site / "bench.geojson").write_text(json.dumps(inventory(args.sensors)))
    listen = f"127.0.0.1:{free_port()}"
    config = tmp / "hub.yaml"
    config.write_text(
        json.dumps(
            {
                "mqtt": {"url": broker.url, "client_id": "hub-bench", "prefix": PREFIX},
                "influx": {"url": influx.url, "database": "bench"},
                "ingest": {"max_age": "3650d"},
                "inventory": [str(site)],
                "api": {"listen": listen},
                "data_dir": str(tmp / "var"),
                "log_level": "warning",
            }
        )
    )
    hub = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(config)])
    metrics_url = f"http://{listen}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _stored(metrics_url)
                break
            except OSError:
                if time.monotonic() > deadline or hub.poll() is not None:
                    raise SystemExit("hub did not start") from None
                time.sleep(0.05)
        base = time.time() - 86400
        # Warm-up: the hub is subscribed and its caches are filled once these are stored.
        hub_rate(metrics_url, broker.port, single_stream(2000, args.sensors, base - 3600), 2000, 0)

        print(f"# {os.cpu_count()} CPUs; median of {args.repeat} interleaved runs of each")
        bares, hubs = [], []
        for run in range(args.repeat):
            blob = single_stream(args.messages, args.sensors, base + run * 1000)
            bares.append(bare_rate(broker, blob, args.messages))
            hubs.append(
                hub_rate(metrics_url, broker.port, blob, args.messages, _stored(metrics_url))
            )
        bare, got = statistics.median(bares), statistics.median(hubs)
        print(
            f"single readings: {args.messages:,} messages of {len(blob) // args.messages} B "
            f"on {args.sensors:,} topics, QoS 0"
        )
        print(
            f"  mosquitto_sub > /dev/null : {bare:10,.0f} msg/s       {_runs(bares)} (bare limit)"
        )
        print(f"  hub, MQTT -> InfluxDB     : {got:10,.0f} readings/s  {_runs(hubs)}")
        print(f"  ratio {got / bare:.2f} of bare (target >= 0.60)")

        hubs, kept = [], []
        for _ in range(args.repeat):
            blob = untimed_stream(args.messages, args.sensors)
            start_ns = time.time_ns()
            hubs.append(
                hub_rate(metrics_url, broker.port, blob, args.messages, _stored(metrics_url))
            )
            kept.append(distinct_since(influx, start_ns, args.messages))
        print("readings without ts (stamped on arrival, strictly increasing per sensor), QoS 0")
        print(
            f"  hub, MQTT -> InfluxDB     : {statistics.median(hubs):10,.0f} readings/s  "
            f"{_runs(hubs)}"
        )
        print(f"  distinct readings kept    : {min(kept):,} of {args.messages:,} (limit: all)")

        total = args.batch_messages * args.per_batch
        bares, hubs = [], []
        for run in range(args.repeat):
            blob = gateway_stream(
                args.batch_messages, args.per_batch, args.sensors, base + 10_000 + run * 1000
            )
            bares.append(bare_rate(broker, blob, args.batch_messages))
            hubs.append(hub_rate(metrics_url, broker.port, blob, total, _stored(metrics_url)))
        bare, got = statistics.median(bares), statistics.median(hubs)
        print(f"gateway batches: {args.batch_messages:,} messages x {args.per_batch} readings")
        print(
            f"  mosquitto_sub > /dev/null : {bare:10,.0f} msg/s = "
            f"{bare * args.per_batch:,.0f} readings/s {_runs(bares)}"
        )
        print(
            f"  hub, MQTT -> InfluxDB     : {got:10,.0f} readings/s  {_runs(hubs)} "
            "(target >= 100,000)"
        )
    finally:
        hub.terminate()
        hub.wait(timeout=60)
        broker.stop()
        influx.stop()


if __name__ == "__main__":
    main()
