"""Channel backends: each sends a group of notes in one delivery, within a time limit.

A backend raises DeliveryError when the delivery did not happen; `permanent` says that
trying again cannot help (a webhook answering 400), so the notes are given up at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import aiohttp
import orjson

from hub.notify.cap import CAP_MIME
from hub.notify.config import CapChannel, EmailChannel, MqttChannel, WebhookChannel
from hub.notify.outbox import Note
from hub.notify.text import render

SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-Hub-Delivery"


class DeliveryError(Exception):
    """A delivery did not happen."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SecretMissingError(ValueError):
    """A channel names an environment variable for its secret that is not set."""


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None: ...


class HttpClient(Protocol):
    """What the HTTP backends need of an aiohttp session."""

    def post(self, url: str, **kwargs: Any) -> Any: ...


class Backend(Protocol):
    """Sends notes to one channel."""

    grouped: bool  # whether several notes may go in one delivery

    async def send(self, notes: Sequence[Note]) -> None: ...


def delivery_id(notes: Sequence[Note]) -> str:
    """The same for every attempt at the same group, so that receivers can deduplicate."""
    return hashlib.sha256("\n".join(n.key for n in notes).encode()).hexdigest()[:32]


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def json_payload(channel: str, notes: Sequence[Note]) -> bytes:
    """The JSON body of webhook and MQTT deliveries (see docs/notifications.md)."""
    return orjson.dumps(
        {
            "channel": channel,
            "delivery": delivery_id(notes),
            "messages": [
                {
                    "key": n.key,
                    "incident_id": n.incident_id,
                    "state": n.state,
                    "event": n.event,
                    "text": n.text,
                    "incident": n.incident,
                }
                for n in notes
            ],
        }
    )


def _secret(env_name: str | None, env: Mapping[str, str], channel: str) -> bytes | None:
    if env_name is None:
        return None
    value = env.get(env_name)
    if not value:
        raise SecretMissingError(
            f"notify channel {channel!r}: environment variable {env_name} is not set"
        )
    return value.encode()


async def _post(
    session: HttpClient,
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    secret: bytes | None,
    seconds: float,
) -> None:
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            await resp.read()
            if resp.status < 300:
                return
            # Asking again cannot change a refusal, except for these.
            retry = resp.status >= 500 or resp.status in (408, 425, 429)
            raise DeliveryError(f"{url} answered HTTP {resp.status}", permanent=not retry)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{url}: {exc.__class__.__name__}: {exc}") from None


class WebhookBackend:
    """JSON POST, signed in the X-Hub-Signature-256 header."""

    grouped = True

    def __init__(
        self, name: str, cfg: WebhookChannel, session: HttpClient,
        env: Mapping[str, str],
    ) -> None:  # fmt: skip
        self.name, self.cfg, self.session = name, cfg, session
        self.secret = _secret(cfg.secret_env, env, name)

    async def send(self, notes: Sequence[Note]) -> None:
        """POST the group as one JSON document."""
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id(notes)}
        body = json_payload(self.name, notes)
        await _post(
            self.session,
            url=self.cfg.url,
            body=body,
            headers=headers,
            secret=self.secret,
            seconds=self.cfg.timeout,
        )


class MqttBackend:
    """JSON published with QoS 1; done when the broker acknowledged it."""

    grouped = True

    def __init__(self, name: str, cfg: MqttChannel, publisher: Publisher, prefix: str) -> None:
        self.name, self.cfg, self.publisher = name, cfg, publisher
        self.topic = cfg.topic.replace("{prefix}", prefix)

    async def send(self, notes: Sequence[Note]) -> None:
        """Publish the group as one message."""
        # The client keeps a QoS 1 message until the broker has it, even past our time
        # limit; publishing while disconnected would queue a second copy on every retry.
        if not getattr(self.publisher, "connected", True):
            raise DeliveryError("not connected to the MQTT broker")
        try:
            async with asyncio.timeout(self.cfg.timeout):
                await self.publisher.publish(self.topic, json_payload(self.name, notes), qos=1)
        except TimeoutError:
            raise DeliveryError(f"no PUBACK within {self.cfg.timeout:.0f}s") from None
        except Exception as exc:
            raise DeliveryError(f"publish failed: {exc}") from None


class EmailBackend:
    """One plain-text e-mail per group, through SMTP (STARTTLS when configured)."""

    grouped = True

    def __init__(self, name: str, cfg: EmailChannel, env: Mapping[str, str]) -> None:
        self.name, self.cfg = name, cfg
        self.password = _secret(cfg.password_env, env, name)

    def message(self, notes: Sequence[Note]) -> EmailMessage:
        """The e-mail for a group of notes."""
        first = notes[0]
        subject = render(self.cfg.subject, first.incident, first, self.name)
        if len(notes) > 1:
            subject += f" (+{len(notes) - 1} more)"
        msg = EmailMessage()
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.to)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        # Stable across attempts, so that a mail system can drop a copy sent twice.
        msg["Message-ID"] = f"<{delivery_id(notes)}@hub>"
        msg.set_content("\n\n".join(n.text for n in notes) + "\n")
        return msg

    def _send(self, msg: EmailMessage) -> None:
        cfg = self.cfg
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout) as smtp:
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username and self.password is not None:
                smtp.login(cfg.username, self.password.decode())
            smtp.send_message(msg)

    async def send(self, notes: Sequence[Note]) -> None:
        """Send the e-mail; smtplib blocks, so it runs in a thread with socket timeouts."""
        try:
            async with asyncio.timeout(self.cfg.timeout * 3):
                await asyncio.to_thread(self._send, self.message(notes))
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            msg = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            raise DeliveryError(msg, permanent=permanent) from None
        except (OSError, smtplib.SMTPException, TimeoutError) as exc:
            raise DeliveryError(f"SMTP {self.cfg.host}:{self.cfg.port}: {exc!r}") from None


class CapBackend:
    """A CAP alert is published in the hub's feed when accepted; POSTed to `url` if set."""

    grouped = False  # CAP has one alert per message

    def __init__(
        self, name: str, cfg: CapChannel, session: HttpClient, env: Mapping[str, str]
    ) -> None:
        self.name, self.cfg, self.session = name, cfg, session
        self.secret = _secret(cfg.secret_env, env, name)

    async def send(self, notes: Sequence[Note]) -> None:
        """POST each alert's XML to the configured URL, if any."""
        if self.cfg.url is None:
            return
        for note in notes:
            cap: dict[str, Any] = note.cap or {}
            headers = {"Content-Type": CAP_MIME, DELIVERY_HEADER: delivery_id([note])}
            body = str(cap.get("xml", "")).encode()
            await _post(
                self.session,
                url=self.cfg.url,
                body=body,
                headers=headers,
                secret=self.secret,
                seconds=self.cfg.timeout,
            )
