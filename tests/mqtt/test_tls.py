"""TLS the way operators deploy it, against a real Mosquitto: the broker trusts our CA and asks
for a client certificate; the hub trusts the CA in mqtt.ca_file and presents mqtt.cert_file.
Each way it can go wrong is logged as a sentence that names the key to change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.app import running
from hub.cli import main
from hub.config import MqttConfig, load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port, port_open
from hub.tls import mqtt_ssl_context
from tests.helpers import eventually, influx_query, wait_for, write_config, write_site
from tests.mqtt.support import Inbox, StartClient
from tests.pki import Pki, make_pki

pytestmark = pytest.mark.integration

# OpenSSL's configuration for a Mosquitto that speaks TLS 1.2 at most: its `tls_version` sets
# the oldest version a listener accepts, never the newest.
TLS_1_2_ONLY = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MaxProtocol = TLSv1.2
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_broker(
    folder: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch, *, tls_1_2_only: bool
) -> Iterator[str]:
    """A Mosquitto whose second listener is TLS with a client certificate required; its URL."""
    folder.mkdir()
    port = free_port()
    broker = LocalMosquitto(
        data_dir=folder,
        port=free_port(),
        extra_config=(
            f"listener {port} 127.0.0.1\n"
            f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            "require_certificate true\ntls_version tlsv1.2\n"
        ),
    )
    with monkeypatch.context() as env:
        if tls_1_2_only:
            (folder / "openssl.cnf").write_text(TLS_1_2_ONLY)
            env.setenv("OPENSSL_CONF", str(folder / "openssl.cnf"))
        broker.start()
    try:
        wait_for(lambda: port_open("127.0.0.1", port), f"Mosquitto's TLS listener on {port}")
        yield f"mqtts://127.0.0.1:{port}"
    finally:
        broker.stop()


@pytest.fixture
def broker_tls12(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """mqtts:// URL of a broker that speaks TLS 1.2 only and requires a client certificate."""
    yield from _tls_broker(tmp_path / "tls12", pki, monkeypatch, tls_1_2_only=True)


@pytest.fixture
def broker_tls13(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """mqtts:// URL of a broker that speaks TLS 1.2 and 1.3 and requires a client certificate."""
    yield from _tls_broker(tmp_path / "tls13", pki, monkeypatch, tls_1_2_only=False)


def mqtt_config(folder: Path, url: str, **tls: object) -> MqttConfig:
    """The `mqtt` section of a hub.yaml with these TLS keys, as the hub loads it."""
    path = write_config(folder / "hub.yaml", mqtt={"url": url, **tls})
    return load_config(path, env={}).mqtt


def client_tls(pki: Pki) -> dict[str, object]:
    return {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> str:
    """The first warning logged that holds `text`, waited for."""

    def find() -> str | None:
        for record in caplog.records:
            if record.levelno >= logging.WARNING and text in record.getMessage():
                return record.getMessage()
        return None

    found = await eventually(find, f"a warning with {text!r}", timeout=10)
    assert found is not None
    return found


async def test_a_client_certificate_from_the_config_connects_publishes_and_receives(
    tmp_path: Path, pki: Pki, broker_tls12: str, start_client: StartClient, uid: str
) -> None:
    cfg = mqtt_config(tmp_path, broker_tls12, **client_tls(pki))
    inbox = Inbox()
    topic = f"t{uid}/tls"
    client = start_client(
        cfg.url,
        client_id=f"tls-{uid}",
        ssl_context=mqtt_ssl_context(cfg),
        subscriptions=[(topic, 1)],
        on_messages=inbox,
    )
    await client.wait_connected(10)
    await client.publish(topic, b"over TLS", qos=1)
    await eventually(lambda: inbox.payloads() == [b"over TLS"], "the message to come back")


@pytest.mark.parametrize("broker", ["broker_tls12", "broker_tls13"])
async def test_without_a_client_certificate_the_broker_refuses_and_the_log_says_why(
    tmp_path: Path,
    pki: Pki,
    broker: str,
    request: pytest.FixtureRequest,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    # TLS 1.2 refuses in the handshake, with an alert that names no certificate; TLS 1.3
    # refuses after it, on the first read.
    url = request.getfixturevalue(broker)
    cfg = mqtt_config(tmp_path, url, ca_file=str(pki.ca))
    client = start_client(cfg.url, client_id=f"tls-{uid}", ssl_context=mqtt_ssl_context(cfg))
    message = await logged(caplog, "requires a client certificate")
    assert "set mqtt.cert_file and mqtt.key_file" in message
    reason = "SSLV3_ALERT_HANDSHAKE_FAILURE" if broker == "broker_tls12" else "CERTIFICATE_REQUIRED"
    assert reason in message
    assert not client.connected


async def test_tls_1_3_at_least_against_a_tls_1_2_broker_fails_clearly(
    tmp_path: Path,
    pki: Pki,
    broker_tls12: str,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    cfg = mqtt_config(tmp_path, broker_tls12, tls_min_version="1.3", **client_tls(pki))
    client = start_client(cfg.url, client_id=f"tls-{uid}", ssl_context=mqtt_ssl_context(cfg))
    message = await logged(caplog, "does not speak TLS 1.3 or newer")
    assert "mqtt.tls_min_version" in message
    assert "set mqtt.tls_min_version to 1.2" in message
    assert not client.connected


async def test_a_broker_certificate_from_an_unknown_ca_is_refused_clearly(
    tmp_path: Path,
    pki: Pki,
    broker_tls13: str,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    # Neither the system's CAs nor another CA in mqtt.ca_file vouch for the broker.
    system = mqtt_config(tmp_path, broker_tls13)
    start_client(system.url, client_id=f"tls-{uid}-a", ssl_context=mqtt_ssl_context(system))
    message = await logged(caplog, "does not verify against the system's CAs")
    assert "set mqtt.ca_file to the CA that signed it" in message
    other = mqtt_config(tmp_path, broker_tls13, ca_file=str(pki.other_ca))
    start_client(other.url, client_id=f"tls-{uid}-b", ssl_context=mqtt_ssl_context(other))
    message = await logged(caplog, "does not verify against mqtt.ca_file")
    assert str(pki.other_ca) in message


async def test_the_hub_and_hub_simulate_use_tls_from_the_config(
    tmp_path: Path,
    pki: Pki,
    broker_tls13: str,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config_path = write_config(
        tmp_path / "hub.yaml",
        mqtt={"url": broker_tls13, "client_id": f"hub-{uid}", "prefix": prefix, **client_tls(pki)},
        influx={"url": influx.url, "database": database, "flush_interval": "50ms"},
        inventory=[str(write_site(tmp_path / "site"))],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
    )
    script = tmp_path / "rise.yaml"
    script.write_text(
        "steps:\n"
        "  - {at: 0s, sensor: wl-1, value: 10}\n"
        "  - {at: 0s, sensor: wl-100, value: 2}\n"
        "  - {at: 0s, sensor: rain-1, value: 30}\n"
    )
    config = load_config(config_path, env={})
    # The hub's own client, and the one that reads back retained incidents at a first start.
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        assert not [r for r in caplog.records if "could not be read" in r.getMessage()]
        rc = await asyncio.to_thread(main, ["simulate", str(script), "-c", str(config_path)])
        assert rc == 0

        def stored() -> int:
            rows = influx_query(influx.url, database, "SELECT count(value) FROM reading")
            return int(str(rows[0]["count"])) if rows else 0

        await eventually(lambda: stored() == 3, "the 3 readings sent over TLS to be stored")


async def test_mqtts_to_a_port_that_answers_in_something_else_says_it_is_not_tls(
    tmp_path: Path,
    influx: LocalInflux,
    pki: Pki,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    # InfluxDB's HTTP port answers the TLS hello with an HTTP error.
    cfg = mqtt_config(tmp_path, influx.url.replace("http://", "mqtts://"), ca_file=str(pki.ca))
    client = start_client(cfg.url, client_id=f"tls-{uid}", ssl_context=mqtt_ssl_context(cfg))
    message = await logged(caplog, "did not answer in TLS")
    assert "is the port in mqtt.url its TLS listener" in message
    assert not client.connected
