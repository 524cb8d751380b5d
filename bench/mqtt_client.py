"""How many QoS 0 messages a second the hub's MQTT client receives and parses, against
`mosquitto_sub` on the same stream through the same broker.

It starts its own Mosquitto on a free port, encodes N small JSON readings on 100 topics as
one blob of PUBLISH packets, and has a separate process send that blob from a raw socket
(after CONNECT) as fast as the broker takes it. Each subscriber is timed from the start of
the send to its last message; those runs measure the broker as much as the subscriber. The
backlog run times the client alone: it reads only once the broker holds every message.

    .venv/bin/python bench/mqtt_client.py [--messages 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from hub.mqtt import Connect, Disconnect, Message, MqttClient, Parser, encode, encode_publish
from hub.services import LocalMosquitto, free_port

TOPICS = [f"x/sensors/r{i % 10}/wl-{i}" for i in range(100)]


def make_blob(n: int) -> bytes:
    """N PUBLISH packets (QoS 0) of readings like {"value": 1.23, "ts": 1767225600}."""
    return b"".join(
        encode_publish(
            TOPICS[i % 100], b'{"value": %.2f, "ts": %d}' % (i % 1000 / 100, 1767225600 + i)
        )
        for i in range(n)
    )


def publish(port: int, blob_path: str) -> None:
    """Send CONNECT, then the blob, then DISCONNECT, from a plain socket (the `--publish` mode)."""
    blob = Path(blob_path).read_bytes()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(encode(Connect("bench-publisher", keepalive=60)))
        sock.recv(64)  # CONNACK
        sock.sendall(blob)
        sock.sendall(encode(Disconnect()))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # the broker closes after reading everything
            pass


def start_publisher(port: int, blob_path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--publish", str(port), blob_path])


def bench_mosquitto_sub(port: int, blob_path: str, n: int) -> float:
    """Messages per second that `mosquitto_sub -t 'x/#' > /dev/null` takes."""
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(port), "-t", "x/#", "-C", str(n), "-q", "0"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # it has no "subscribed" signal; half a second is ample on loopback
    began = time.perf_counter()
    pub = start_publisher(port, blob_path)
    sub.wait(timeout=300)
    elapsed = time.perf_counter() - began
    pub.wait(timeout=60)
    return n / elapsed


async def bench_client(
    port: int,
    blob_path: str,
    n: int,
    parse_json: bool,
    cpu: dict[bool, list[float]] | None = None,
    backlog: bool = False,
) -> float:
    """Messages per second that MqttClient receives (and with `parse_json`, decodes).

    The CPU time of this process while it does so goes into `cpu[parse_json]`. With `backlog`,
    the client does not read until the broker holds all messages for it, so that it is timed
    on its own rather than behind the broker.
    """
    done = asyncio.Event()
    count = 0
    loads = orjson.loads

    def on_messages(batch: list[Message]) -> None:
        nonlocal count
        if parse_json:
            for m in batch:
                loads(m.payload)
        count += len(batch)
        if count >= n:
            done.set()

    client = MqttClient(
        f"mqtt://127.0.0.1:{port}",
        client_id=f"bench-{time.monotonic_ns()}",
        clean_start=True,
        session_expiry=0,
        subscriptions=[("x/#", 0)],
        on_messages=on_messages,
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(client.run(), name="bench-client")
        await client.wait_connected(10)
        if backlog:
            client.pause_reading()
            pub = await asyncio.to_thread(start_publisher, port, blob_path)
            await asyncio.to_thread(pub.wait, 60)
        began, cpu_began = time.perf_counter(), time.process_time()
        if backlog:
            client.resume_reading()
        else:
            pub = await asyncio.to_thread(start_publisher, port, blob_path)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - began
        if cpu is not None:
            cpu[parse_json].append(time.process_time() - cpu_began)
        await client.stop()
    await asyncio.to_thread(pub.wait, 60)
    return n / elapsed


def bench_parser(blob: bytes, n: int) -> float:
    """Messages per second of Parser.feed alone, on 256 KiB reads (as asyncio reads)."""
    parser = Parser()
    began = time.perf_counter()
    got = sum(len(parser.feed(blob[i : i + 262144])) for i in range(0, len(blob), 262144))
    elapsed = time.perf_counter() - began
    assert got == n
    return n / elapsed


def report(name: str, rates: list[float]) -> None:
    print(
        f"{name:<44} median {statistics.median(rates):>9,.0f} msg/s"
        f"   best {max(rates):>9,.0f}   runs: {', '.join(f'{r:,.0f}' for r in rates)}"
    )


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--messages", type=int, default=200_000)
    args.add_argument("--runs", type=int, default=3)
    args.add_argument("--publish", nargs=2, metavar=("PORT", "BLOB"), help=argparse.SUPPRESS)
    opts = args.parse_args()
    if opts.publish:
        publish(int(opts.publish[0]), opts.publish[1])
        return
    n = opts.messages
    blob = make_blob(n)
    print(f"{n:,} messages on {len(TOPICS)} topics, {len(blob) / n:.0f} bytes a packet")
    with tempfile.TemporaryDirectory() as tmp:
        blob_path = str(Path(tmp) / "blob")
        Path(blob_path).write_bytes(blob)
        broker = LocalMosquitto(data_dir=Path(tmp) / "mosquitto", port=free_port())
        broker.start()
        try:
            port = broker.port

            def client(parse_json: bool) -> Callable[[], float]:
                return lambda: asyncio.run(bench_client(port, blob_path, n, parse_json, cpu))

            cpu: dict[bool, list[float]] = {False: [], True: []}
            runs: list[tuple[str, Callable[[], float]]] = [
                ("mosquitto_sub > /dev/null", lambda: bench_mosquitto_sub(port, blob_path, n)),
                ("MqttClient, parse MQTT only", client(False)),
                ("MqttClient, parse MQTT + orjson.loads", client(True)),
                (
                    "MqttClient + orjson, draining a backlog",
                    lambda: asyncio.run(bench_client(port, blob_path, n, True, backlog=True)),
                ),
            ]
            results: dict[str, list[float]] = {name: [] for name, _ in runs}
            for _ in range(opts.runs):  # interleaved, so that a busy moment hits all alike
                for name, run in runs:
                    results[name].append(run())
            for name, rates in results.items():
                report(name, rates)
            for parse_json, seconds in cpu.items():
                us = statistics.median(seconds) / n * 1e6
                what = "MQTT + JSON" if parse_json else "MQTT only"
                print(f"client CPU ({what}): {us:.2f} us a message (idle wake-ups included)")
        finally:
            broker.stop()
    report("Parser.feed alone (no broker)", [bench_parser(blob, n) for _ in range(opts.runs)])


if __name__ == "__main__":
    main()
