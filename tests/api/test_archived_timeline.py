"""The timeline of an incident that the clock archived (`archive_after`): the engine has
forgotten it and no operator's archiving kept its times, so they come from InfluxDB's
history; a hub in the test with a real Mosquitto and InfluxDB."""

from __future__ import annotations

import time

import pytest

from tests.api import support
from tests.api.conftest import Api
from tests.api.test_incident_workflow import flood, recede, timeline
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def rules_text() -> str:
    return support.FLOOD + "    archive_after: 1s\n"


async def test_the_clock_archives_and_the_timeline_still_starts_at_the_opening(
    api: Api, sensors: Peer, prefix: str
) -> None:
    start = time.time() - 20
    incident = await flood(api, sensors, prefix, start)
    iid = incident["id"]
    assert (await api.ack(iid, json={"note": "seen"}))[0] == 200
    await recede(api, sensors, prefix, start + 3, iid)
    await eventually(lambda: api.hub.rules.engine.incident(iid) is None, "the clock's archiving")
    assert (await api.get("/api/audit?kind=archive"))["entries"] == []  # no operator did

    async def from_history() -> list[str] | None:
        kinds = [e["kind"] for e in await timeline(api, iid)]
        return kinds if {"opened", "archived"} <= set(kinds) else None

    kinds = await eventually(from_history, "the opening and archiving, from InfluxDB's history")
    assert kinds[0] == "opened"
    assert kinds.index("cleared") < kinds.index("archived")
    assert kinds.count("archived") == 1
    assert "acknowledged" in kinds
