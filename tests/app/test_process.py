"""`hub run` as a process: SIGTERM drains what it holds; SIGKILL loses nothing, because the
broker delivers again whatever the hub had not acknowledged."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.cli import main
from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.helpers import (
    HubProcess,
    Peer,
    influx_query,
    service_sections,
    wait_for,
    write_config,
    write_site,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_process(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
) -> HubProcess:
    config = write_config(
        tmp_path / "hub.yaml",
        # A long flush interval keeps readings in memory, where a kill would catch them.
        **service_sections(
            mosquitto.url,
            influx.url,
            prefix,
            database,
            uid,
            flush_interval="30s",
            batch_size=100_000,
        ),
        inventory=[str(write_site(tmp_path / "site"))],
        api={"listen": f"127.0.0.1:{free_port()}"},
        data_dir=str(tmp_path / "var"),
    )
    return hub_processes(config)


def publish(peer: Peer, prefix: str, count: int) -> None:
    base = time.time() - 600
    for i in range(count):
        body = {"value": i / 1000, "ts": base + i / 1000}
        peer.publish(f"{prefix}/sensors/suwon/wl-{100 + i % 100}", json.dumps(body))
    wait_for(peer.all_sent, f"{count} readings to reach the broker")


def take_readings(hub: HubProcess, peer: Peer, prefix: str, count: int) -> None:
    """Publish `count` readings and wait until the hub has taken them all."""
    publish(peer, prefix, count)
    wait_for(
        lambda: hub.metric("hub_readings_accepted_total") >= count,
        f"the hub to take all {count} readings",
    )


def stored(influx: LocalInflux, database: str) -> int:
    rows = influx_query(influx.url, database, "SELECT count(value) FROM reading")
    return int(rows[0]["count"]) if rows else 0  # type: ignore[call-overload]


def test_sigterm_drains_the_buffer_before_exit(
    hub_process: HubProcess,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    hub_process.start()
    peer = Peer(mosquitto.url, f"sensor-{uid}")
    try:
        take_readings(hub_process, peer, prefix, 500)
        assert stored(influx, database) == 0  # still in the hub's buffer
        assert hub_process.signal(signal.SIGTERM) == 0
    finally:
        peer.close()
    assert stored(influx, database) == 500
    assert "stopped" in hub_process.log.read_text()


def test_sigkill_with_readings_in_memory_loses_nothing(
    hub_process: HubProcess,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    hub_process.start()
    peer = Peer(mosquitto.url, f"sensor-{uid}")
    try:
        take_readings(hub_process, peer, prefix, 500)
        hub_process.signal(signal.SIGKILL)
        assert stored(influx, database) == 0
        hub_process.start()  # the same client id: the broker delivers the 500 again
        wait_for(
            lambda: hub_process.metric("hub_readings_accepted_total") >= 500,
            "the restarted hub to take the 500 readings again",
        )
        assert hub_process.signal(signal.SIGTERM) == 0
    finally:
        peer.close()
    assert stored(influx, database) == 500


def test_run_refuses_a_channel_whose_secret_is_not_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_TEST_WEBHOOK_KEY", raising=False)
    config = write_config(
        tmp_path / "hub.yaml",
        inventory=[str(write_site(tmp_path / "site"))],
        data_dir=str(tmp_path / "var"),
        api={"listen": f"127.0.0.1:{free_port()}"},
        notify={
            "channels": {
                "city": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/hook",
                    "secret_env": "HUB_TEST_WEBHOOK_KEY",
                }
            }
        },
    )
    assert main(["run", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "not starting" in err
    assert "HUB_TEST_WEBHOOK_KEY is not set" in err


def hub_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m hub run ARGS` in `cwd`, without the HUB_* variables; it must exit in 60 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "hub", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def occupied(port: int = 0) -> Iterator[int]:
    """A port on 127.0.0.1 that something listens on for the length of the block."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            yield port  # in use already: just as good
            return
        sock.listen()
        yield sock.getsockname()[1]


def test_an_api_port_in_use_is_one_line_on_stderr_and_exit_status_1(tmp_path: Path) -> None:
    with occupied() as port:
        config = write_config(
            tmp_path / "hub.yaml",
            inventory=[str(write_site(tmp_path / "site"))],
            api={"listen": f"127.0.0.1:{port}"},
            data_dir=str(tmp_path / "var"),
        )
        started = time.monotonic()
        done = hub_run(tmp_path, "-c", str(config))
    # Refused before it opens its store or connects to anything (no broker runs here).
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"hub: not starting: the API cannot listen on 127.0.0.1:{port}: the address is in "
        "use; set api.listen or stop what uses it"
    ]
    assert not (tmp_path / "var" / "hub.db").exists()


def test_hub_run_without_a_config_file_says_where_it_looked_and_what_it_runs_on(
    tmp_path: Path,
) -> None:
    # With no file the API listens on 127.0.0.1:8080: held here (or by whatever holds it
    # already), the hub says what it runs on and then stops at the port, connecting nowhere.
    with occupied(8080):
        done = hub_run(tmp_path)
    lines = done.stderr.splitlines()
    assert lines[0].endswith(
        f"WARNING hub: no config file (no -c, no $HUB_CONFIG, no hub.yaml in {tmp_path}): "
        "running on the defaults: MQTT mqtt://127.0.0.1:1883, InfluxDB http://127.0.0.1:8086 "
        f"database hub, data_dir {tmp_path}/var, inventory none (no sensors: every reading "
        "is refused), rules none"
    )
    assert lines[1:] == [
        "hub: not starting: the API cannot listen on 127.0.0.1:8080: the address is in use; "
        "set api.listen or stop what uses it"
    ]
    assert done.returncode == 1
