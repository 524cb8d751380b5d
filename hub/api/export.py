"""The incidents of a time range and their timelines, as CSV for a report or a spreadsheet.

One row per timeline entry, each with its incident's columns, so that a spreadsheet filters
and sorts it without joins. The incidents are those opened in the range, from two places:
InfluxDB's `incident` history (every opening, acknowledgement, clearing and archiving the
rules made, archived incidents included) and the engine (the incidents it holds, with their
actions). Their timelines come from `hub.api.timeline` as the API's do.

The file starts with a UTF-8 byte order mark (the spreadsheet most used in the province's
offices reads Hangul as mojibake without it), and a cell that a spreadsheet would take for a
formula (=, +, -, @) is written with a leading apostrophe: an incident's title comes from a
rule file, a note from an operator.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from hub.api.timeline import timeline
from hub.audit import AuditEntry, by_incident
from hub.rules.service import rfc3339

COLUMNS = (
    "incident_id",
    "rule",
    "title",
    "severity",
    "region",
    "site",
    "subject",
    "opened_at",
    "acknowledged_at",
    "acknowledged_by",
    "cleared_at",
    "time",
    "kind",
    "by",
    "text",
    "note",
)
MAX_RANGE_S = 92 * 86400.0  # a quarter: one report's worth
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
# An incident's history event -> the field of its record that the event's time fills.
_EVENT_TIME = {
    "opened": "opened_at",
    "acknowledged": "acked_at",
    "cleared": "cleared_at",
    "archived": "archived_at",
}


def history_query(start_ns: int) -> str:
    """The InfluxQL that reads the incidents' history from `start_ns` on (ints only)."""
    return f'SELECT * FROM "incident" WHERE time >= {int(start_ns)}'  # noqa: S608


def history_of_query(incident_id: str) -> str:
    """The InfluxQL that reads one incident's history (the id quoted as a literal)."""
    literal = incident_id.replace("\\", "\\\\").replace("'", "\\'")
    return f'SELECT * FROM "incident" WHERE "id" = \'{literal}\''  # noqa: S608


def from_history(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Incident records (`to_dict` form, without actions) from the history's rows."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        incident_id = row.get("id")
        if not isinstance(incident_id, str):
            continue
        record = found.setdefault(incident_id, {"id": incident_id})
        for key in ("rule", "severity", "region", "site", "subject", "title"):
            if row.get(key):
                record.setdefault(key, row[key])
        field = _EVENT_TIME.get(str(row.get("event")))
        if field is not None:
            record.setdefault(field, int(row["time"]))
        if row.get("acked_by"):
            record["acked_by"] = row["acked_by"]
    return found


def incidents_in(
    held: Iterable[Mapping[str, Any]],
    history: Mapping[str, Mapping[str, Any]],
    start_ns: int,
    end_ns: int,
) -> list[dict[str, Any]]:
    """The incidents opened in [start_ns, end_ns), oldest first: the engine's record where it
    holds the incident (`held`, `to_dict` form), else the history's."""
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in history.items()}
    for record in held:
        merged[record["id"]] = {**merged.get(record["id"], {}), **record}
    chosen = [
        r
        for r in merged.values()
        if isinstance(r.get("opened_at"), int) and start_ns <= r["opened_at"] < end_ns
    ]
    chosen.sort(key=lambda r: (r["opened_at"], r["id"]))
    return chosen


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _time(ns: Any) -> str:
    return rfc3339(ns) or "" if isinstance(ns, int) else ""


def file_name(start_ns: int, end_ns: int) -> str:
    """`incidents-2026-07-14T090000-2026-07-15T090000.csv`: the range, in UTC, in the name."""
    return f"incidents-{_time(start_ns)[:19]}-{_time(end_ns)[:19]}.csv".replace(":", "")


def write_csv(incidents: Iterable[Mapping[str, Any]], audit: Iterable[AuditEntry]) -> bytes:
    """The CSV file: one row per timeline entry (an incident without any gets one row)."""
    trails = by_incident(audit)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for record in incidents:
        head = [
            record["id"],
            record.get("rule"),
            record.get("title"),
            record.get("severity"),
            record.get("region"),
            record.get("site"),
            record.get("subject"),
            _time(record.get("opened_at")),
            _time(record.get("acked_at")),
            record.get("acked_by"),
            _time(record.get("cleared_at")),
        ]
        entries = timeline(record["id"], record, trails.get(record["id"], [])) or []
        for e in entries or [{}]:
            row = [*head, e.get("ts"), e.get("kind"), e.get("by"), e.get("text"), e.get("note")]
            writer.writerow([_cell(v) for v in row])
    return out.getvalue().encode()
