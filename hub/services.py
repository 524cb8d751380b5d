"""Local Mosquitto, InfluxDB and etcd processes, for tests, demos and `hub run --local-services`,
and the detection and stream workers `hub run --detectors/--streams` and `hub demo` start
beside the hub."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
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


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM a child, then SIGKILL it if it has not exited within `timeout_s`; reaped."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
class Spawned:
    """A process we started ourselves, its output in a log file, stopped by PID."""

    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, kw_only=True)
    _log_file: IO[bytes] | None = field(default=None, repr=False, kw_only=True)

    def spawn(self, args: list[str], log_path: Path) -> None:
        """Start `args`, in a session of its own (Ctrl-C in a terminal reaches us, not the
        child), its output appended to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass
class LocalService(Spawned):
    """A server process that we started ourselves and stop by PID."""

    name: str
    binary: str
    data_dir: Path
    port: int
    host: str = "127.0.0.1"

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
        if self.launch():
            self.wait_ready(deadline_s)

    def launch(self) -> bool:
        """Start the process without waiting for it (False: it runs already). Members of a
        cluster are launched together: none of them answers before a quorum is up."""
        if shutil.which(self.binary) is None:
            raise ServiceError(
                f"{self.binary} not found on PATH: run scripts/install to get Debian's package"
            )
        if self.proc is not None and self.proc.poll() is None:
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.spawn(self.command(), self.log_path)
        return True

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        """Return once the launched process answers; ServiceError if it exits or is late."""
        if self.proc is None:
            raise ServiceError(f"{self.name} on port {self.port} was not launched")
        _wait(self.ready, f"{self.name} on port {self.port}", self.proc, self.log_path, deadline_s)

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
class LocalEtcd(LocalService):
    """One member of a local etcd cluster (`EtcdCluster` starts them together)."""

    name: str = "etcd"
    binary: str = "etcd"
    data_dir: Path = Path("var/etcd")
    port: int = 2379  # the client port
    peer_port: int = 2380
    initial_cluster: str = ""  # name=peer URL, ... of every member
    cluster_token: str = "hub"  # noqa: S105 (etcd's name for a cluster, the same in each member)
    # TLS on the client port: (certificate, key, the CA that signed it); peers stay plain.
    tls: tuple[Path, Path, Path] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def write_config(self) -> None:
        pass  # everything is on the command line

    def command(self) -> list[str]:
        return [
            "etcd",
            f"--name={self.name}",
            f"--data-dir={self.data_dir.resolve()}/data",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster or f'{self.name}={self.peer_url}'}",
            "--initial-cluster-state=new",  # ignored once the data folder holds a member
            f"--initial-cluster-token={self.cluster_token}",
            # Loopback round trips take microseconds: a lost member's leadership is taken
            # over in about half a second instead of etcd's default of one to two.
            "--heartbeat-interval=50",
            "--election-timeout=500",
            # Keep the store's history bounded (etcd keeps every revision until compacted).
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10000",
            "--logger=zap",
            "--log-level=warn",
        ] + ([f"--cert-file={self.tls[0]}", f"--key-file={self.tls[1]}"] if self.tls else [])

    def ready(self) -> bool:
        # /health says true only while the cluster has a leader (a quorum is up).
        context = ssl.create_default_context(cafile=self.tls[2]) if self.tls else None
        try:
            with urllib.request.urlopen(  # noqa: S310
                f"{self.url}/health", timeout=0.5, context=context
            ) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """A cluster of local etcd members on free loopback ports, one folder each under
    `data_dir`; members can be killed and started again, as in a machine's crash."""

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        host: str = "127.0.0.1",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.members = [
            LocalEtcd(
                name=f"etcd{i}",
                data_dir=data_dir / f"etcd{i}",
                port=free_port(host),
                peer_port=free_port(host),
                host=host,
                tls=tls,
            )
            for i in range(size)
        ]
        everyone = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.initial_cluster = everyone
            member.cluster_token = f"hub-{self.members[0].peer_port}"

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL."""
        return [m.url for m in self.members]

    def start(self, deadline_s: float = 30.0) -> None:
        """Start every member that is not running, and return once all of them answer."""
        launched = [m for m in self.members if m.launch()]
        for member in launched:
            member.wait_ready(deadline_s)

    def stop(self) -> None:
        """Stop every member. SIGKILL: etcd syncs its log before it acknowledges a write, so
        a kill loses nothing, where SIGTERM waits 5 s for peers that are stopping too."""
        for member in self.members:
            member.kill()


@dataclass
class ChildProcess(Spawned):
    """A process of our own (a detection or stream worker) that lives as long as its parent's
    command."""

    name: str
    args: list[str]
    log_path: Path

    def start(self) -> None:
        """Start it; its output goes to `log_path`."""
        self.spawn(self.args, self.log_path)


def start_workers(
    command: str,
    count: int,
    *,
    config: Path | None,
    log_dir: Path,
    mqtt_url: str | None = None,
    data_dir: Path | None = None,
    prefix: str = "local",
) -> list[ChildProcess]:
    """`count` workers (`hub <command> --id <prefix>-N`: `detector` or `streams`) as child
    processes, logging to <log_dir>/<command>-N.log."""
    started: list[ChildProcess] = []
    for n in range(1, count + 1):
        args = [sys.executable, "-m", "hub", command, "--id", f"{prefix}-{n}"]
        if config is not None:
            args += ["-c", str(config)]
        if mqtt_url:
            args += ["--mqtt", mqtt_url]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        child = ChildProcess(f"{command} {prefix}-{n}", args, log_dir / f"{command}-{n}.log")
        child.start()
        started.append(child)
    return started
