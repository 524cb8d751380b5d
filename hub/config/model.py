"""The hub's configuration: every section of hub.yaml with its defaults."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.actuators.config import ActuatorsConfig
from hub.config.paths import collect_files
from hub.config.problems import Problem
from hub.config.types import (
    ConfigPath,
    Duration,
    Name,
    PathList,
    PositiveDuration,
    Section,
    _lower,
    duration_at_most,
)
from hub.detection.config import DetectionConfig
from hub.durations import MAX_DURATION_S, format_duration
from hub.live.config import LiveConfig
from hub.notify.config import NotifyConfig
from hub.plates.config import PlatesConfig
from hub.streams.config import StreamsConfig

RULE_SUFFIXES = (".yaml", ".yml")

# MQTT holds the keepalive in 16 bits of seconds (the client rounds it up to whole seconds).
MAX_KEEPALIVE_S = 0xFFFF
# MQTT 5 holds the session expiry in 32 bits of seconds, 0xFFFFFFFF meaning "never": the
# hub's ten-year ceiling on durations is the tighter of the two.
MAX_SESSION_EXPIRY_S = min(0xFFFFFFFE, MAX_DURATION_S)
# The largest spool: 16 TiB, in MB. Its size in bytes, int(MB * 1024 * 1024), stays exact.
MAX_SPOOL_MB = 16 * 1024 * 1024


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


def _split_url(value: str, schemes: tuple[str, str]) -> SplitResult:
    text = value.strip()
    shape = f"{schemes[0]}://HOST[:PORT] or {schemes[1]}://HOST[:PORT]"
    parts = urlsplit(text)
    if parts.scheme.lower() not in schemes:
        hint = "" if "://" in text else " (the scheme is missing)"
        raise ValueError(f"expected a URL like {shape}, got {_redact(text)!r}{hint}")
    if not parts.hostname:
        raise ValueError(f"{_redact(text)!r} names no host; expected {shape}")
    try:
        port = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        port = 0
    if port == 0:  # 0 would quietly become the scheme's default port
        raise ValueError(f"{_redact(text)!r} has a bad port; a port is a number from 1 to 65535")
    return parts


def _readable(path: Path) -> Path:
    """A file that exists and that this user may read (resolved against the config's folder)."""
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot be read by this user: {path}")
    return path


def _version_text(value: object) -> object:
    # `tls_min_version: 1.2` unquoted is a number in YAML; it means the version all the same.
    return str(value) if isinstance(value, float) else value


ReadableFile = Annotated[ConfigPath, AfterValidator(_readable)]


def _key_pair(section: str, key_file: Path | None, info: ValidationInfo) -> Path | None:
    """A client certificate and its key: both or neither (`section` names them in messages)."""
    if "cert_file" not in info.data:
        return key_file  # cert_file has a problem of its own
    if key_file is None and info.data["cert_file"] is not None:
        raise ValueError(
            f"missing: {section}.cert_file is set, and its key goes in {section}.key_file"
        )
    if key_file is not None and info.data["cert_file"] is None:
        raise ValueError(f"set without {section}.cert_file: give the client certificate too")
    return key_file


class MqttConfig(Section):
    """The broker the hub reads readings from and publishes commands and incidents to."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: Name = "hub-1"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    prefix: str = "hub"
    keepalive: Annotated[
        float, duration_at_most(MAX_KEEPALIVE_S, "MQTT holds the keepalive in 16 bits")
    ] = 30.0
    session_expiry: Annotated[float, duration_at_most(MAX_SESSION_EXPIRY_S)] = 7 * 86400.0
    reconnect_min: PositiveDuration = 0.1
    reconnect_max: PositiveDuration = Field(default=30.0, validate_default=True)
    # TLS (mqtts:// only; see hub.tls): the CA bundle to trust instead of the system's, the
    # client certificate and its key (both or neither), the key's password (or
    # $HUB_MQTT_KEY_PASSWORD) and the oldest TLS version accepted.
    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = Field(default=None, validate_default=True)
    key_password: str | None = Field(default=None, repr=False)
    tls_min_version: Annotated[Literal["1.2", "1.3"], BeforeValidator(_version_text)] = "1.2"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = _split_url(value, ("mqtt", "mqtts"))
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(
                f"{_redact(value)!r} has a path; an MQTT URL is just mqtt://HOST[:PORT] "
                "(topics start with mqtt.prefix)"
            )
        return value.strip()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"a topic prefix such as 'hub' or 'site-a/hub', got {value!r}")
        if "+" in value or "#" in value or value.startswith("$"):
            raise ValueError(f"a topic prefix cannot hold '+', '#' or start with '$': {value!r}")
        return value

    @field_validator("ca_file", "cert_file", "key_file", "tls_min_version")
    @classmethod
    def _tls_only(cls, value: object, info: ValidationInfo) -> object:
        url = info.data.get("url")
        if value is not None and url is not None and urlsplit(url).scheme.lower() != "mqtts":
            raise ValueError(
                f"applies to TLS only, and mqtt.url is {_redact(url)!r}: use an mqtts:// URL "
                "(the broker's TLS listener, usually port 8883)"
            )
        return value

    @field_validator("key_file")
    @classmethod
    def _pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _key_pair("mqtt", value, info)

    @field_validator("reconnect_max")
    @classmethod
    def _backoff(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("reconnect_min")
        if low is not None and low > value:
            raise ValueError(
                f"the longest wait between reconnects ({format_duration(value)}) is shorter "
                f"than the first one, reconnect_min ({format_duration(low)})"
            )
        return value

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (mqtts://)."""
        return urlsplit(self.url).scheme.lower() == "mqtts"

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """The broker's port: the URL's, else 1883, or 8883 for TLS."""
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class InfluxConfig(Section):
    """The InfluxDB 1.x API that readings, incidents and the audit trail are written to."""

    url: str = "http://127.0.0.1:8086"
    database: Name = "hub"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # InfluxDB advises 5,000 to 10,000 points a write; a million is a request of ~100 MB.
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)] = 5000
    flush_interval: PositiveDuration = 0.2
    timeout: PositiveDuration = 10.0
    # A buffered point takes a few hundred bytes: 100 million of them are tens of GB.
    buffer_points: Annotated[int, Field(gt=0, le=100_000_000)] = 200_000
    spool_dir: ConfigPath | None = None
    # Fractions are allowed (0.05 in tests); see MAX_SPOOL_MB and `spool_max_bytes`.
    spool_max_mb: Annotated[float, Field(gt=0, le=MAX_SPOOL_MB)] = 1024.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _split_url(value, ("http", "https"))
        return value.strip().rstrip("/")

    @field_validator("buffer_points")
    @classmethod
    def _buffer(cls, value: int, info: ValidationInfo) -> int:
        batch = info.data.get("batch_size")
        if batch is not None and value < batch:
            raise ValueError(
                f"the buffer ({value} points) must hold at least one batch (batch_size {batch})"
            )
        return value

    @property
    def spool_max_bytes(self) -> int:
        """The spool's disk bound in bytes, a whole number."""
        return int(self.spool_max_mb * 1024 * 1024)


class IngestConfig(Section):
    """Limits on what the hub accepts from sensors and gateways."""

    # 16 MiB: a gateway message may be 16 times this, and 256 MiB is MQTT's largest packet.
    max_payload_bytes: Annotated[int, Field(gt=0, le=16 * 1024 * 1024)] = 65536
    max_future: Duration = 300.0
    max_age: PositiveDuration = 30 * 86400.0
    # A million readings are some 50 MB of JSON, within the largest gateway message.
    max_gateway_readings: Annotated[int, Field(gt=0, le=1_000_000)] = 10_000
    # Dead letters wait in memory, each up to a payload: a million of 64 KiB is 64 GiB.
    deadletter_queue: Annotated[int, Field(gt=0, le=1_000_000)] = 10_000


class ApiToken(Section):
    """A client of the HTTP API, known by the SHA-256 of its bearer token."""

    name: Name
    role: Literal["viewer", "operator", "admin"]
    sha256: str
    # The inventory's region ids this token sees and acts in; absent: every region.
    regions: tuple[Name, ...] | None = None

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        text = value.strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            # The value is not echoed: a token pasted here by mistake must not reach a log.
            raise ValueError(
                f"expected the token's SHA-256 as 64 hex digits, got {len(text)} characters "
                "(make it with: printf %s TOKEN | sha256sum)"
            )
        return text

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list would see nothing; leave 'regions' out for all")
        return value


class ApiConfig(Section):
    """The HTTP API and situation-room page."""

    listen: str = "127.0.0.1:8080"
    tokens: tuple[ApiToken, ...] = ()
    # Endpoints that need no token: the contract makes the CAP feed and health public, and
    # Prometheus scrapes /metrics (counts only) without one; one left out needs a viewer token.
    public: tuple[Literal["health", "cap", "metrics"], ...] = ("health", "cap", "metrics")
    # Base map tiles for the page ({z}/{x}/{y} URL); without them it draws the regions alone.
    tiles: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
        return value.strip()

    @property
    def host(self) -> str:
        """The address to listen on, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to listen on (0: any free port)."""
        return int(self.listen.rpartition(":")[2])


class StoreConfig(Section):
    """Where the hub keeps its durable state: the embedded SQLite file under data_dir, or a
    replicated etcd cluster shared by a pair of hubs (docs/ha.md)."""

    backend: Literal["sqlite", "etcd"] = "sqlite"
    # etcd only: its members' client URLs (all of them: any one may be down), and the key
    # prefix under which this hub's documents live (one per pair of hubs).
    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    prefix: str = "hub"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # TLS (https:// endpoints only): the CA that signed the members' certificates, and a
    # client certificate with its key when the cluster asks for one.
    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = Field(default=None, validate_default=True)
    # How long one request may take before the next member is tried, and how long `sync`
    # waits for commits to be replicated before it reports them late.
    request_timeout: Annotated[float, duration_at_most(60.0), Field(gt=0)] = 1.0
    timeout: Annotated[float, duration_at_most(3600.0), Field(gt=0)] = 5.0
    # The cluster's own limits on one transaction (etcd's --max-request-bytes and
    # --max-txn-ops); a batch beyond them is refused at commit, not sent to be refused.
    max_request_bytes: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 1536 * 1024
    max_txn_ops: Annotated[int, Field(ge=8, le=100_000)] = 128

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one etcd member, e.g. [http://127.0.0.1:2379]")
        urls = []
        for url in value:
            parts = _split_url(url, ("http", "https"))
            if parts.path not in ("", "/") or parts.query:
                raise ValueError(f"{_redact(url)!r} has a path; an endpoint is http://HOST:PORT")
            urls.append(url.strip().rstrip("/"))
        if len({urlsplit(u).scheme.lower() for u in urls}) > 1:
            raise ValueError("mixes http:// and https://; every member is reached the same way")
        return tuple(urls)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.strip("/") or value != value.strip("/ ") or "\0" in value:
            raise ValueError(f"a key prefix such as 'hub' or 'site-a/hub', got {value!r}")
        return value

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _tls_only(cls, value: object, info: ValidationInfo) -> object:
        urls = info.data.get("endpoints")
        if value is not None and urls and urlsplit(urls[0]).scheme.lower() != "https":
            raise ValueError("applies to TLS only: use https:// endpoints")
        return value

    @field_validator("key_file")
    @classmethod
    def _pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _key_pair("store", value, info)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("username") is None:
            raise ValueError("set without store.username: etcd users have a name and a password")
        return value


class HaConfig(Section):
    """An active/standby pair of hubs on one etcd store (docs/ha.md): exactly one is active."""

    enabled: bool = False
    # This hub's name in the pair: the leader key holds it, and the standby's answers name
    # the active hub by it. Each hub of a pair needs its own.
    name: str = Field(default_factory=socket.gethostname)
    # The leader's lease, in whole seconds (etcd counts them so): a dead active hub is
    # replaced about this long after its last keepalive.
    ttl: Annotated[int, Field(ge=1, le=60)] = 2

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or value != value.strip() or not value.isprintable():
            raise ValueError(f"a name such as 'hub-a', without spaces around it, got {value!r}")
        return value


LogLevel = Literal["debug", "info", "warning", "error", "critical"]
_SECTIONS = ("mqtt", "influx", "ingest", "api", "store", "ha")


class HubConfig(Section):
    """The whole of hub.yaml; every section is optional."""

    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    influx: InfluxConfig = Field(default_factory=InfluxConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    inventory: PathList = ()
    rules: PathList = ()
    api: ApiConfig = Field(default_factory=ApiConfig)
    actuators: ActuatorsConfig = Field(default_factory=ActuatorsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)
    plates: PlatesConfig = Field(default_factory=PlatesConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    ha: HaConfig = Field(default_factory=HaConfig)
    data_dir: ConfigPath = Field(default=Path("var"), validate_default=True)
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = "info"
    _source: Path | None = PrivateAttr(default=None)
    _warnings: tuple[Problem, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # `mqtt:` with nothing under it means "all defaults", not "null".
        data = {k: ({} if k in _SECTIONS and v is None else v) for k, v in data.items()}
        influx = data.get("influx", {})
        data_dir = data.get("data_dir", "var")
        if (
            isinstance(influx, dict)
            and influx.get("spool_dir") is None
            and isinstance(data_dir, str | Path)
        ):
            data["influx"] = {**influx, "spool_dir": Path(data_dir) / "spool"}
        return data

    @field_validator("ha")
    @classmethod
    def _ha_on_etcd(cls, value: HaConfig, info: ValidationInfo) -> HaConfig:
        store = info.data.get("store")
        if value.enabled and store is not None and store.backend != "etcd":
            raise ValueError(
                "enabled needs store.backend: etcd (the pair shares its state and leadership there)"
            )
        return value

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from, if any."""
        return self._source

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """What the file holds that is accepted but should change (keys that were removed)."""
        return self._warnings

    def rule_files(self) -> list[Path]:
        """The rule files named by `rules`, folders expanded, in a stable order."""
        return collect_files(self.rules, RULE_SUFFIXES)
