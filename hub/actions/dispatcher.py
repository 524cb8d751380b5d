"""The action dispatcher: one executor per action kind (detect, actuate, notify).

Executors are plugged in by the parts that own them (detection, actuators, notifications);
until one is registered, a kind goes to the logging executor. Every call is bounded in time,
and an executor that fails or hangs is reported without stopping the others. An action may
be handed over more than once after a crash (the rules' outbox is at least once), so
executors deduplicate by `action.action_id`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from hub import metrics
from hub.rules.events import ActionRequested

log = logging.getLogger("hub.actions")


class ActionExecutor(Protocol):
    """Carries out actions of one kind; must be idempotent per `action_id`."""

    async def execute(self, action: ActionRequested) -> None: ...


class LoggingExecutor:
    """Writes the action to the log: the stand-in until a kind has a real executor."""

    async def execute(self, action: ActionRequested) -> None:
        """Log the action with everything needed to carry it out by hand."""
        log.warning(
            "action %s requested: %s %s for incident %s (rule %s, %s, region %s)",
            action.action_id,
            action.kind,
            dict(action.params),
            action.incident_id,
            action.rule,
            action.severity,
            action.region,
        )


class ActionDispatcher:
    """Routes each action to the executor registered for its kind."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._executors: dict[str, ActionExecutor] = {}
        self._fallback: ActionExecutor = LoggingExecutor()

    def register(self, kind: str, executor: ActionExecutor) -> None:
        """Use `executor` for actions of `kind`."""
        self._executors[kind] = executor

    async def dispatch(self, action: ActionRequested) -> bool:
        """Hand the action over; False if its executor failed or took longer than the limit."""
        executor = self._executors.get(action.kind, self._fallback)
        try:
            async with asyncio.timeout(self.timeout):
                await executor.execute(action)
        except TimeoutError:
            log.error(  # noqa: TRY400 - the traceback of a timeout says nothing more
                "action %s (%s): executor took longer than %.0fs",
                action.action_id,
                action.kind,
                self.timeout,
            )
            metrics.ACTIONS.labels(action.kind, "timeout").inc()
            return False
        except Exception:
            log.exception("action %s (%s): executor failed", action.action_id, action.kind)
            metrics.ACTIONS.labels(action.kind, "failed").inc()
            return False
        metrics.ACTIONS.labels(action.kind, "dispatched").inc()
        return True
