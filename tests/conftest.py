"""Fixtures: real Mosquitto, InfluxDB and etcd processes on free loopback ports, one per test
session, with a topic prefix, a database and a key prefix of its own for each test; the sample
cameras (`local_cameras`, from tests/cameras/support.py), served by GStreamer on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.services import EtcdCluster, LocalInflux, LocalMosquitto, free_port
from tests.actuators.controller import Controller
from tests.cameras.support import local_cameras
from tests.helpers import HubProcess

__all__ = ["local_cameras"]  # a fixture for every test package


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMosquitto]:
    """A Mosquitto shared by the session; tests keep apart by topic prefix and client id."""
    broker = LocalMosquitto(data_dir=tmp_path_factory.mktemp("mosquitto"), port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """A Mosquitto for one test, for tests that stop or restart it."""
    broker = LocalMosquitto(data_dir=tmp_path / "mosquitto", port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInflux]:
    """An InfluxDB shared by the session; tests keep apart by database."""
    server = LocalInflux(data_dir=tmp_path_factory.mktemp("influxdb"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[LocalInflux]:
    """An InfluxDB for one test, for tests that stop or restart it."""
    server = LocalInflux(data_dir=tmp_path / "influxdb", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster shared by the session; tests keep apart by key prefix."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster for one test, for tests that kill or stop its members."""
    cluster = EtcdCluster(tmp_path / "etcd")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def controller(mosquitto: LocalMosquitto, prefix: str, uid: str) -> Iterator[Controller]:
    """A barrier controller for `bar-1` at the small province's underpass (region suwon)."""
    ctl = Controller(mosquitto.url, f"barrier-{uid}", prefix, "suwon", "bar-1")
    yield ctl
    ctl.close()


@pytest.fixture
def uid() -> str:
    """A short id unique to this test, for topic prefixes, client ids and database names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def prefix(uid: str) -> str:
    """The MQTT topic prefix of this test (the hub's `mqtt.prefix`, `hub` in production)."""
    return f"t{uid}/hub"


@pytest.fixture
def database(uid: str) -> str:
    """The InfluxDB database name of this test."""
    return f"test_{uid}"


@pytest.fixture
def hub_processes() -> Iterator[Callable[[Path], HubProcess]]:
    """`hub_processes(config)`: a `hub run` process for a config; killed at the end if alive."""
    made: list[HubProcess] = []

    def make(config: Path) -> HubProcess:
        hub = HubProcess.for_config(config)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.stop()
