"""Real local servers for notification tests (an aiohttp webhook, an aiosmtpd SMTP server),
and incidents as the rule service hands them over."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

import hub.config  # noqa: F401 - it imports hub.notify.config, so it must load first
from hub.audit import AuditLog
from hub.notify.config import NotifyConfig
from hub.notify.service import Notifier
from hub.rules.events import ActionRequested
from hub.services import free_port
from hub.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]
CAP_XSD = REPO / "tests" / "standards" / "CAP-v1.2.xsd"  # OASIS; see its NOTICE
SECRET = "s3cret-hmac-key"


class Lines:
    """An audit sink that keeps the lines it is given (the hub's storage writer's role)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def submit(self, lines: bytes, count: int, token: object | None = None) -> None:
        self.lines.append(lines)


class WebhookServer:
    """An aiohttp server receiving webhook POSTs; it can be stopped, refuse, and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.status >= 300:
            return web.Response(status=self.status)
        self.received.append((dict(request.headers), body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def webhook_server() -> AsyncIterator[WebhookServer]:
    """A running webhook server for the block."""
    server = WebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a fixed port, in its own thread; stop and start it again at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = _Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return self.mailbox.messages


def config(**section: Any) -> NotifyConfig:
    """A notify section with short windows, so that tests wait milliseconds, not seconds."""
    base: dict[str, Any] = {
        "group_window": 0.05,
        "retry_min": 0.05,
        "retry_max": 0.2,
        "give_up_after": 60,
    }
    return NotifyConfig.model_validate({**base, **section})


class Publisher:
    """Stands in for the MQTT client where a test uses no MQTT channel."""

    connected = True

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        raise AssertionError("no MQTT channel in this test")


def notifier(cfg: NotifyConfig, data_dir: Path, publisher: Any = None, **kw: Any) -> Notifier:
    """A notifier with its own store (`data_dir/hub.db`, older files imported from
    `data_dir`) and audit log; secrets from a test environment."""
    store = SqliteStore(data_dir / "hub.db")
    return Notifier(
        cfg,
        store=store,
        legacy_dir=data_dir,
        audit=AuditLog(Lines(), store),
        publisher=publisher or Publisher(),
        env={"HOOK_SECRET": SECRET, "SMTP_PASSWORD": "pw"},
        **kw,
    )


@contextlib.asynccontextmanager
async def running(n: Notifier) -> AsyncIterator[Notifier]:
    """Run the notifier for the block, then close it and its store as the hub does."""
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(n.run(), name="notifier")
            try:
                yield n
            finally:
                await n.close(grace=5)
    finally:
        await n.store.aclose()


def incident(iid: str, state: str = "active", **fields: Any) -> dict[str, Any]:
    """An incident dict as the engine makes it."""
    return {
        "id": iid,
        "rule": "underpass-flooding",
        "title": f"Underpass flooding at {iid}",
        "severity": "severe",
        "region": "suwon",
        "site": "up-1",
        "subject": "wl-1",
        "opened_at": 1_784_000_000_000_000_000,
        "state": state,
        "acked_by": fields.pop("acked_by", None),
        "acked_at": None,
        "cleared_at": None,
        "archived_at": None,
        "actions": [],
        "evidence": [],
        **fields,
    }


def event(name: str, iid: str, state: str, **fields: Any) -> dict[str, Any]:
    """An incident event as RuleService.listeners get it."""
    return {"event": name, "at": 1, "incident": incident(iid, state, **fields)}


def action(
    iid: str, channels: list[str], step: str = "open", n: int = 0, **params: Any
) -> ActionRequested:
    """A notify action as the dispatcher hands it to the executor."""
    severity = params.pop("severity", "severe")
    return ActionRequested(
        at=1,
        action_id=f"{iid}.{n}",
        kind="notify",
        step=step,
        params={"channels": channels, "title": f"Underpass flooding at {iid}", **params},
        incident_id=iid,
        rule="underpass-flooding",
        subject="wl-1",
        region="suwon",
        site="up-1",
        severity=severity,
    )


async def open_incident(n: Notifier, iid: str, channels: list[str], **params: Any) -> None:
    """What the rule service does when an incident opens with a notify action."""
    n.on_incident(event("opened", iid, "active"))
    await n.execute(action(iid, channels, message=f"{iid}: flooding, act now", **params))
