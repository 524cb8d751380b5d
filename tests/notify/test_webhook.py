"""Webhooks to a real local aiohttp server: signatures, outages, restarts, no duplicates."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from hub.notify.channels import DELIVERY_HEADER, SIGNATURE_HEADER, delivery_id
from tests.helpers import eventually
from tests.notify.support import (
    SECRET,
    WebhookServer,
    action,
    config,
    event,
    notifier,
    open_incident,
    running,
    webhook_server,
)


def _messages(server: WebhookServer) -> list[dict[str, object]]:
    return [m for _, body in server.received for m in json.loads(body)["messages"]]


def _hook(server: WebhookServer, **extra: object) -> dict[str, object]:
    return {"type": "webhook", "url": server.url, "secret_env": "HOOK_SECRET", **extra}


async def test_signed_json_one_message_per_state_change(tmp_path: Path) -> None:
    async with webhook_server() as server:
        cfg = config(channels={"situation-room": _hook(server)})
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "inc1", ["situation-room"])
            # A retrigger of the open incident, and the open action handed over again after
            # a crash, are the same change: no second page.
            await n.execute(action("inc1", ["situation-room"], step="retrigger", n=1))
            await n.execute(action("inc1", ["situation-room"]))
            await eventually(lambda: len(server.received) == 1, "the page")
            n.on_incident(event("acknowledged", "inc1", "acknowledged", acked_by="desk-1"))
            n.on_incident(event("acknowledged", "inc1", "acknowledged", acked_by="desk-1"))
            await eventually(lambda: len(server.received) == 2, "the acknowledgement")
            n.on_incident(event("cleared", "inc1", "cleared"))
            await eventually(lambda: len(server.received) == 3, "the clearing")
    states = [m["state"] for m in _messages(server)]
    assert states == ["active", "acknowledged", "cleared"]
    texts = [m["text"] for m in _messages(server)]
    assert texts[0] == "inc1: flooding, act now"
    assert texts[1] == "Underpass flooding at inc1: acknowledged by desk-1"
    for headers, body in server.received:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")
        assert headers[DELIVERY_HEADER] == json.loads(body)["delivery"]


async def test_server_down_then_back_nothing_lost_nothing_twice(tmp_path: Path) -> None:
    server = WebhookServer()  # not started: connections are refused
    cfg = config(channels={"fire-119": _hook(server)})
    async with running(notifier(cfg, tmp_path)) as n:
        await open_incident(n, "a", ["fire-119"])
        await eventually(
            lambda: any(b"failed to fire-119" in line for line in n.audit.sink.lines),  # type: ignore[attr-defined]
            "a failed attempt to be audited",
        )
        server.status = 503  # up, but failing
        await server.start()
        try:
            await open_incident(n, "b", ["fire-119"])
            # The failed delivery goes again as it was (its id unchanged, for the receiver's
            # deduplication); the later note waits behind it.
            await eventually(
                lambda: "503" in (n.outbox.notes["a/active/fire-119"].error or ""), "a 503 attempt"
            )
            server.status = 200
            await eventually(lambda: len(_messages(server)) == 2, "both pages after recovery")
        finally:
            await server.stop()
    assert sorted(m["incident_id"] for m in _messages(server)) == ["a", "b"]


async def test_accepted_is_delivered_after_restart_and_never_again(tmp_path: Path) -> None:
    server = WebhookServer()
    cfg = config(channels={"duty-officer": _hook(server)})
    async with running(notifier(cfg, tmp_path)) as n:
        await open_incident(n, "x", ["duty-officer"])
        await eventually(lambda: n.outbox.notes["x/active/duty-officer"].error, "an attempt")
    await server.start()
    try:
        async with running(notifier(cfg, tmp_path)) as n:
            await eventually(lambda: len(server.received) == 1, "delivery after the restart")
        # The same data dir again, and the rules handing the open action over once more.
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "x", ["duty-officer"])
            n.on_incident(event("cleared", "x", "cleared"))
            await eventually(lambda: len(server.received) == 2, "the clearing")
    finally:
        await server.stop()
    assert [m["state"] for m in _messages(server)] == ["active", "cleared"]


async def test_gives_up_after_the_configured_period(tmp_path: Path) -> None:
    server = WebhookServer()  # never started
    cfg = config(channels={"maintenance": _hook(server)}, give_up_after=0.3)
    async with running(notifier(cfg, tmp_path)) as n:
        await open_incident(n, "g", ["maintenance"])
        await eventually(lambda: n.given_up == 1, "the note to be given up")
        assert n.outbox.notes["g/active/maintenance"].status == "given_up"
    lines = b"".join(n.audit.sink.lines)  # type: ignore[attr-defined]
    assert b"given_up to maintenance" in lines


async def test_a_refusal_is_given_up_at_once(tmp_path: Path) -> None:
    async with webhook_server() as server:
        server.status = 400
        cfg = config(channels={"police-112": _hook(server)})
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "r", ["police-112"])
            await eventually(lambda: n.given_up == 1, "a 400 to be given up")


class Statuses:
    """Where the notifier records its actions' status (the rules' incident, in the hub)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str | None]] = {}

    def update_action(self, action_id: str, status: str, detail: str | None = None) -> None:
        self.seen[action_id] = (status, detail)


async def test_a_notify_action_is_done_once_its_messages_are_delivered(tmp_path: Path) -> None:
    """Before, a notify action stayed "requested" in its incident although the page went."""
    statuses = Statuses()
    async with webhook_server() as server:
        server.status = 503  # down: the action waits, requested
        cfg = config(
            channels={"room": _hook(server), "nowhere": _hook(server, url="http://127.0.0.1:9/x")},
            give_up_after=1,
        )
        async with running(notifier(cfg, tmp_path, actions=statuses)) as n:
            await open_incident(n, "inc1", ["room"])
            assert "inc1.0" not in statuses.seen, "done before it was delivered"
            server.status = 200
            await eventually(lambda: "inc1.0" in statuses.seen, "the action's status")
            assert statuses.seen["inc1.0"] == ("done", "delivered to room")

            n.on_incident(event("opened", "inc2", "active"))
            await n.execute(action("inc2", ["room", "nowhere"]))
            await eventually(lambda: "inc2.0" in statuses.seen, "the second action's status")
    status, detail = statuses.seen["inc2.0"]
    assert status == "failed"
    assert detail is not None
    assert detail.startswith("nowhere: ")


async def test_a_delivery_goes_again_as_it_was_with_its_id(tmp_path: Path) -> None:
    """A delivery that failed (the server may have taken it: a timeout, a crash) goes again
    with the same notes, so the same delivery id, which the receiver deduplicates by; a note
    accepted meanwhile goes in a delivery of its own, not into that one."""
    server = WebhookServer()
    server.status = 503
    await server.start()
    cfg = config(channels={"fire-119": _hook(server)})
    try:
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "a", ["fire-119"])
            await eventually(lambda: n.outbox.notes["a/active/fire-119"].error, "a failed attempt")
            first = n.outbox.notes["a/active/fire-119"].group
            await open_incident(n, "b", ["fire-119"])
            server.status = 200
            await eventually(lambda: len(server.received) == 2, "both, once the server is back")
    finally:
        await server.stop()
    ids = [headers[DELIVERY_HEADER] for headers, _ in server.received]
    assert ids[0] == first == delivery_id([n.outbox.notes["a/active/fire-119"]])
    assert [m["incident_id"] for m in _messages(server)] == ["a", "b"]
