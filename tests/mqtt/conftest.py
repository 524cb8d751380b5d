"""Fixtures of the MQTT client's tests: clients that are stopped at the end of the test, and
brokers with configurations of their own."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.mqtt import MqttClient
from hub.services import LocalMosquitto, free_port
from tests.mqtt.support import ConfiguredMosquitto, StartClient


@pytest.fixture
async def start_client() -> AsyncIterator[StartClient]:
    """Start `MqttClient(url, **kwargs).run()` in a task; every client is stopped at the end."""
    running: list[tuple[MqttClient, asyncio.Task[None]]] = []

    def start(url: str, **kwargs: Any) -> MqttClient:
        kwargs.setdefault("backoff_min", 0.05)
        kwargs.setdefault("backoff_max", 0.5)
        kwargs.setdefault("connect_timeout", 2.0)
        client = MqttClient(url, **kwargs)
        running.append((client, asyncio.create_task(client.run(), name=kwargs["client_id"])))
        return client

    yield start
    for client, _ in running:
        await client.stop(grace=1.0)
    # run() must have returned by itself after stop(); a failure in it fails the test here.
    async with asyncio.timeout(10):
        await asyncio.gather(*(task for _, task in running))


@pytest.fixture
def default_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """Mosquitto as installed, configured with nothing but a listener (max_inflight 20)."""
    broker = ConfiguredMosquitto(
        data_dir=tmp_path / "default", port=free_port(), lines="allow_anonymous true\n"
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[LocalMosquitto, Path]]:
    """Mosquitto with a TLS listener and a self-signed certificate for 127.0.0.1."""
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    lines = f"allow_anonymous true\ncertfile {cert}\nkeyfile {key}\n"
    broker = ConfiguredMosquitto(data_dir=folder, port=free_port(), lines=lines)
    broker.start()
    yield broker, cert
    broker.stop()


@pytest.fixture
def password_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """Mosquitto that takes user `sensor` with password `s3cret` only."""
    folder = tmp_path / "auth"
    folder.mkdir()
    passwords = folder / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "sensor", "s3cret"],
        check=True,
        capture_output=True,
    )
    lines = f"allow_anonymous false\npassword_file {passwords}\n"
    broker = ConfiguredMosquitto(data_dir=folder, port=free_port(), lines=lines)
    broker.start()
    yield broker
    broker.stop()
