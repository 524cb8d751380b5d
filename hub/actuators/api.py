"""HTTP API of actuators: list them, command one (operator), confirm a held command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.actuators.jobs import CommandError
from hub.api.auth import authorized, error, install
from hub.durations import DurationError, parse_duration

if TYPE_CHECKING:
    from hub.actuators.service import ActuatorService

SERVICE: web.AppKey[ActuatorService] = web.AppKey("actuators", object)  # type: ignore[arg-type]
_COMMAND_KEYS = {"command", "reason", "override", "expires"}


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
async def _list(request: web.Request, _actor: str) -> web.StreamResponse:
    service = request.app[SERVICE]
    jobs = service.commands_list()
    out = []
    for actuator in sorted(service.inventory.actuators.values(), key=lambda a: a.id):
        mine = [j for j in jobs if j.actuator == actuator.id]
        state = service.states.get(actuator.id, {})
        out.append(
            {
                "id": actuator.id,
                "kind": actuator.kind,
                "name": actuator.name,
                "region": actuator.region,
                "site": actuator.site,
                "state": state.get("state"),
                "state_ts": state.get("ts"),
                "pending": [_job(j) for j in mine if not j.final],
                "last": _job(mine[-1]) if mine else None,
            }
        )
    return web.json_response({"actuators": out})


async def _body(request: web.Request) -> dict[str, Any] | str:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        return f"the body is not JSON: {exc}"
    if not isinstance(data, dict):
        return "the body must be a JSON object"
    return data


@authorized("operator")
async def _command(request: web.Request, actor: str) -> web.StreamResponse:
    service = request.app[SERVICE]
    data = await _body(request)
    if isinstance(data, str):
        return error(400, data)
    unknown = sorted(set(data) - _COMMAND_KEYS)
    if unknown:
        return error(400, f"unknown keys {unknown}; a command takes {sorted(_COMMAND_KEYS)}")
    command, reason = data.get("command"), data.get("reason", "")
    if not isinstance(command, str) or not command.strip():
        return error(400, '\'command\' is missing: say what to do, e.g. {"command": "close"}')
    if not isinstance(reason, str):
        return error(400, "'reason' must be text")
    override = data.get("override", False)
    if not isinstance(override, bool):
        return error(400, "'override' must be true or false")
    expires = None
    if "expires" in data:
        try:
            expires = parse_duration(data["expires"])
        except (DurationError, TypeError, ValueError) as exc:
            return error(400, f"'expires': {exc}")
    try:
        job = await service.submit(
            request.match_info["id"],
            command.strip(),
            actor=actor,
            reason=reason or f"operator {actor}",
            override=override,
            expires_s=expires,
        )
    except CommandError as exc:
        return error(exc.status, str(exc))
    if job.state == "rejected":
        return web.json_response(
            {"error": job.detail, "status": 409, "command": _job(job)}, status=409
        )
    return web.json_response({"command": _job(job)}, status=202)


@authorized("operator")
async def _confirm(request: web.Request, actor: str) -> web.StreamResponse:
    service = request.app[SERVICE]
    data = await _body(request)
    if isinstance(data, str):
        return error(400, data)
    approve = data.get("approve", True)
    if not isinstance(approve, bool):
        return error(400, "'approve' must be true or false")
    try:
        job = await service.confirm(
            request.match_info["id"], request.match_info["command_id"], actor, approve=approve
        )
    except CommandError as exc:
        return error(exc.status, str(exc))
    return web.json_response({"command": _job(job)})
