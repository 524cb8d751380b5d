"""A hub in the test's event loop with one barrier, and a controller process standing in for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub, running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    api_tokens,
    point,
    service_sections,
    small_province,
    write_config,
    write_site,
)

FLOOD = """
rules:
  - id: underpass-flood
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm}
    clear: {below: 10 cm}
    actions:
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: open}
"""
TIMING = {"ack_timeout": "500ms", "resend_every": "150ms", "done_timeout": "1s", "expires": "30s"}
OPERATOR = "op-secret"
VIEWER = "view-secret"


def province() -> dict[str, Any]:
    """The small province with a barrier at the underpass."""
    inv = small_province()
    features = inv["features"]
    assert isinstance(features, list)
    features.append(
        point("actuator", 127.01, 37.26, id="bar-1", kind="barrier", region="suwon", site="up-1")
    )
    return inv


def hub_config(
    tmp_path: Path,
    mosquitto_url: str,
    influx_url: str,
    prefix: str,
    database: str,
    uid: str,
    **actuators: object,
) -> Path:
    """A hub.yaml for these tests; `actuators` adds to the fast timing."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "flood.yaml").write_text(FLOOD)
    tokens = api_tokens(OPERATOR, VIEWER)
    return write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto_url, influx_url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_site(tmp_path / "site", province()))],
        rules=[str(tmp_path / "rules")],
        api={"listen": f"127.0.0.1:{free_port()}", "tokens": tokens},
        actuators={**TIMING, **actuators},
        data_dir=str(tmp_path / "var"),
    )


@pytest.fixture
def make_hub(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> Any:
    """`async with make_hub(**actuators) as hub:` runs a hub with these actuator settings."""

    def make(**actuators: object) -> Any:
        path = hub_config(tmp_path, mosquitto.url, influx.url, prefix, database, uid, **actuators)
        config = load_config(path)
        return running(config, load_inventory(config.inventory))

    return make


@pytest.fixture
async def hub(make_hub: Any) -> AsyncIterator[Hub]:
    async with make_hub() as running_hub:
        await running_hub.mqtt.wait_connected(10)
        yield running_hub
