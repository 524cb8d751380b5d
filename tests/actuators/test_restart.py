"""SIGKILL between sending a command and its acknowledgement: after the restart the command is
confirmed, with the same id, and the barrier closed exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.services import LocalInflux, LocalMosquitto
from tests.actuators.conftest import VIEWER, hub_config
from tests.actuators.controller import Controller
from tests.helpers import HubProcess, Peer, wait_for

pytestmark = pytest.mark.integration


def actuators(hub: HubProcess) -> list[dict[str, Any]]:
    return list(hub.get("/api/actuators", VIEWER)["actuators"])


def confirmed(hub: HubProcess) -> list[dict[str, Any]]:
    """Actuators whose last command is done."""
    return [a for a in actuators(hub) if a["last"] and a["last"]["state"] == "done"]


@pytest.fixture
def hub(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
) -> HubProcess:
    """A `hub run` process, not started yet."""
    return hub_processes(hub_config(tmp_path, mosquitto.url, influx.url, prefix, database, uid))


@pytest.fixture
def gauge(mosquitto: LocalMosquitto, prefix: str, uid: str) -> Iterator[Callable[[], None]]:
    """Sends one reading above the flood level."""
    peer = Peer(mosquitto.url, f"gauge-{uid}")
    yield lambda: peer.publish(
        f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": time.time()})
    )
    peer.close()


def test_sigkill_between_command_and_ack_closes_the_barrier_once(
    hub: HubProcess, gauge: Callable[[], None], controller: Controller
) -> None:
    controller.behaviour = "hold"
    hub.start()
    gauge()
    wait_for(lambda: controller.held, "the close command to reach the controller")
    hub.signal(signal.SIGKILL)

    # While the hub is down the barrier closes and acknowledges; the broker keeps the
    # acks for the hub's session.
    controller.release()
    hub.start()
    barrier = wait_for(lambda: confirmed(hub), "the command to be confirmed after the restart")[0]
    assert barrier["state"] == "closed"
    assert not barrier["pending"]
    assert hub.signal(signal.SIGTERM) == 0
    assert controller.state == "closed"
    assert list(controller.executed.values()) == [1], "the barrier was commanded twice"
    assert list(controller.received) == [barrier["last"]["command_id"]], "a second command id"


def test_sigkill_before_the_controller_answers_resends_the_same_command(
    hub: HubProcess, gauge: Callable[[], None], controller: Controller
) -> None:
    controller.behaviour = "never"
    hub.start()
    gauge()
    wait_for(lambda: controller.received, "the close command to reach the controller")
    hub.signal(signal.SIGKILL)
    (cid,) = controller.received
    seen = controller.received[cid]
    controller.behaviour = "normal"  # back in service: it answers the resend
    hub.start()
    wait_for(lambda: confirmed(hub), "the resent command to be confirmed")
    assert controller.received[cid] > seen
    assert hub.signal(signal.SIGTERM) == 0
    assert list(controller.executed.items()) == [(cid, 1)]
    assert controller.state == "closed"
