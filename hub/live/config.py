"""The `live:` section of hub.yaml, and what a relay is told from it."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from hub.config.types import PositiveDuration, Section
from hub.live.feed import Source
from hub.live.relay import RelaySettings

if TYPE_CHECKING:
    from hub.detection.config import DetectionConfig
    from hub.inventory import Inventory


class LiveConfig(Section):
    """Live camera view: the relays, their secret, and the video wall's choices."""

    enabled: bool = True
    # Relays run on their own (`hub relay`), as the page reaches them (http://HOST:PORT);
    # a camera goes to one of them by rendezvous hashing on its id. Empty: the hub starts
    # a relay of its own as a child process, at `listen`.
    relays: tuple[str, ...] = ()
    # The child relay's address; null: the API's host and a free port.
    listen: str | None = None
    # Signs viewing tickets; relays run on their own need the same one. Null: the hub
    # makes one for its child relay at each start (a relay on its own then refuses to run).
    secret: str | None = Field(default=None, repr=False)
    idle_after: PositiveDuration = 30.0
    ticket_ttl: PositiveDuration = 60.0
    first_picture: PositiveDuration = 10.0
    # A camera whose faces must be blurred is shown this many pixels wide, encoded again.
    private_width: Annotated[int, Field(ge=64, le=1920, multiple_of=2)] = 320
    warm_on_incident: bool = True
    # The video wall: an incident brings this many covering cameras within `within_m`.
    wall_cameras: Annotated[int, Field(gt=0, le=64)] = 4
    within_m: Annotated[float, Field(gt=0, le=100_000)] = 300.0

    @field_validator("relays")
    @classmethod
    def _relays(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"a relay is an http:// or https:// URL, got {url!r}")
        return tuple(url.rstrip("/") for url in value)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8081, got {value!r}")
        return value.strip()


def sources(inventory: Inventory, detection: DetectionConfig) -> dict[str, Source]:
    """Every camera as a relay pulls it: URL with credentials, and whether to blur it."""
    return {
        c.id: Source(c.id, c.url, detection.blur_faces(c))
        for _, c in sorted(inventory.cameras.items())
    }


def relay_settings(
    live: LiveConfig, inventory: Inventory, detection: DetectionConfig, secret: str
) -> RelaySettings:
    """What a relay of this configuration serves."""
    return RelaySettings(
        sources(inventory, detection),
        secret,
        idle_after=live.idle_after,
        first_picture=live.first_picture,
        private_width=live.private_width,
    )


def new_secret() -> str:
    """A secret for a relay the hub starts itself."""
    return secrets.token_urlsafe(32)


def settings_from_file(path: str | None) -> RelaySettings:
    """A relay run on its own: hub.yaml's cameras and `live.secret` (ValueError if unset)."""
    # hub.config reads this module: it is imported when a relay on its own starts.
    from hub.config import ConfigError, load_config  # noqa: PLC0415
    from hub.inventory import load_inventory  # noqa: PLC0415

    try:
        config = load_config(Path(path) if path else None)
        inventory = load_inventory(config.inventory)
    except ConfigError as exc:
        raise ValueError("; ".join(str(p) for p in exc.problems)) from exc
    if not config.live.secret:
        raise ValueError(
            "live.secret (or HUB_LIVE_SECRET) must be set: the hub signs tickets with it"
        )
    return relay_settings(config.live, inventory, config.detection, config.live.secret)
