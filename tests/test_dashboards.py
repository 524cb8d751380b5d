"""Every query of the Grafana dashboards runs on a real InfluxDB holding the hub's readings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hub.services import LocalInflux
from hub.storage.line import point_line, reading_line
from tests.helpers import influx_query, influx_write

DASHBOARDS = sorted((Path(__file__).parent.parent / "dashboards").glob("*.json"))


def _grafana_macros(query: str) -> str:
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1m")
        .replace("/^$region$/", "/^(suwon|goyang)$/")
    )


@pytest.mark.integration
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_return_data(path: Path, influx: LocalInflux, database: str) -> None:
    now = time.time_ns()
    lines = b"".join(
        reading_line(f"s-{kind}", kind, "suwon", "up-1", 1.5, now - i * 10**9)
        for kind in ("water_level", "rain_rate", "tilt", "flood_switch")
        for i in range(5)
    )
    lines += b"".join(
        [
            point_line(
                "incident",
                {
                    "rule": "flood",
                    "severity": "severe",
                    "region": "suwon",
                    "site": "up-1",
                    "subject": "s-water_level",
                },
                {"id": "abc", "state": "active", "event": "opened", "title": "Flood"},
                now,
            ),
            point_line(
                "command",
                {"actuator": "b-1", "action": "close", "region": "suwon"},
                {"command_id": "c-1", "status": "done"},
                now,
            ),
            point_line(
                "audit", {"kind": "ack", "actor": "desk-1"}, {"detail": "acknowledged"}, now
            ),
        ]
    )
    influx_write(influx.url, database, lines)

    dashboard = json.loads(path.read_text())
    queries = [t["query"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert queries, f"{path.name} has no queries"
    for query in queries:
        rows = influx_query(influx.url, database, _grafana_macros(query))
        assert any(
            r.get(k) for r in rows for k in ("mean", "count", "last", "id", "detail", "status")
        ), f"no data for {query}"
    for variable in dashboard["templating"]["list"]:
        rows = influx_query(influx.url, database, variable["query"])
        assert {r["value"] for r in rows} == {"suwon"}
