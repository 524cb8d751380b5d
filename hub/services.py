"""Local Mosquitto and InfluxDB processes, for tests, demos and `hub run --local-services`, and
the detection workers `hub run --detectors` and `hub demo` start beside the hub."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServiceError(RuntimeError):
    """A local service could not be started or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(
    ready: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    deadline_s: float,
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode}: {_tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    raise ServiceError(f"{what} not ready after {deadline_s:.0f}s: {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class LocalService:
    """A server process that we started ourselves and stop by PID."""

    name: str
    binary: str
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.host, self.port)

    def start(self, deadline_s: float = 30.0) -> None:
        """Start the process and return once it answers."""
        if shutil.which(self.binary) is None:
            raise ServiceError(
                f"{self.binary} not found on PATH: run scripts/install to get Debian's package"
            )
        if self.proc is not None and self.proc.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the child
        )
        _wait(self.ready, f"{self.name} on port {self.port}", self.proc, self.log_path, deadline_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalMosquitto(LocalService):
    """Mosquitto with persistence on, so that a restart keeps sessions and queued messages."""

    name: str = "mosquitto"
    binary: str = "mosquitto"
    data_dir: Path = Path("var/mosquitto")
    port: int = 1883
    extra_config: str = ""  # more mosquitto.conf lines, e.g. "log_type subscribe\n"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def write_config(self) -> None:
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            # Started as root, mosquitto drops to the `mosquitto` user, which cannot write its
            # persistence into a private folder, and a restart would lose every session.
            # `user root` keeps it as it was started; it means nothing to other users.
            "user root\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.data_dir.resolve()}/\n"
            "autosave_interval 1\n"
            # Queue generously for persistent sessions; a restart must not drop readings.
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            # Without it the broker's small writes (a PUBACK, a command) wait behind Nagle's
            # algorithm for the hub's delayed TCP ACK while readings stream: 6 ms instead of
            # 0.2 ms per QoS 1 publish under load, on the way from a reading to a barrier.
            "set_tcp_nodelay true\n"
            "log_dest stdout\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n" + self.extra_config
        )

    def command(self) -> list[str]:
        return ["mosquitto", "-c", str(self.config_path)]


@dataclass
class LocalInflux(LocalService):
    """InfluxDB 1.x with its own data folder, quiet logs and no phoning home."""

    name: str = "influxd"
    binary: str = "influxd"
    data_dir: Path = Path("var/influxdb")
    port: int = 8086
    rpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "influxdb.conf"

    def write_config(self) -> None:
        if not self.rpc_port:
            self.rpc_port = free_port(self.host)
        root = self.data_dir.resolve()
        self.config_path.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{root}/meta"\n'
            f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "{self.host}:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    def command(self) -> list[str]:
        return ["influxd", "run", "-config", str(self.config_path)]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:  # noqa: S310
                return bool(resp.status == 204)
        except OSError:
            return False


@dataclass
class ChildProcess:
    """A process of our own (a detection worker) that lives as long as its parent's command."""

    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start it; its output goes to `log_path`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the child
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def start_detectors(
    count: int,
    *,
    config: Path | None,
    log_dir: Path,
    mqtt_url: str | None = None,
    data_dir: Path | None = None,
    prefix: str = "local",
) -> list[ChildProcess]:
    """`count` detection workers (`hub detector --id <prefix>-N`) as child processes."""
    started: list[ChildProcess] = []
    for n in range(1, count + 1):
        args = [sys.executable, "-m", "hub", "detector", "--id", f"{prefix}-{n}"]
        if config is not None:
            args += ["-c", str(config)]
        if mqtt_url:
            args += ["--mqtt", mqtt_url]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        child = ChildProcess(f"detector {prefix}-{n}", args, log_dir / f"detector-{n}.log")
        child.start()
        started.append(child)
    return started
