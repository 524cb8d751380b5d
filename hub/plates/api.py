"""The watch-list's HTTP API (operator): list, add (or change) and remove wanted plates.
Province tokens only may change it, since it applies to every plate camera; each change is
durable and audited before the answer."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.api.auth import Actor, authorized, error, install, refuse
from hub.api.body import BodyError, path_id, read_object, text_field
from hub.durations import DurationError, parse_duration
from hub.plates.watchlist import Watchlist, WatchlistError
from hub.store import StoreError

if TYPE_CHECKING:
    from hub.plates.watchlist import Entry

LIST: web.AppKey[Watchlist] = web.AppKey("plates", Watchlist)
MAX_UNTIL_S = 3650 * 86400.0
_ADD_KEYS = ("plate", "reason", "until")


def add_routes(app: web.Application, watchlist: Watchlist) -> None:
    """`GET`/`POST /api/plates/watchlist`, `DELETE /api/plates/watchlist/{plate}`."""
    app[LIST] = watchlist
    install(app, watchlist.tokens)
    app.router.add_get("/api/plates/watchlist", _list)
    app.router.add_post("/api/plates/watchlist", _add)
    app.router.add_delete("/api/plates/watchlist/{plate}", _remove)


def _json(entry: Entry) -> dict[str, Any]:
    return entry.to_dict()


@authorized("operator")
async def _list(request: web.Request, _: Actor) -> web.StreamResponse:
    return web.json_response({"entries": [_json(e) for e in request.app[LIST].current()]})


def _until(data: dict[str, Any], now: float) -> float | None:
    """`until`: an RFC 3339 time with its zone, or a duration from now (`7d`); None if absent."""
    value = data.get("until")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BodyError("'until' must be an RFC 3339 time such as 2026-08-01T00:00:00+09:00 or "
                        "a duration such as 7d")  # fmt: skip
    try:
        return now + parse_duration(value, maximum=MAX_UNTIL_S)
    except DurationError:
        pass
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BodyError(f"'until': cannot read {value[:40]!r}; write an RFC 3339 time such as "
                        "2026-08-01T00:00:00+09:00 or a duration such as 7d") from None  # fmt: skip
    if stamp.tzinfo is None:
        raise BodyError(f"'until': {value[:40]!r} has no time zone; add Z or +09:00")
    return stamp.timestamp()


def _province_only(request: web.Request, actor: Actor, what: str) -> web.Response | None:
    if actor.regions is None:
        return None
    return refuse(request.app[LIST].audit, actor, what, None)


@authorized("operator")
async def _add(request: web.Request, actor: Actor) -> web.StreamResponse:
    watchlist = request.app[LIST]
    try:
        data = await read_object(request, _ADD_KEYS, "a watch-list entry")
        plate = data.get("plate")
        if not isinstance(plate, str) or not plate.strip():
            raise BodyError('\'plate\' is missing: e.g. {"plate": "123가4567", "reason": "..."}')
        reason = text_field(data, "reason")
        if not reason.strip():
            raise BodyError("'reason' is missing: say why the vehicle is wanted (1 to 500 "
                            "characters), for the audit trail")  # fmt: skip
        until = _until(data, watchlist.clock())
    except BodyError as exc:
        return error(exc.status, str(exc))
    refused = _province_only(request, actor, "the plate watch-list")
    if refused is not None:
        return refused
    try:
        entry, new = await watchlist.add(plate, reason.strip(), until, actor.name)
    except WatchlistError as exc:
        return error(400, str(exc))
    except (StoreError, OSError) as exc:
        return error(503, f"the watch-list is not saved ({exc}); try again")
    return web.json_response({"entry": _json(entry)}, status=201 if new else 200)


@authorized("operator")
async def _remove(request: web.Request, actor: Actor) -> web.StreamResponse:
    watchlist = request.app[LIST]
    try:
        data = await read_object(request, ("reason",), "removing a plate")
        reason = text_field(data, "reason").strip()
        text = path_id(request, "plate", "plate")
    except BodyError as exc:
        return error(exc.status, str(exc))
    refused = _province_only(request, actor, "the plate watch-list")
    if refused is not None:
        return refused
    try:
        entry = await watchlist.remove(text, reason, actor.name)
    except WatchlistError as exc:
        return error(400, str(exc))
    except (StoreError, OSError) as exc:
        return error(503, f"the watch-list is not saved ({exc}); try again")
    if entry is None:
        return error(404, f"plate {text!r} is not on the watch-list")
    return web.json_response({"removed": _json(entry)})
