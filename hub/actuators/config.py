"""The `actuators:` section of hub.yaml."""

from __future__ import annotations

from hub.config.types import Section


class ActuatorsConfig(Section):
    """How commands to actuators are sent, confirmed, retried and limited."""
