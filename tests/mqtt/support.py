"""Helpers of the MQTT client's tests: an inbox that records what a client received, and
Mosquitto with configurations of our own."""

from __future__ import annotations

import glob
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.mqtt import Message, MqttClient
from hub.services import LocalMosquitto, free_port


@dataclass
class Inbox:
    """An `on_messages` callback that keeps every batch."""

    batches: list[list[Message]] = field(default_factory=list)

    def __call__(self, batch: list[Message]) -> None:
        self.batches.append(batch)

    @property
    def messages(self) -> list[Message]:
        return [m for batch in self.batches for m in batch]

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


StartClient = Callable[..., MqttClient]


@dataclass
@dataclass
class ConfiguredMosquitto(LocalMosquitto):
    """Mosquitto with the given configuration lines instead of our tuned defaults."""

    lines: str = ""

    def write_config(self) -> None:
        self.config_path.write_text(
            # `user root`: see LocalMosquitto.write_config.
            f"listener {self.port} {self.host}\nuser root\n{self.lines}"
            "log_dest stdout\nlog_type error\n"
        )


def subscribe_only(folder: Path, pattern: str) -> ConfiguredMosquitto:
    """Mosquitto (not started) whose anonymous clients may subscribe to `pattern` only.

    An `acl_file` would not do: Mosquitto 2.0 grants every subscription with it and drops the
    messages a client may not read. The dynamic security plugin answers SUBACK 0x87.
    """
    acl = {"acltype": "subscribePattern", "topic": pattern, "allow": True}
    return dynamic_security(folder, [acl], subscribe=False)


def dynamic_security(
    folder: Path, acls: list[dict[str, object]], *, subscribe: bool = True
) -> ConfiguredMosquitto:
    """Mosquitto (not started) whose anonymous clients have these ACLs, through the dynamic
    security plugin, which refuses in SUBACK and PUBACK (0x87) rather than dropping."""
    plugins = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
        "/usr/lib/mosquitto_dynamic_security.so"
    )
    if not plugins:
        pytest.skip("Mosquitto's dynamic security plugin is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dynamic-security.json"
    config.write_text(
        json.dumps(
            {
                "defaultACLAccess": {
                    "publishClientSend": True,
                    "publishClientReceive": True,
                    "subscribe": subscribe,
                    "unsubscribe": True,
                },
                "clients": [],
                "groups": [{"groupname": "anonymous", "roles": [{"rolename": "acls"}]}],
                "anonymousGroup": "anonymous",
                "roles": [{"rolename": "acls", "acls": acls}],
            }
        )
    )
    lines = f"allow_anonymous true\nplugin {plugins[0]}\nplugin_opt_config_file {config}\n"
    return ConfiguredMosquitto(data_dir=folder, port=free_port(), lines=lines)
