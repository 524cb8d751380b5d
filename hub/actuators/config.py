"""The `actuators:` section of hub.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from hub.config.types import Count, Duration, Name, PositiveDuration, Section

Severity = Literal["minor", "moderate", "severe", "extreme"]

# The commands each kind of actuator takes; any other command to it is refused (the API
# answers 400, a rule file that asks for one does not load).
DEFAULT_COMMANDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "barrier": ("close", "open"),
        "pump": ("start", "stop"),
        "siren": ("on", "off"),
        "sign": ("show", "clear"),
    }
)
# A command or a kind is a word as the API reads one (hub/api/body.py's `command`), so that
# every configured command can be sent.
MAX_WORD = 64
_WORD = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_WORD - 1}}}")

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


def _word(value: str) -> str:
    if not _WORD.fullmatch(value):
        raise ValueError(
            f"expected one word of 1 to {MAX_WORD} letters, digits, '_', '.' or '-' "
            f"(such as close), got {value!r}"
        )
    return value


def _command_list(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError(
            "a kind takes at least one command: list them, e.g. [close, open], "
            "or leave the kind out"
        )
    twice = sorted({c for c in value if value.count(c) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} listed more than once")
    return value


Word = Annotated[str, AfterValidator(_word)]
CommandList = Annotated[tuple[Word, ...], AfterValidator(_command_list)]


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"


def refusal(
    commands: Mapping[str, Sequence[str]], kind: str, command: str, what: str
) -> str | None:
    """Why `command` cannot go to `what` (an actuator of `kind`, or the kind itself), or None
    when its kind takes it: `'explode' is not a command of barrier bar-1; a barrier takes
    close, open`."""
    taken = commands.get(kind)
    if taken is None:
        return (
            f"{what} takes no commands: actuators.commands in hub.yaml lists none for the kind "
            f"{kind!r}; add {kind}: [...] there with the commands it takes"
        )
    if command in taken:
        return None
    return f"{command!r} is not a command of {what}; {_a(kind)} takes {', '.join(taken)}"


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
    # The commands each kind of actuator takes (this map replaces the defaults: list every
    # kind the inventory has). Other commands are refused, by the API and in rule files.
    commands: dict[str, CommandList] = Field(default_factory=lambda: dict(DEFAULT_COMMANDS))
    # The state that confirms a command, whatever the kind; a command not listed here is
    # confirmed by its `done` acknowledgement alone.
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

    @field_validator("commands")
    @classmethod
    def _kinds(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for kind in value:
            if not _WORD.fullmatch(kind):
                raise ValueError(
                    f"a kind is one word of 1 to {MAX_WORD} letters, digits, '_', '.' or '-' "
                    f"(such as barrier), got {kind!r}"
                )
        return value
