"""Building blocks of configuration sections: durations, paths, counts and the section base.

Sections that belong to other parts of the hub (actuators, notifications) build on these,
so that every section reads and reports its values the same way.

Every number has a range that the whole path can hold: counts are at most MAX_COUNT (or a
tighter limit of their own), durations at most ten years (`hub.durations.MAX_DURATION_S`)
or a tighter limit of their own, and no number in a section may be NaN or infinite.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from hub.config.problems import describe
from hub.durations import MAX_DURATION_S, DurationError, parse_duration

# The generic ceiling of a count (queue lengths, group sizes, limits per period): far beyond
# what a province needs, small enough that a queue of that many items fits in memory.
MAX_COUNT = 1_000_000
# How parse_duration's refusal of a duration over the limit begins.
_TOO_LONG = "a duration here is at most"


def _seconds(value: object, maximum: float = MAX_DURATION_S, why: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        # pydantic turns ValueError into a validation error; a TypeError would escape.
        what = f"expected a duration such as 30s, 5m or 250ms, got {describe(value)}"
        raise ValueError(what)  # noqa: TRY004
    try:
        return parse_duration(value, maximum)
    except DurationError as exc:
        text = str(exc)
        if text.startswith(_TOO_LONG):  # the reason goes with the limit, not with a typo
            text += why
        raise ValueError(text) from None


def duration_at_most(maximum: float, why: str = "") -> BeforeValidator:
    """Read a duration of at most `maximum` seconds; `why` says where the limit comes from.

    Use it as `Annotated[float, duration_at_most(65535, "MQTT holds it in 16 bits")]`.
    """
    reason = f" ({why})" if why else ""
    return BeforeValidator(
        functools.partial(_seconds, maximum=min(maximum, MAX_DURATION_S), why=reason)
    )


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are read against the config file's folder, not the working folder."""
    path = value.expanduser()
    if path.is_absolute():
        return path
    base = (info.context or {}).get("base")
    return (Path(base) if base is not None else Path.cwd()) / path


def _one_or_many(value: object) -> object:
    # `inventory: site/` is a natural slip for `inventory: [site/]`; both mean the same.
    return [value] if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# Durations as people write them (30s, 5m, 250ms, or plain seconds), held as float seconds;
# at most ten years, so that a duration added to a time in ns stays in a 64-bit integer.
Duration = Annotated[float, BeforeValidator(_seconds)]
PositiveDuration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
ConfigPath = Annotated[Path, AfterValidator(_resolve)]
PathList = Annotated[tuple[ConfigPath, ...], BeforeValidator(_one_or_many)]
Name = Annotated[str, AfterValidator(_not_blank)]
# A whole number from 1 to MAX_COUNT; fields with a limit of their own write it out, as
# `Annotated[int, Field(gt=0, le=N)]`, with a comment saying why N.
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]


class Section(BaseModel):
    """A section of hub.yaml: unknown keys are errors, values do not change once read.

    No number in a section may be NaN or infinite (YAML's `.nan`, `.inf`, `1.0e+400`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
