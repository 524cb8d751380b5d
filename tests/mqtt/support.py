"""Helpers of the MQTT client's tests: an inbox that records what a client received, and
Mosquitto with configurations of our own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub.mqtt import Message, MqttClient
from hub.services import LocalMosquitto


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
