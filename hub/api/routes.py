"""The situation room's HTTP API and page: sensors, cameras, incidents, audit, rules, stream."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from hub.api import export, openapi, stream
from hub.api.auth import Actor, authorized, error, install, refuse
from hub.api.body import MAX_NOTE, BodyError, moment_field, path_id, read_object, text_field
from hub.api.room import STATES, Room, matching, public
from hub.api.timeline import timeline
from hub.rules.events import Incident, IncidentNotFoundError, IncidentStateError
from hub.rules.service import rfc3339
from hub.storage.influx import InfluxError, quote_ident
from hub.store import StoreError
from hub.supervise import supervised
from hub.units import CANONICAL

if TYPE_CHECKING:
    from hub.app import Hub

ROOM: web.AppKey[Room] = web.AppKey("room", Room)
WEB = Path(__file__).resolve().parent.parent / "web"
SEVERITIES = ("minor", "moderate", "severe", "extreme")
MAX_SINCE_S = 30 * 86400.0
MAX_POINTS = 10_000


def add_room_routes(hub: Hub) -> Room:
    """Give `hub` the situation room: its API, live stream and page, fed by the hub's events."""
    room = Room(hub)
    hub.ingest.listeners.append(room.on_readings)
    hub.rules.listeners.append(room.on_incident)
    add_routes(hub.http, room, hub.config.api.tokens)
    return room


def add_routes(app: web.Application, room: Room, tokens: Any) -> None:
    """Add the room's routes, and the tokens they check, to `app`."""
    app[ROOM] = room
    install(app, tokens)
    app.cleanup_ctx.append(_ticker)
    app.on_shutdown.append(_end_streams)
    add = app.router
    add.add_get("/", _index)
    add.add_static("/static/", WEB, append_version=False)
    add.add_get("/api/me", _me)
    add.add_get("/api/map", _map)
    add.add_get("/api/sensors", _sensors)
    add.add_get("/api/sensors/{id}/readings", _readings)
    add.add_get("/api/cameras", _cameras)
    add.add_get("/api/incidents", _incidents)
    add.add_get("/api/incidents/{id}", _incident)
    add.add_post("/api/incidents/{id}/ack", _ack)
    add.add_post("/api/incidents/{id}/notes", _note)
    add.add_post("/api/incidents/{id}/archive", _archive)
    add.add_get("/api/incidents/{id}/timeline", _timeline)
    add.add_get("/api/export/incidents.csv", _export)
    add.add_get("/api/audit", _audit)
    add.add_get("/api/rules", _rules)
    add.add_get("/api/stream", _stream)
    add.add_get("/api/openapi.json", _openapi)


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    """Announce sensors' new values and states once a second, and a heartbeat now and then."""
    room = app[ROOM]

    async def tick() -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            await room.flush()
            if time.monotonic() - last_beat >= room.heartbeat_s:
                last_beat = time.monotonic()
                room.broadcaster.publish("heartbeat", {"ts": rfc3339(room.clock())})

    task = asyncio.create_task(supervised("room-ticker", tick), name="room-ticker")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    # Open streams would hold the server's shutdown for its whole timeout.
    app[ROOM].broadcaster.close()


async def _index(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


def _split(request: web.Request, name: str) -> set[str]:
    return {v.strip() for v in request.query.get(name, "").split(",") if v.strip()}


@authorized("viewer")
async def _me(_: web.Request, actor: Actor) -> web.StreamResponse:
    # What the token is: the page shows the controls of its role and the regions it sees.
    regions = None if actor.regions is None else sorted(actor.regions)
    return web.json_response({"name": actor.name, "role": actor.role, "regions": regions})


@authorized("viewer")
async def _map(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    inv = room.inventory
    regions = [
        {
            "type": "Feature",
            "properties": {"id": r.id, "name": r.name},
            "geometry": {"type": "MultiPolygon", "coordinates": r.polygons},
        }
        for _, r in sorted(inv.regions.items())
        if actor.sees(r.id)
    ]
    sites = [
        {"id": s.id, "name": s.name, "region": s.region, "site_type": s.site_type}
        | {"lon": s.lon, "lat": s.lat}
        for _, s in sorted(inv.sites.items())
        if actor.sees(s.region)
    ]
    actuators = [
        {"id": a.id, "kind": a.kind, "name": a.name, "site": a.site, "lon": a.lon, "lat": a.lat}
        for _, a in sorted(inv.actuators.items())
        if actor.sees(a.region)
    ]
    return web.json_response(
        {
            "tiles": room.hub.config.api.tiles,
            "regions": {"type": "FeatureCollection", "features": regions},
            "sites": sites,
            "actuators": actuators,
            "live": room.hub.config.live.enabled,  # whether cameras can be watched live
        }
    )


@authorized("viewer")
async def _sensors(request: web.Request, actor: Actor) -> web.StreamResponse:
    shown = [s for s in request.app[ROOM].sensors() if actor.sees(s["region"])]
    return web.json_response({"sensors": shown})


@authorized("viewer")
async def _readings(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    sensor = room.inventory.sensors.get(request.match_info["id"])
    if sensor is None or not actor.sees(sensor.region):  # another city's: as if not there
        return error(404, f"no sensor {request.match_info['id']!r} in the inventory")
    try:
        since = moment_field(request.query.get("since", "1h"), "since", room.clock(), MAX_SINCE_S)
        limit = int(request.query.get("limit", "2000"))
    except BodyError as exc:
        return error(exc.status, str(exc))
    except ValueError:
        return error(400, "'limit' must be a whole number")
    if not 1 <= limit <= MAX_POINTS:
        return error(400, f"'limit' must be between 1 and {MAX_POINTS}")
    # The id is an inventory id, quoted as a literal; the numbers are ints.
    literal = sensor.id.replace("\\", "\\\\").replace("'", "\\'")
    where = f"{quote_ident('sensor')} = '{literal}' AND time >= {since}"
    query = f'SELECT "value" FROM "reading" WHERE {where} ORDER BY time DESC LIMIT {limit}'  # noqa: S608
    try:
        rows = await room.hub.influx.query(query)
    except InfluxError as exc:
        return error(503, f"InfluxDB cannot answer now: {exc}")
    points = [{"ts": rfc3339(int(r["time"])), "value": r["value"]} for r in reversed(rows)]
    unit = CANONICAL.get(sensor.kind)
    return web.json_response({"sensor": sensor.id, "unit": unit, "readings": points})


@authorized("viewer")
async def _cameras(request: web.Request, actor: Actor) -> web.StreamResponse:
    shown = [c for c in request.app[ROOM].cameras() if actor.sees(c["region"])]
    return web.json_response({"cameras": shown})


@authorized("viewer")
async def _incidents(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    states, regions, severities = (_split(request, n) for n in ("state", "region", "severity"))
    if "open" in states:
        states = (states - {"open"}) | {"active", "acknowledged"}
    for name, given, known in (
        ("state", states, STATES),
        ("region", regions, tuple(room.inventory.regions)),
        ("severity", severities, SEVERITIES),
    ):
        wrong = sorted(given - set(known))
        if wrong:
            return error(400, f"unknown {name} {', '.join(wrong)}; known: {', '.join(known)}")
    everything = [i.to_dict() for i in room.hub.rules.engine.incidents() if actor.sees(i.region)]
    found = matching(everything, states, regions, severities)
    found.sort(key=lambda i: (i["opened_at"], i["id"]), reverse=True)  # newest first
    return web.json_response({"incidents": [public(i, room.evidence_dir) for i in found]})


@authorized("viewer")
async def _incident(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    incident = room.hub.rules.engine.incident(request.match_info["id"])
    if incident is None or not actor.sees(incident.region):  # another city's: as if not there
        return error(404, f"no incident {request.match_info['id']!r} (it may be archived)")
    return web.json_response({"incident": public(incident.to_dict(), room.evidence_dir)})


def _writable(room: Room, actor: Actor, incident_id: str) -> Incident | web.Response:
    """The incident an operator acts on, or the answer: 404 if there is none (archived), 403
    (audited) if it is in a region the token may not act in."""
    incident = room.hub.rules.engine.incident(incident_id)
    if incident is None:
        return error(404, f"no incident {incident_id!r} (it may be archived)")
    if not actor.sees(incident.region):
        thing = f"incident {incident_id}"
        return refuse(room.hub.audit, actor, thing, incident.region, incident_id=incident_id)
    return incident


@authorized("operator")
async def _ack(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    try:
        data = await read_object(request, ("note",), "acknowledging")
        note = text_field(data, "note", MAX_NOTE)
        incident_id = path_id(request, "id", "incident")
    except BodyError as exc:
        return error(exc.status, str(exc))
    incident = _writable(room, actor, incident_id)
    if isinstance(incident, web.Response):
        return incident
    if incident.state == "cleared":
        return error(409, f"incident {incident_id!r} has cleared; there is nothing to acknowledge")
    try:
        await room.hub.acknowledge(incident_id, actor.name, note)
    except IncidentNotFoundError:
        return error(404, f"no incident {incident_id!r} (it was archived just now)")
    except (StoreError, OSError) as exc:
        return error(
            503,
            f"incident {incident_id!r} is acknowledged but not saved yet ({exc}); the hub "
            "saves it as soon as the store takes writes again",
        )
    now = room.hub.rules.engine.incident(incident_id)
    return web.json_response({"incident": public((now or incident).to_dict(), room.evidence_dir)})


@authorized("operator")
async def _note(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    try:
        data = await read_object(request, ("text",), "a note")
        text = text_field(data, "text", MAX_NOTE)
        if not text.strip():
            raise BodyError(f"'text' must hold the note: 1 to {MAX_NOTE} characters, not blank")
        incident_id = path_id(request, "id", "incident")
    except BodyError as exc:
        return error(exc.status, str(exc))
    incident = _writable(room, actor, incident_id)
    if isinstance(incident, web.Response):
        return incident
    try:
        entry = await room.hub.add_note(incident_id, actor.name, text)
    except IncidentNotFoundError:
        return error(404, f"no incident {incident_id!r} (it may be archived)")
    except (StoreError, OSError) as exc:
        return error(503, f"the note on incident {incident_id!r} is not saved ({exc}); try again")
    note = {"incident_id": incident_id, "ts": rfc3339(entry.ts_ns), "by": actor.name, "text": text}
    return web.json_response({"note": note}, status=201)


@authorized("operator")
async def _archive(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    try:
        await read_object(request, (), "archiving")
        incident_id = path_id(request, "id", "incident")
    except BodyError as exc:
        return error(exc.status, str(exc))
    incident = _writable(room, actor, incident_id)
    if isinstance(incident, web.Response):
        return incident
    if incident.state != "cleared":
        return error(
            409, f"incident {incident_id!r} is {incident.state}; only a cleared one can be archived"
        )
    try:
        entry = await room.hub.archive(incident_id, actor.name)
    except IncidentNotFoundError:
        return error(404, f"no incident {incident_id!r} (it was archived just now)")
    except IncidentStateError as exc:
        return error(409, str(exc))
    except (StoreError, OSError) as exc:
        return error(
            503,
            f"incident {incident_id!r} is archived but not saved yet ({exc}); the hub "
            "saves it as soon as the store takes writes again",
        )
    archived = {
        **public(incident.to_dict(), room.evidence_dir),
        "state": "archived",
        "archived_at": rfc3339(entry.ts_ns),
        "archived_by": actor.name,
    }
    return web.json_response({"incident": archived})


@authorized("viewer")
async def _timeline(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    try:
        incident_id = path_id(request, "id", "incident")
    except BodyError as exc:
        return error(exc.status, str(exc))
    incident = room.hub.rules.engine.incident(incident_id)
    if incident is not None and not actor.sees(incident.region):  # another city's
        return error(404, f"no incident {incident_id!r} in the rules or the audit trail")
    record = incident.to_dict() if incident is not None else None
    # Audit times are the hub's clock, an opening's a reading's, which may be ahead by up to
    # ingest.max_future; an archived incident's trail is looked for in the whole audit space.
    since = 0
    if incident is not None:
        since = incident.opened_at - int(room.hub.config.ingest.max_future * 1e9)
    trail = await room.hub.audit.about(incident_id, since)
    region: object = incident.region if incident is not None else None
    archived = [e for e in trail if e.kind == "archive"]
    if incident is None and archived:  # by an operator: its times are in the trail
        region = archived[-1].fields.get("region")
    elif incident is None:  # by the clock: its times are in InfluxDB's history
        record = await _history_of(room, incident_id)
        region = record.get("region") if record is not None else None
    if (
        incident is None
        and actor.regions is not None
        and not actor.sees(region if isinstance(region, str) else None)
    ):
        return error(404, f"no incident {incident_id!r} in the rules or the audit trail")
    found = timeline(incident_id, record, trail)
    if found is None:
        return error(404, f"no incident {incident_id!r} in the rules or the audit trail")
    return web.json_response({"incident_id": incident_id, "timeline": found})


async def _history_of(room: Room, incident_id: str) -> dict[str, Any] | None:
    """An archived incident's record from InfluxDB's history (None: not there, or InfluxDB
    cannot answer, when the audit trail alone makes the timeline)."""
    try:
        rows = await room.hub.influx.query(export.history_of_query(incident_id))
    except InfluxError:
        return None
    record = export.from_history(rows).get(incident_id)
    return record if record is not None and "opened_at" in record else None


@authorized("viewer")
async def _export(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    now = room.clock()
    try:
        start = moment_field(request.query.get("from", "24h"), "from", now, export.MAX_RANGE_S)
        end = moment_field(request.query.get("to", "0s"), "to", now, export.MAX_RANGE_S)
    except BodyError as exc:
        return error(exc.status, str(exc))
    if not start < end:
        return error(400, "'from' must be before 'to'")
    if end - start > export.MAX_RANGE_S * 1e9:
        return error(400, "at most 92d between 'from' and 'to': export a quarter at a time")
    try:
        rows = await room.hub.influx.query(export.history_query(start))
    except InfluxError as exc:
        return error(503, f"InfluxDB cannot answer now, and it holds the history: {exc}")
    held = [i.to_dict() for i in room.hub.rules.engine.incidents()]
    chosen = [
        r
        for r in export.incidents_in(held, export.from_history(rows), start, end)
        if actor.sees(r.get("region"))
    ]
    # Audit times are the hub's clock, an opening's a reading's (see _timeline).
    ahead = int(room.hub.config.ingest.max_future * 1e9)
    trail = await room.hub.audit.about_incidents(start - ahead)
    body = export.write_csv(chosen, trail)
    name = export.file_name(start, end)
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private",
        },
    )


@authorized("viewer")
async def _audit(request: web.Request, actor: Actor) -> web.StreamResponse:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return error(400, "'limit' must be a whole number")
    if not 1 <= limit <= 10_000:
        return error(400, "'limit' must be between 1 and 10000")
    room = request.app[ROOM]
    where = None if actor.regions is None else functools.partial(_audited_for, room, actor)
    entries = await room.hub.audit.entries(limit, _split(request, "kind"), where)
    return web.json_response(
        {"entries": [{**e.to_dict(), "ts": rfc3339(e.ts_ns)} for e in entries]}
    )


def _audited_for(room: Room, actor: Actor, entry: dict[str, Any]) -> bool:
    """Whether a region token sees an audit entry: one of its own acts, or one whose region,
    incident or actuator is in its regions. Entries of no region are the province's."""
    if entry.get("actor") == actor.name:
        return True
    regions: set[str | None] = set()
    if entry.get("region"):
        regions.add(str(entry["region"]))
    if entry.get("incident_id"):
        incident = room.hub.rules.engine.incident(str(entry["incident_id"]))
        if incident is not None:
            regions.add(incident.region)
    if entry.get("actuator"):
        actuator = room.inventory.actuators.get(str(entry["actuator"]))
        if actuator is not None:
            regions.add(actuator.region)
    return bool(regions) and actor.sees_any(regions)


@authorized("viewer")
async def _rules(request: web.Request, _actor: Actor) -> web.StreamResponse:
    service = request.app[ROOM].hub.rules
    rules = [
        {"id": r.id, "title": r.title, "severity": r.severity, "source": r.source}
        for r in service.engine.rules.rules
    ]
    problems = list(service.reload_problems)
    return web.json_response({"rules": rules, "valid": not problems, "errors": problems})


@authorized("viewer")
async def _stream(request: web.Request, actor: Actor) -> web.StreamResponse:
    room = request.app[ROOM]
    hello = orjson.dumps({"ts": rfc3339(room.clock())})
    return await stream.serve(request, room.broadcaster, hello, actor.regions)


async def _openapi(_: web.Request) -> web.StreamResponse:
    # Public: it describes the API and holds no data from the province.
    return web.json_response(openapi.document())
