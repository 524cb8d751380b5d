"""HTTP API of actuators: list them, command one (operator), confirm a held command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.actuators.jobs import CommandError
from hub.api.auth import Actor, authorized, error, install, refuse
from hub.api.body import (
    BodyError,
    duration_field,
    flag_field,
    path_id,
    read_object,
    text_field,
    word_field,
)
from hub.rules.actions import MAX_SIGN_TEXT

if TYPE_CHECKING:
    from hub.actuators.service import ActuatorService

SERVICE: web.AppKey[ActuatorService] = web.AppKey("actuators", object)  # type: ignore[arg-type]
_COMMAND_KEYS = {"command", "reason", "override", "expires", "incident", "text"}
_CONFIRM_KEYS = {"approve"}
# A barrier command delivered more than a day after an operator asked for it is never what
# they meant: the flood it was for is over, or has become another one.
MAX_EXPIRES_S = 86400.0
_MISSING = '\'command\' is missing: say what to do, e.g. {"command": "close"}'
_NO_INCIDENT = "'incident' is empty: leave it out, or name the incident the command is for"
_NO_REASON = (
    "an override needs a 'reason': say why the interlock or the rate limit must be passed "
    '(e.g. {"command": "open", "override": true, "reason": "crew trapped, opening by hand"})'
)


def add_routes(app: web.Application, service: ActuatorService) -> None:
    """Add the routes, and the tokens they check, to `app`."""
    app[SERVICE] = service
    install(app, service.tokens)
    app.router.add_get("/api/actuators", _list)
    app.router.add_post("/api/actuators/{id}/command", _command)
    app.router.add_post("/api/actuators/{id}/commands/{command_id}/confirm", _confirm)


def _job(job: Any) -> dict[str, Any]:
    return dict(job.to_dict())


@authorized("viewer")
async def _list(request: web.Request, actor: Actor) -> web.StreamResponse:
    service = request.app[SERVICE]
    jobs = service.commands_list()
    out = []
    for actuator in sorted(service.inventory.actuators.values(), key=lambda a: a.id):
        if not actor.sees(actuator.region):
            continue
        mine = [j for j in jobs if j.actuator == actuator.id]
        state = service.states.get(actuator.id, {})
        out.append(
            {
                "id": actuator.id,
                "kind": actuator.kind,
                "name": actuator.name,
                "region": actuator.region,
                "site": actuator.site,
                "commands": list(service.config.commands.get(actuator.kind, ())),
                "state": state.get("state"),
                "state_ts": state.get("ts"),
                "pending": [_job(j) for j in mine if not j.final],
                "last": _job(mine[-1]) if mine else None,
            }
        )
    return web.json_response({"actuators": out})


def _outside(service: ActuatorService, actor: Actor, actuator_id: str) -> web.Response | None:
    """The audited 403 when the actuator is in none of the actor's regions; else None (an
    unknown actuator is the service's 404)."""
    actuator = service.inventory.actuators.get(actuator_id)
    if actuator is None or actor.sees(actuator.region):
        return None
    return refuse(service.report.audit, actor, actuator_id, actuator.region, actuator=actuator_id)


@authorized("operator")
async def _command(request: web.Request, actor: Actor) -> web.StreamResponse:
    service = request.app[SERVICE]
    try:
        data = await read_object(request, _COMMAND_KEYS, "a command")
        command = word_field(data, "command", _MISSING)
        reason = text_field(data, "reason")
        shown = text_field(data, "text", MAX_SIGN_TEXT) or None
        override = flag_field(data, "override", default=False)
        expires = duration_field(data, "expires", maximum=MAX_EXPIRES_S)
        incident = word_field(data, "incident", _NO_INCIDENT) if "incident" in data else None
        actuator = path_id(request, "id", "actuator")
        if override and not reason.strip():
            raise BodyError(_NO_REASON)
    except BodyError as exc:
        return error(exc.status, str(exc))
    if (refused := _outside(service, actor, actuator)) is not None:
        return refused
    if incident is not None:
        found = service.rules.engine.incident(incident)
        if found is None or not actor.sees(found.region):
            return error(404, f"no incident {incident!r}: name one the hub holds, or leave it out")
    try:
        job = await service.submit(
            actuator,
            command,
            actor=actor.name,
            reason=reason or f"operator {actor.name}",
            override=override,
            expires_s=expires,
            incident_id=incident,
            text=shown,
        )
    except CommandError as exc:
        return error(exc.status, str(exc))
    if job.state == "rejected":
        return web.json_response(
            {"error": job.detail, "status": 409, "command": _job(job)}, status=409
        )
    return web.json_response({"command": _job(job)}, status=202)


@authorized("operator")
async def _confirm(request: web.Request, actor: Actor) -> web.StreamResponse:
    service = request.app[SERVICE]
    try:
        data = await read_object(request, _CONFIRM_KEYS, "confirming")
        approve = flag_field(data, "approve", default=True)
        actuator = path_id(request, "id", "actuator")
        command_id = path_id(request, "command_id", "command")
    except BodyError as exc:
        return error(exc.status, str(exc))
    if (refused := _outside(service, actor, actuator)) is not None:
        return refused
    try:
        job = await service.confirm(actuator, command_id, actor.name, approve=approve)
    except CommandError as exc:
        return error(exc.status, str(exc))
    return web.json_response({"command": _job(job)})
