"""The `plates:` section of hub.yaml: which cameras read plates, with which reader, and the key
of the watch-list's digests (docs/plates.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from hub.config.types import Count, Name, PositiveDuration, Section
from hub.plates.text import KOREAN

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class PlatesConfig(Section):
    """Wanted-vehicle plates: the stream workers' plate stage and the hub's watch-list."""

    # Cameras whose vehicles' plates are read (by the stream worker watching each); empty:
    # none, and no worker loads a reader.
    cameras: tuple[Name, ...] = ()
    # The plate reader, `module:factory` (a hub.plates.reader.PlateReader); required with
    # cameras. `options` are the factory's keyword arguments.
    reader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Tracks of these classes (after streams.aliases) are read.
    classes: tuple[Name, ...] = ("car", "bus", "truck")
    # A read scoring less is ignored.
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    # A track is read at most this often, and at most `reads` times (a car parked in view
    # is not read for ever); a hit ends the reading of its track.
    every: PositiveDuration = 1.0
    reads: Annotated[int, Field(ge=1, le=1000)] = 10
    # Vehicles narrower than this in the analysed frame are not read (their plates are a few
    # pixels wide).
    min_width: Annotated[int, Field(ge=8, le=1920)] = 48
    # A normalised plate must match this whole to be listed or reported.
    pattern: str = KOREAN
    # Keys the digests of the watch-list that the hub publishes to the workers; shared by the
    # hub and the workers only. Or HUB_PLATES_SECRET.
    secret: str | None = Field(default=None, repr=False)
    max_entries: Count = 10_000

    @field_validator("reader")
    @classmethod
    def _reader(cls, value: str | None) -> str | None:
        if value is not None and not _FACTORY.fullmatch(value):
            raise ValueError(
                f"expected module:factory such as hub.plates.standin:StandinReader, got {value!r}"
            )
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _needs(self) -> PlatesConfig:
        if self.cameras and self.reader is None:
            raise ValueError(
                "cameras read plates, but no reader is named: set reader: module:factory "
                "(docs/plates.md)"
            )
        if self.cameras and not self.secret:
            raise ValueError(
                "cameras read plates, but there is no secret to key the watch-list's digests: "
                "set plates.secret or HUB_PLATES_SECRET, the same for the hub and its workers"
            )
        if self.secret is not None and len(self.secret) < 16:
            raise ValueError("secret: at least 16 characters (it keys the watch-list's digests)")
        return self

    @property
    def key(self) -> bytes | None:
        """The digests' key, or None when there is no secret."""
        return self.secret.encode() if self.secret else None
