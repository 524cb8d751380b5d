"""The rules' state derived again from the incidents' retained messages.

When the store holds no state of the rules (its file was damaged and moved aside, or the data
folder was lost) but the broker still holds the incidents the hub published, retained, those
incidents are taken back: the same ids, states, actions and acknowledgements. Their rules
restart as if they had been edited: the incidents stay open, and the rules may clear them once
they have heard from every sensor again (docs/rules.md, hot reload). Without this, a flood the
hub had already reported would be reported again under a new id, and the old one would never
clear. Escalation steps count again from the restart: a step may run twice, never not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from datetime import datetime
from typing import Any

import orjson

from hub.mqtt import Message, MqttClient
from hub.rules.engine.state import FORMAT

log = logging.getLogger("hub.rules")

TIME_FIELDS = ("opened_at", "acked_at", "cleared_at", "archived_at")
# The broker sends retained messages right after the subscription's acknowledgement; this long
# without one more ends the wait (each message starts it again).
QUIET = 0.2
FETCH_TIMEOUT = 5.0
REDERIVED = "re-derived"  # a fingerprint no rule has: every rule restarts as if edited


def _ns(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value)).timestamp() * 1e9)


def record_from_payload(payload: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """An incident's retained JSON (the contract's form) as the engine keeps it."""
    out = dict(payload)
    for key in TIME_FIELDS:
        out[key] = _ns(out.get(key))
    out["actions"] = [{**a, "at": _ns(a.get("at")) or 0} for a in out.get("actions", [])]
    # Escalation counts from now: a step that was due may run again, none is skipped.
    out["esc_base"] = now_ns
    out["esc_done"] = 0
    return out


def snapshot_from_incidents(payloads: list[dict[str, Any]], now_ns: int) -> dict[str, Any]:
    """An engine snapshot holding these incidents, their rules marked to restart."""
    incidents = [record_from_payload(p, now_ns) for p in payloads if p.get("state") != "archived"]
    times = [t for rec in incidents for key in TIME_FIELDS if (t := rec.get(key)) is not None]
    rules: dict[str, Any] = {
        rec["rule"]: {"fingerprint": REDERIVED, "since": None, "subjects": {}} for rec in incidents
    }
    return {
        "format": FORMAT,
        "clock": max(times) if times else None,
        "late": 0,
        "seen": {},
        "values": {},
        "incidents": incidents,
        "rules": rules,
    }


async def fetch_retained_incidents(
    url: str,
    prefix: str,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[dict[str, Any]]:
    """The incidents the broker holds retained under `prefix` (a connection of its own;
    `ssl_context` for mqtts://, from `hub.tls.mqtt_ssl_context`)."""
    found: dict[str, dict[str, Any]] = {}
    arrived = asyncio.Event()

    def collect(messages: list[Message]) -> None:
        arrived.set()
        for msg in messages:
            if not msg.retain or not msg.payload:
                continue
            try:
                payload = orjson.loads(msg.payload)
                found[str(payload["id"])] = dict(payload)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("rules: retained message on %s is not an incident", msg.topic)

    client = MqttClient(
        url,
        client_id=client_id,
        username=username,
        password=password,
        ssl_context=ssl_context,
        clean_start=True,
        session_expiry=0,
        subscriptions=[(f"{prefix.rstrip('/')}/incidents/+/+", 1)],
        on_messages=collect,
    )
    task = asyncio.create_task(client.run(), name="retained-incidents")
    try:
        await client.wait_connected(FETCH_TIMEOUT)
        deadline = time.monotonic() + FETCH_TIMEOUT
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(QUIET):
                    await arrived.wait()
            except TimeoutError:
                break  # quiet: the broker sent every retained message it holds
            arrived.clear()
    finally:
        await client.stop(grace=1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return list(found.values())
