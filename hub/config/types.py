"""Building blocks of configuration sections: durations, paths, counts and the section base.

Sections that belong to other parts of the hub (actuators, notifications) build on these,
so that every section reads and reports its values the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from hub.config.problems import describe
from hub.durations import DurationError, parse_duration


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        # pydantic turns ValueError into a validation error; a TypeError would escape.
        what = f"expected a duration such as 30s, 5m or 250ms, got {describe(value)}"
        raise ValueError(what)  # noqa: TRY004
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from None


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


# Durations as people write them (30s, 5m, 250ms, or plain seconds), held as float seconds.
Duration = Annotated[float, BeforeValidator(_seconds)]
PositiveDuration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
ConfigPath = Annotated[Path, AfterValidator(_resolve)]
PathList = Annotated[tuple[ConfigPath, ...], BeforeValidator(_one_or_many)]
Name = Annotated[str, AfterValidator(_not_blank)]
Count = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    """A section of hub.yaml: unknown keys are errors, values do not change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
