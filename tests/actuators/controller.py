"""A barrier controller for tests: a real MQTT client (paho) that takes the hub's commands and
answers as told, counting executions per command_id the way a real controller must."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from tests.helpers import Peer

STATES = {"close": "closed", "open": "open"}


class Controller:
    """Behaviours: normal, never (no ack), hold (ack when released), fail, twice, contradict."""

    def __init__(self, url: str, client_id: str, prefix: str, region: str, actuator: str) -> None:
        self.base = f"{prefix}/actuators/{region}/{actuator}"
        self.behaviour = "normal"
        self.received: Counter[str] = Counter()  # every delivery, resends included
        self.executed: Counter[str] = Counter()  # what the barrier actually did
        self.commands: dict[str, dict[str, Any]] = {}
        self.state = "open"
        self.held: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.peer = Peer(url, client_id)
        self.peer._client.on_message = self._on_message
        self.peer.subscribe(f"{self.base}/command")
        self.report_state()

    def report_state(self, state: str | None = None) -> None:
        """Publish the barrier's state, retained, as a controller does after it moves."""
        self.peer._client.publish(
            f"{self.base}/state", json.dumps({"state": state or self.state}), qos=1, retain=True
        )

    def ack(self, command_id: str, status: str, state: str | None = None) -> None:
        body: dict[str, Any] = {"command_id": command_id, "status": status}
        if state is not None:
            body["state"] = state
        self.peer.publish(f"{self.base}/ack", json.dumps(body))

    def _on_message(self, _client: object, _userdata: object, msg: Any) -> None:
        command = json.loads(msg.payload)
        cid = command["command_id"]
        with self._lock:
            self.received[cid] += 1
            self.commands[cid] = command
            first = cid not in self.executed
            if self.behaviour == "never":
                return
            if self.behaviour == "hold":
                self.held.append(command)
                return
            if first:  # idempotent: a resend of a command already done is only acknowledged
                self.executed[cid] += 1
                if self.behaviour != "fail":
                    self.state = STATES.get(command["action"], self.state)
        self._answer(command)

    def _answer(self, command: dict[str, Any]) -> None:
        cid = command["command_id"]
        if self.behaviour == "fail":
            self.ack(cid, "failed")
            return
        self.ack(cid, "accepted")
        if self.behaviour == "contradict":
            self.ack(cid, "done", self.state)
            self.report_state("open")  # the barrier says otherwise
            return
        self.report_state()
        self.ack(cid, "done", self.state)
        if self.behaviour == "twice":
            self.ack(cid, "done", self.state)

    def release(self) -> None:
        """Execute and answer the held commands, late."""
        with self._lock:
            held, self.held = self.held, []
            self.behaviour = "normal"
            for command in held:
                if command["command_id"] not in self.executed:
                    self.executed[command["command_id"]] += 1
                    self.state = STATES.get(command["action"], self.state)
        for command in {c["command_id"]: c for c in held}.values():
            self._answer(command)

    def close(self) -> None:
        self.peer.close()
