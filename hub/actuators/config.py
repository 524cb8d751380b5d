"""The `actuators:` section of hub.yaml."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hub.config.types import Count, Duration, Name, PositiveDuration, Section

Severity = Literal["minor", "moderate", "severe", "extreme"]

# The state an actuator reports once a command has taken effect; a command not listed here
# is confirmed by its `done` acknowledgement alone.
DEFAULT_STATES = {
    "close": "closed",
    "open": "open",
    "on": "on",
    "off": "off",
    "start": "running",
    "stop": "stopped",
}


class ConfirmPolicy(Section):
    """Commands from the rules that wait for an operator before they are sent.

    An empty list matches everything: `{commands: [open]}` holds every `open` for a person.
    """

    commands: tuple[Name, ...] = ()
    kinds: tuple[Name, ...] = ()
    actuators: tuple[Name, ...] = ()
    # Go ahead without an operator after this long (null: wait until the command expires).
    auto_after: PositiveDuration | None = None


class Interlock(Section):
    """A command refused while an incident stands at the actuator's site (unless overridden)."""

    command: Name = "open"
    kinds: tuple[Name, ...] = ("barrier",)
    # Rules whose open incidents block the command; empty: any rule's incident at the site.
    rules: tuple[Name, ...] = ()


class RateLimit(Section):
    """At most `commands` commands to one actuator in any `per` (operator overrides excepted)."""

    # Up to MAX_COUNT: the send times of that many commands are kept to count them.
    commands: Count = 10
    per: PositiveDuration = 60.0


class ActuatorsConfig(Section):
    """How commands to actuators are sent, confirmed, retried and limited."""

    # No acknowledgement this long after the first send: timed_out (an incident), resends go on.
    ack_timeout: PositiveDuration = 10.0
    # The same command (same command_id) is sent again this often until acknowledged.
    resend_every: PositiveDuration = 2.0
    # Accepted but the reported state does not confirm it this long after: timed_out.
    done_timeout: PositiveDuration = 60.0
    # A command's lifetime when its action gives no `expires`; after it, it is never sent.
    expires: PositiveDuration = 600.0
    # How long finished commands are kept (the API's history, and deduplication of actions).
    keep_finished: PositiveDuration = 86400.0
    states: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATES))
    # States that mean "moving": they neither confirm nor contradict a command.
    transitional: tuple[str, ...] = ("closing", "opening", "moving", "starting", "stopping")
    confirm: tuple[ConfirmPolicy, ...] = ()
    interlocks: tuple[Interlock, ...] = (Interlock(),)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    # The hub's own incident for a failed command, and what it rises to if nobody acknowledges.
    incident_severity: Severity = "severe"
    escalate_after: Duration = 300.0
    escalate_severity: Severity = "extreme"
    # Finished commands older than `keep_finished` are deleted once more than this many
    # commands are kept, and again each time this many more have come. Ten million kept
    # commands are gigabytes of store: far more than any province issues.
    compact_after: Annotated[int, Field(gt=0, le=10_000_000)] = 5000
