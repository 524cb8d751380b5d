"""The CSV export of a time range's incidents and their timelines, against a hub in the test
with a real Mosquitto and InfluxDB: an archived incident comes from InfluxDB's history, an
open one from the engine, with their timelines; spreadsheet formulas are defused."""

from __future__ import annotations

import csv
import io
import time

import pytest

from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.api.test_incident_workflow import archive, flood, recede
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration

PATH = "/api/export/incidents.csv"


async def export(api: Api, query: str = "", token: str | None = VIEWER) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.session.get(api.base + PATH + query, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/csv"
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="incidents-')
        raw = await resp.read()
    assert raw.startswith("\ufeff".encode())  # spreadsheets read Hangul as UTF-8 with it
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


async def test_archived_and_open_incidents_with_their_timelines(
    api: Api, sensors: Peer, prefix: str
) -> None:
    start = time.time() - 60
    first = await flood(api, sensors, prefix, start)
    status, _ = await api.ack(first["id"], json={"note": '=HYPERLINK("http://x")'})
    assert status == 200
    await recede(api, sensors, prefix, start + 3, first["id"])
    assert (await archive(api, first["id"]))[0] == 200
    second = await flood(api, sensors, prefix, start + 10)
    assert second["id"] != first["id"]

    async def both() -> list[dict[str, str]] | None:
        rows = await export(api, "?from=2m")
        ids = {r["incident_id"] for r in rows}
        return rows if ids == {first["id"], second["id"]} else None

    rows = await eventually(both, "both incidents in the export (the history in InfluxDB)")
    archived = [r for r in rows if r["incident_id"] == first["id"]]
    kinds = [r["kind"] for r in archived]
    assert kinds[0] == "opened"
    assert kinds[-1] == "archived"
    assert {"acknowledged", "cleared"} <= set(kinds)
    assert [r["time"] for r in archived] == sorted(r["time"] for r in archived)
    # Every row carries its incident's columns; the engine no longer holds this one.
    assert {(r["rule"], r["severity"], r["region"], r["subject"]) for r in archived} == {
        ("underpass-flood", "severe", "suwon", "wl-1")
    }
    assert all(r["acknowledged_by"] == "desk-1" and r["cleared_at"] for r in archived)
    (acked,) = [r for r in archived if r["kind"] == "acknowledged"]
    assert acked["by"] == "desk-1"
    assert acked["note"] == '\'=HYPERLINK("http://x")'  # text, not a formula
    assert next(r["kind"] for r in rows if r["incident_id"] == second["id"]) == "opened"
    # Oldest incident first.
    assert rows[0]["incident_id"] == first["id"]

    # A range that ends before the incidents opened has none of them; the header stays.
    assert await export(api, f"?from=2m&to={_rfc3339(start - 30)}") == []


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?from=yesterday", "'from': cannot read 'yesterday'"),
        ("?from=2026-07-14T09:00:00", "has no time zone"),
        ("?from=93d", "'from': at most 92d back"),
        ("?from=1h&to=2h", "'from' must be before 'to'"),
        ("?from=9999-01-01T00:00:00Z", "outside 1970 to 2262"),
    ],
)
async def test_bad_ranges(api: Api, query: str, message: str) -> None:
    status, body = await api.call("GET", PATH + query)
    assert status == 400, body
    assert message in body["error"]


async def test_needs_a_token(api: Api) -> None:
    status, _ = await api.call("GET", PATH, token=None)
    assert status == 401
    assert (await export(api, token=OPERATOR)) == []
