"""Actions the rules ask for, handed to the executor registered for their kind."""

from hub.actions.dispatcher import ActionDispatcher, ActionExecutor, LoggingExecutor

__all__ = ["ActionDispatcher", "ActionExecutor", "LoggingExecutor"]
