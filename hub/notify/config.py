"""The `notify:` section of hub.yaml: channels by name, templates, grouping and limits.

Secrets are never read from this file: a channel names the environment variable that holds
its HMAC key or SMTP password (`secret_env`, `password_env`).
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hub.config.types import Count, Duration, Name, PositiveDuration, Section

# The placeholders a template may use; docs/notifications.md lists what each holds.
PLACEHOLDERS = (
    "id",
    "rule",
    "title",
    "severity",
    "region",
    "site",
    "subject",
    "state",
    "event",
    "message",
    "acked_by",
    "opened_at",
    "cleared_at",
    "channel",
)
EVENTS = ("alert", "acknowledged", "cleared")
SEVERITIES = ("minor", "moderate", "severe", "extreme")


def check_template(value: str) -> str:
    """A template whose `{placeholders}` are all known (ValueError otherwise)."""
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"cannot read the placeholders in {value!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is not None and (name not in PLACEHOLDERS or spec or conversion):
            raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(PLACEHOLDERS)}")
    return value


class Templates(Section):
    """The text of each kind of message; `alert` is a rule's notify action."""

    alert: str = "{message}"
    acknowledged: str = "{title}: acknowledged by {acked_by}"
    cleared: str = "{title}: cleared"

    @field_validator("alert", "acknowledged", "cleared")
    @classmethod
    def _known(cls, value: str) -> str:
        return check_template(value)


class RateLimit(Section):
    """At most `count` deliveries per `per` seconds to a channel; the rest wait, grouped."""

    # Up to MAX_COUNT: the times of that many deliveries are kept to count them.
    count: Count = 10
    per: PositiveDuration = 60.0


class _Channel(Section):
    templates: Templates | None = None  # None: the section's templates
    min_severity: Literal["minor", "moderate", "severe", "extreme"] = "minor"
    rate_limit: RateLimit | None = None  # None: the section's limit


class WebhookChannel(_Channel):
    """JSON POSTed to a URL, signed with HMAC-SHA256 when a secret is set."""

    type: Literal["webhook"]
    url: Name
    secret_env: str | None = None  # the environment variable holding the HMAC key
    timeout: PositiveDuration = 10.0

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class MqttChannel(_Channel):
    """JSON published with QoS 1 on the hub's own broker."""

    type: Literal["mqtt"]
    topic: Name  # `{prefix}` is the hub's topic prefix
    timeout: PositiveDuration = 10.0


class EmailChannel(_Channel):
    """A plain-text e-mail through an SMTP server."""

    type: Literal["email"]
    host: Name = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None  # the environment variable holding the SMTP password
    sender: Name = "hub@localhost"
    to: Annotated[tuple[Name, ...], Field(min_length=1)]
    subject: str = "[{severity}] {title}"
    timeout: PositiveDuration = 10.0

    @field_validator("subject")
    @classmethod
    def _known(cls, value: str) -> str:
        return check_template(value)


class CapChannel(_Channel):
    """CAP 1.2 alerts: served at /cap/feed.atom and /cap/{incident_id}.xml, and POSTed to
    `url` when one is set."""

    type: Literal["cap"]
    sender: Name = "hub@localhost"
    sender_name: str | None = None
    category: Literal[
        "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
        "Infra", "CBRNE", "Other",
    ] = "Safety"  # fmt: skip
    language: str = "en"
    web: str | None = None  # a page with more about the alert, e.g. the situation room
    url: str | None = None
    secret_env: str | None = None
    timeout: PositiveDuration = 10.0


Channel = Annotated[
    WebhookChannel | MqttChannel | EmailChannel | CapChannel, Field(discriminator="type")
]


class NotifyConfig(Section):
    """Notification channels by name, and how messages are grouped and limited."""

    channels: dict[Name, Channel] = Field(default_factory=dict)
    # Channels told of every incident whatever its rule says (a public CAP feed, a log).
    broadcast: tuple[Name, ...] = ()
    templates: Templates = Field(default_factory=Templates)
    # Messages for one channel that come due within this window go in one delivery.
    group_window: Duration = 2.0
    # One delivery (an e-mail, a webhook body) of 10,000 messages is already megabytes.
    max_group: Annotated[int, Field(gt=0, le=10_000)] = 50
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry_min: PositiveDuration = 1.0  # backoff between attempts, doubling, with jitter...
    retry_max: PositiveDuration = 60.0  # ...up to this
    give_up_after: PositiveDuration = 3600.0  # a message not delivered by then is given up
    keep: PositiveDuration = 7 * 86400.0  # how long delivered keys are kept to deduplicate

    @model_validator(mode="after")
    def _broadcast_known(self) -> NotifyConfig:
        for name in self.broadcast:
            if name not in self.channels:
                raise ValueError(f"broadcast names channel {name!r}, which is not configured")
        return self
