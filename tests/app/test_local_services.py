"""`hub run --local-services DIR` (what scripts/start runs): Mosquitto and InfluxDB started as
children on the config's ports when nothing answers there, data in DIR, and stopped with the
hub."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hub.services import free_port, port_open
from tests.helpers import wait_for, write_config, write_site

pytestmark = pytest.mark.integration


def test_the_hub_starts_its_own_broker_and_database_and_stops_them(tmp_path: Path) -> None:
    mqtt, influx, api = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path / "hub.yaml",
        mqtt={"url": f"mqtt://127.0.0.1:{mqtt}", "reconnect_min": "50ms", "reconnect_max": "500ms"},
        influx={"url": f"http://127.0.0.1:{influx}", "database": "local"},
        inventory=[str(write_site(tmp_path / "site"))],
        api={"listen": f"127.0.0.1:{api}"},
        data_dir=str(tmp_path / "var"),
    )
    services = tmp_path / "services"
    with (tmp_path / "hub.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "-c", str(config), "--local-services",
             str(services)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def health() -> dict[str, object]:
        assert proc.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/health", timeout=2) as r:
                return dict(json.load(r))
        except OSError:
            return {}

    try:
        wait_for(lambda: health().get("mqtt_connected"), "the hub on its own broker", timeout=60)
        assert port_open("127.0.0.1", influx)
        assert (services / "mosquitto").is_dir()
        assert (services / "influxdb").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not port_open("127.0.0.1", mqtt)
    assert not port_open("127.0.0.1", influx)
