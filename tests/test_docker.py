"""What can be checked of the Docker stack without a Docker engine: the compose file names
files that exist, the stack's hub.yaml validates, and the broker's users and ACL keep each
region's devices to their own topics on a real Mosquitto."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hub.config import load_config
from hub.services import LocalMosquitto, free_port
from tests.helpers import Peer, wait_for
from tests.mqtt.support import ConfiguredMosquitto

DOCKER = Path(__file__).parent.parent / "docker"


def test_compose_file_names_files_that_exist() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert set(compose["services"]) >= {
        "mosquitto",
        "influxdb",
        "grafana",
        "hub",
        "detector-1",
        "detector-2",
    }
    assert compose["services"]["detector-2"]["command"] == ["detector", "--id", "2"]
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (DOCKER / source).resolve()
                if path.name == "passwd":
                    continue  # made by the operator with mosquitto_passwd (docker/README.md)
                assert path.exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()


def test_stack_config_validates(tmp_path: Path) -> None:
    repo = DOCKER.parent
    text = (DOCKER / "hub.yaml").read_text().replace("/opt/hub/", f"{repo}/")
    config_path = tmp_path / "hub.yaml"
    config_path.write_text(text)
    config = load_config(config_path, env={"HUB_MQTT_PASSWORD": "secret"})
    assert config.mqtt.username == "hub"
    assert config.mqtt.password == "secret"
    assert config.api.listen == "0.0.0.0:8080"
    # The models the image fetches at build time are where the stack's config looks.
    assert config.detection.detector is not None
    assert Path(str(config.detection.detector.model)).is_file()
    assert Path(str(config.detection.faces_model)).is_file()


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user in ("hub", "suwon", "goyang"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, f"{user}-pw"], check=True)
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    lines = "".join(
        line + "\n" for line in conf.splitlines() if line.startswith(("allow_anonymous", "max_"))
    )
    broker = ConfiguredMosquitto(
        data_dir=tmp_path / "mosquitto",
        port=free_port(),
        lines=lines + f"password_file {passwd}\nacl_file {DOCKER / 'mosquitto' / 'acl'}\n",
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.integration
def test_acl_keeps_each_region_to_its_own_topics(secured_broker: LocalMosquitto) -> None:
    url = secured_broker.url
    hub = Peer(url, "hub-1", username="hub", password="hub-pw")
    suwon = Peer(url, "gw-suwon", username="suwon", password="suwon-pw")
    try:
        hub.subscribe("hub/#")
        suwon.subscribe("hub/actuators/+/+/command")
        wait_for(lambda: _probe(hub, suwon), "both subscriptions")

        suwon.publish("hub/gateways/goyang/gw-1", b"not yours")  # refused by the ACL
        suwon.publish("hub/sensors/goyang/wl-9", b"not yours either")
        suwon.publish("hub/gateways/suwon/gw-1", b"mine")
        hub.publish("hub/actuators/goyang/b-1/command", b"for goyang")
        hub.publish("hub/actuators/suwon/b-1/command", b"for suwon")

        wait_for(
            lambda: (
                ("hub/gateways/suwon/gw-1", b"mine") in hub.received
                and any(p == b"for suwon" for _, p in suwon.received)
            ),
            "the allowed messages",
        )
    finally:
        hub.close()
        suwon.close()
    # Messages from one publisher arrive in order: had the refused ones been let through,
    # they would be here before the allowed one that came after them.
    assert all(
        topic.split("/")[2] == "suwon"
        for topic, _ in hub.received
        if topic.startswith(("hub/gateways/", "hub/sensors/"))
    )
    assert [p for _, p in suwon.received if p != b"probe"] == [b"for suwon"]
    intruder = subprocess.run(
        [
            "mosquitto_pub",
            "-p",
            str(secured_broker.port),
            "-u",
            "suwon",
            "-P",
            "wrong",
            "-t",
            "hub/sensors/suwon/wl-1",
            "-m",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert intruder.returncode != 0
    assert "not authori" in intruder.stderr


def _probe(hub: Peer, region: Peer) -> bool:
    """Publish a probe both may read; True once both have it (their subscriptions hold)."""
    if all(any(p == b"probe" for _, p in peer.received) for peer in (hub, region)):
        return True
    hub.publish("hub/actuators/suwon/probe/command", b"probe")
    return False
