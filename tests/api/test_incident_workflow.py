"""The incident workflow past acknowledging: operators' notes, archiving and the timeline,
against a hub in the test with a real Mosquitto and InfluxDB."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hub.services import LocalMosquitto
from tests.api.conftest import Api
from tests.api.support import OPERATOR, VIEWER
from tests.api.test_room import send
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration


async def flood(api: Api, peer: Peer, prefix: str, start: float) -> dict[str, Any]:
    """Water at 20 cm for 2 s of the gauge's time from `start`: the flood rule opens one."""
    for i in range(3):
        send(peer, prefix, "wl-1", 20.0, start + i)

    async def opened() -> Any:
        incidents = (await api.get("/api/incidents?state=open"))["incidents"]
        return incidents[0] if incidents else None

    incident: dict[str, Any] = await eventually(opened, "the flood incident")
    return incident


async def recede(api: Api, peer: Peer, prefix: str, start: float, incident_id: str) -> None:
    """Water at 5 cm for 2 s of the gauge's time from `start`: the incident clears."""
    for i in range(3):
        send(peer, prefix, "wl-1", 5.0, start + i)

    async def cleared() -> bool:
        status, body = await api.call("GET", f"/api/incidents/{incident_id}")
        return status == 200 and body["incident"]["state"] == "cleared"

    await eventually(cleared, "the flood incident to clear")


async def note(api: Api, incident_id: str, token: str = OPERATOR, **kw: Any) -> tuple[int, Any]:
    return await api.call("POST", f"/api/incidents/{incident_id}/notes", token, **kw)


async def archive(api: Api, incident_id: str, token: str = OPERATOR) -> tuple[int, Any]:
    return await api.call("POST", f"/api/incidents/{incident_id}/archive", token)


async def timeline(api: Api, incident_id: str) -> list[dict[str, Any]]:
    body = await api.get(f"/api/incidents/{incident_id}/timeline")
    assert body["incident_id"] == incident_id
    entries: list[dict[str, Any]] = body["timeline"]
    assert [e["ts"] for e in entries] == sorted(e["ts"] for e in entries)
    return entries


async def test_notes_go_to_the_audit_trail_and_the_timeline(
    api: Api, sensors: Peer, prefix: str
) -> None:
    incident = await flood(api, sensors, prefix, time.time() - 10)
    iid = incident["id"]

    status, body = await api.ack(iid, json={"note": "crew on the way"})
    assert status == 200
    assert body["incident"]["state"] == "acknowledged"
    status, body = await note(api, iid, json={"text": "water receding\n\tslowly"})
    assert status == 201, body
    assert body["note"]["by"] == "desk-1"
    assert body["note"]["text"] == "water receding\n\tslowly"
    assert body["note"]["incident_id"] == iid
    assert body["note"]["ts"].endswith("Z")

    # The audit trail: the acknowledgement with its note, the note on its own.
    (ack,) = (await api.get("/api/audit?kind=ack"))["entries"]
    assert (ack["actor"], ack["incident_id"], ack["note"]) == ("desk-1", iid, "crew on the way")
    (kept,) = (await api.get("/api/audit?kind=note"))["entries"]
    assert (kept["actor"], kept["incident_id"]) == ("desk-1", iid)
    assert kept["detail"] == "water receding\n\tslowly"
    # Durable before the answer: the note is in the store's audit space already.
    assert any(
        doc.get("kind") == "note" and doc.get("incident_id") == iid
        for _, doc in api.hub.store.scan("audit")
    )

    entries = await timeline(api, iid)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "opened"
    assert kinds.index("opened") < kinds.index("acknowledged") < kinds.index("note")
    acked = entries[kinds.index("acknowledged")]
    assert (acked["by"], acked["note"]) == ("desk-1", "crew on the way")
    noted = entries[kinds.index("note")]
    assert (noted["by"], noted["text"]) == ("desk-1", "water receding\n\tslowly")

    # The flood rule notifies the situation room (not configured here): the notification
    # is there, by channel, with its status and reason.
    async def notified() -> Any:
        found = [e for e in await timeline(api, iid) if e["kind"] == "notification"]
        return found or None

    (sent,) = await eventually(notified, "the notification in the timeline")
    assert (sent["channel"], sent["status"], sent["by"]) == (
        "situation-room",
        "failed",
        "underpass-flood",
    )
    assert "no channel 'situation-room' configured" in sent["text"]


async def test_a_viewer_cannot_write(api: Api, sensors: Peer, prefix: str) -> None:
    incident = await flood(api, sensors, prefix, time.time() - 10)
    iid = incident["id"]
    status, body = await note(api, iid, token=VIEWER, json={"text": "hello"})
    assert status == 403
    assert "operator" in body["error"]
    status, body = await archive(api, iid, token=VIEWER)
    assert status == 403
    assert "operator" in body["error"]
    status, body = await api.ack(iid, token=VIEWER, json={"note": "hello"})
    assert status == 403
    assert (await api.get("/api/audit?kind=note,ack,archive"))["entries"] == []
    assert (await timeline(api, iid))[0]["kind"] == "opened"  # a viewer reads it


async def test_archiving_once_cleared(
    api: Api, sensors: Peer, prefix: str, mosquitto: LocalMosquitto, uid: str
) -> None:
    start = time.time() - 20
    incident = await flood(api, sensors, prefix, start)
    iid = incident["id"]
    topic = f"{prefix}/incidents/{incident['region']}/{iid}"

    status, body = await archive(api, iid)
    assert status == 409
    assert "active" in body["error"]
    assert (await api.ack(iid))[0] == 200
    status, body = await archive(api, iid)
    assert status == 409
    assert "acknowledged" in body["error"]

    await recede(api, sensors, prefix, start + 3, iid)
    listener = Peer(mosquitto.url, f"listener-{uid}")
    try:
        listener.subscribe(f"{prefix}/incidents/#")
        await eventually(
            lambda: any(t == topic and b"cleared" in p for t, p in listener.received),
            "the retained incident, cleared",
        )
        status, body = await archive(api, iid)
        assert status == 200, body
        assert body["incident"]["state"] == "archived"
        assert body["incident"]["archived_by"] == "desk-1"
        # The rules' state without the incident is saved before the answer.
        assert api.hub.rules.engine.incident(iid) is None
        await eventually(
            lambda: (topic, b"") in listener.received, "the retained message to be cleared"
        )
    finally:
        listener.close()

    status, _ = await api.call("GET", f"/api/incidents/{iid}")
    assert status == 404
    status, body = await archive(api, iid)
    assert status == 404
    (audited,) = (await api.get("/api/audit?kind=archive"))["entries"]
    assert (audited["actor"], audited["incident_id"]) == ("desk-1", iid)
    assert audited["ts"].endswith("Z")

    entries = await timeline(api, iid)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "opened"
    assert kinds[-1] == "archived"
    assert entries[-1]["by"] == "desk-1"
    # The clearing is at the gauge's time (20 s ago), the acts at the hub's.
    assert kinds.index("cleared") < kinds.index("acknowledged") < kinds.index("archived")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "'text' must hold the note"),
        ("{}", "'text' must hold the note"),
        ('{"text": ""}', "'text' must hold the note"),
        ('{"text": "  \\n "}', "'text' must hold the note"),
        ('{"text": 5}', "'text' must be text"),
        ('{"text": "' + "x" * 2001 + '"}', "at most 2000 characters"),
        ('{"text": "bell\\u0007"}', "control character"),
        ('{"text": "ok", "by": "me"}', "unknown keys"),
        ("{not json", "not JSON"),
        ("[1]", "JSON object"),
    ],
)
async def test_bad_note_bodies(api: Api, body: str, message: str) -> None:
    status, answer = await note(api, "whatever", data=body)
    assert status == 400, answer
    assert message in answer["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"note": 1}', "'note' must be text"),
        ('{"note": "' + "x" * 2001 + '"}', "at most 2000 characters"),
        ('{"note": "\\u0000"}', "control character"),
    ],
)
async def test_bad_acknowledgement_notes(api: Api, body: str, message: str) -> None:
    status, answer = await api.ack("whatever", data=body)
    assert status == 400, answer
    assert message in answer["error"]


async def test_unknown_incident(api: Api) -> None:
    for status, body in (
        await note(api, "no-such-incident", json={"text": "hello"}),
        await archive(api, "no-such-incident"),
        await api.call("GET", "/api/incidents/no-such-incident/timeline"),
    ):
        assert status == 404
        assert "no-such-incident" in body["error"]
    assert (await api.get("/api/audit?kind=note,archive"))["entries"] == []
