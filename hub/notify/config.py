"""The `notify:` section of hub.yaml."""

from __future__ import annotations

from hub.config.types import Section


class NotifyConfig(Section):
    """Notification channels by name, and how messages are grouped and limited."""
