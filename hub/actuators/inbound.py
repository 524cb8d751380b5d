"""What actuators send: acknowledgements and states, parsed from their topics and payloads."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from hub.mqtt import Message

ACK_STATUSES = ("accepted", "done", "failed", "rejected")


@dataclass(frozen=True, slots=True)
class Inbound:
    """An ack (`kind` "ack", with command_id and status) or a state report (`kind` "state")."""

    kind: str
    actuator: str
    region: str
    command_id: str | None = None
    status: str | None = None
    state: str | None = None
    detail: str | None = None
    ts: object = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse(msg: Message, prefix: str) -> Inbound | str:
    """The message as an Inbound, or what is wrong with it, in words."""
    parts = msg.topic[len(prefix) :].split("/")
    if len(parts) != 3 or parts[2] not in ("ack", "state"):
        return f"{msg.topic}: not an actuator's ack or state topic"
    region, actuator, kind = parts
    try:
        data = orjson.loads(msg.payload)
    except orjson.JSONDecodeError:
        return f"{msg.topic}: payload is not JSON"
    if not isinstance(data, dict):
        return f"{msg.topic}: payload is not a JSON object"
    state = _text(data.get("state"))
    detail = _text(data.get("detail"))
    if kind == "state":
        if state is None:
            return f"{msg.topic}: state report without a 'state'"
        return Inbound("state", actuator, region, state=state, ts=data.get("ts"))
    command_id, status = _text(data.get("command_id")), data.get("status")
    if command_id is None or status not in ACK_STATUSES:
        return f"{msg.topic}: an ack needs 'command_id' and a 'status' of {', '.join(ACK_STATUSES)}"
    return Inbound("ack", actuator, region, command_id, str(status), state, detail)
