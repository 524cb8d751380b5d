"""Message text: str.format-style templates filled from the incident (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.rules.service import rfc3339

if TYPE_CHECKING:
    from hub.notify.outbox import Note

# The incident fields a message carries (the contract's, without actions and evidence).
SUMMARY_FIELDS = (
    "id",
    "rule",
    "title",
    "severity",
    "region",
    "site",
    "subject",
    "state",
    "acked_by",
    "opened_at",
    "cleared_at",
)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def summary(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The incident as messages carry it, times in RFC 3339."""
    out = {k: incident.get(k) for k in SUMMARY_FIELDS}
    for key in ("opened_at", "cleared_at"):
        if isinstance(out[key], int):
            out[key] = rfc3339(out[key])
    return out


def fill(
    template: str, incident: Mapping[str, Any], *, event: str, channel: str, message: str
) -> str:
    """Fill in a checked template; absent values read as empty text."""
    values = {k: "" if v is None else str(v) for k, v in incident.items()}
    values.update(event=event, channel=channel, message=message)
    return template.format_map(_Blank(values))


def render(template: str, incident: Mapping[str, Any], note: Note, channel: str) -> str:
    """A template filled for a note already accepted (e-mail subjects)."""
    return fill(template, incident, event=note.event, channel=channel, message=note.text)
