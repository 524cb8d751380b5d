"""The pure rule engine."""

from hub.rules.engine.core import Engine
from hub.rules.engine.state import SnapshotError

__all__ = ["Engine", "SnapshotError"]
