"""Safety policies, as pure checks: operator confirmation, interlocks and the rate limit."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.actuators.config import ConfirmPolicy, Interlock, RateLimit
from hub.inventory.model import Actuator
from hub.rules.engine.world import SYSTEM_RULES
from hub.rules.events import Incident

_OPEN = ("active", "acknowledged")


def _matches(names: tuple[str, ...], value: str | None) -> bool:
    return not names or value in names


def confirmation(
    policies: Iterable[ConfirmPolicy], actuator: Actuator, command: str
) -> ConfirmPolicy | None:
    """The first policy that holds this command for an operator, if any."""
    for policy in policies:
        if (
            _matches(policy.commands, command)
            and _matches(policy.kinds, actuator.kind)
            and _matches(policy.actuators, actuator.id)
        ):
            return policy
    return None


def interlock(
    interlocks: Iterable[Interlock],
    actuator: Actuator,
    command: str,
    incidents: Callable[[], list[Incident]],
) -> str | None:
    """Why the command is refused now (an incident standing at the site), or None.

    `incidents` gives the site's incidents; it is called only when an interlock applies to
    the command, so that a `close` does not look through them on its way out."""
    if actuator.site is None:
        return None
    for lock in interlocks:
        if lock.command != command or not _matches(lock.kinds, actuator.kind):
            continue
        for incident in incidents():
            if (
                incident.state in _OPEN
                and incident.site == actuator.site
                and incident.rule not in SYSTEM_RULES
                and _matches(lock.rules, incident.rule)
            ):
                return (
                    f"interlock: incident {incident.id} ({incident.rule}) is {incident.state} "
                    f"at site {actuator.site}; an operator may override"
                )
    return None


def rate_limited(limit: RateLimit, issued: Iterable[int], now_ns: int) -> str | None:
    """Why one more command now would exceed the limit, or None; `issued` are send times."""
    since = now_ns - int(limit.per * 1e9)
    recent = sum(1 for t in issued if t > since)
    if recent >= limit.commands:
        return f"rate limit: {recent} commands in the last {limit.per:g}s"
    return None
