"""The hub's own relay lives as long as the hub: killed, the hub leaves no relay behind."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api import support
from tests.helpers import HubProcess, api_tokens, hub_yaml, point, small_province, wait_for

pytestmark = pytest.mark.integration


def test_a_killed_hub_leaves_no_relay(
    tmp_path: Path,
    camera: str,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
) -> None:
    site = small_province()
    site["features"].append(  # type: ignore[union-attr]
        point("camera", 127.012, 37.262, id="cam-1", region="suwon", url=camera)
    )
    api = {
        "listen": f"127.0.0.1:{free_port()}",
        "tokens": api_tokens(support.OPERATOR, support.VIEWER),
    }
    config = hub_yaml(
        tmp_path, mosquitto.url, influx.url, prefix, database, uid, site=site, api=api
    )
    hub = hub_processes(config)
    hub.start()
    assert hub.get("/api/cameras/cam-1/live", support.VIEWER)["camera"] == "cam-1"
    assert hub.proc is not None
    relays = [
        p for p in psutil.Process(hub.proc.pid).children() if "relay" in " ".join(p.cmdline())
    ]
    assert len(relays) == 1
    hub.signal(signal.SIGKILL)
    # Its parent gone, the relay is adopted; it exits (and is reaped) once the pipe closes.
    wait_for(lambda: not relays[0].is_running(), "the relay to stop")
