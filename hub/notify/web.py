"""CAP alerts as the hub keeps them: each note's alert, and the HTTP routes that serve them.

`GET /cap/feed.atom` lists the latest alert of every incident not yet archived (a cleared
incident's Cancel stays listed until it is archived, so that readers see it end);
`GET /cap/{incident_id}.xml` is that alert. Both are public unless `api.public` leaves
`cap` out, when they need a viewer's token; a token of some regions then sees only their
incidents' alerts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.api.auth import Actor
from hub.notify import cap as capxml
from hub.notify.config import CapChannel, NotifyConfig
from hub.notify.outbox import GIVEN_UP, Note, Outbox

if TYPE_CHECKING:
    from hub.config.model import ApiConfig


# The actor of a request's token, or None when it has no configured token.
CapAuthorize = Callable[[web.Request], Actor | None]


def cap_access(api: ApiConfig) -> CapAuthorize | None:
    """None while the CAP routes are public; else a check for any configured token."""
    if "cap" in api.public:
        return None
    tokens = list(api.tokens)  # every role may read, viewer and up

    def authorize(request: web.Request) -> Actor | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        found = None
        for t in tokens:  # every one compared, in constant time
            if hmac.compare_digest(digest, t.sha256):
                found = t
        if found is None:
            return None
        return Actor(found.name, None if found.regions is None else frozenset(found.regions))

    return authorize


class CapRoutes:
    """Makes the CAP form of notes and serves the current alerts."""

    def __init__(
        self,
        outbox: Outbox,
        config: NotifyConfig,
        authorize: CapAuthorize | None,
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.authorize = authorize

    def cap_fields(
        self, note: Note, cfg: CapChannel, old: Note | None, area: capxml.CapArea
    ) -> dict[str, Any]:
        """The note's CAP message: identifier, sent, kind, and its XML."""
        earlier = [
            n
            for n in self.outbox.of_incident(note.incident_id)
            if n.channel == note.channel and n.cap and n.key != note.key
        ]
        if old is not None and old.cap:  # a pending note rewritten: the same message, new text
            ident, sent = str(old.cap["identifier"]), str(old.cap["sent"])
        else:
            ident = f"{capxml.safe_token(cfg.sender)}-{note.incident_id}-{len(earlier) + 1}"
            sent = capxml.cap_time(note.created)
        kind = capxml.msg_type(note.event, len(earlier))
        refs = [
            capxml.CapRef(
                capxml.safe_token(cfg.sender), str(n.cap["identifier"]), str(n.cap["sent"])
            )
            for n in earlier
            if n.cap
        ]
        xml = capxml.build_alert(
            identifier=ident,
            sender=cfg.sender,
            sent=sent,
            kind=kind,
            references=refs,
            incident=note.incident,
            text=note.text,
            category=cfg.category,
            language=cfg.language,
            sender_name=cfg.sender_name,
            web=cfg.web,
            area=area,
        )
        return {"identifier": ident, "sent": sent, "kind": kind, "xml": xml.decode()}

    def current(self) -> dict[str, Note]:
        """The latest CAP note of each incident not archived, by incident id."""
        latest: dict[str, Note] = {}
        for note in self.outbox.notes.values():
            if note.cap is None or note.status == GIVEN_UP:
                continue
            if note.incident_id in self.outbox.archived:
                continue
            seen = latest.get(note.incident_id)
            if seen is None or note.seq > seen.seq:
                latest[note.incident_id] = note
        return latest

    def add_to(self, app: web.Application) -> None:
        """Add the two routes."""
        app.router.add_get("/cap/feed.atom", self._feed)
        app.router.add_get("/cap/{incident_id}.xml", self._alert)

    def _check(self, request: web.Request) -> Actor:
        """The request's actor (the province's while the feed is public)."""
        if self.authorize is None:
            return Actor("public")
        actor = self.authorize(request)
        if actor is None:
            raise web.HTTPUnauthorized(reason="a viewer token is needed for the CAP feed")
        return actor

    async def _feed(self, request: web.Request) -> web.Response:
        actor = self._check(request)
        entries = [
            capxml.FeedEntry(
                incident_id=n.incident_id,
                identifier=str(n.cap["identifier"]),
                sent=str(n.cap["sent"]),
                kind=str(n.cap["kind"]),
                headline=str(n.incident.get("title") or n.incident.get("rule") or ""),
                summary=n.text,
            )
            for n in self.current().values()
            if n.cap and actor.sees(n.incident.get("region"))
        ]
        base = str(request.url.origin())
        body = capxml.build_feed(entries, base_url=base, title="hub: CAP alerts", author="hub")
        return web.Response(body=body, content_type=capxml.ATOM_MIME, charset="utf-8")

    async def _alert(self, request: web.Request) -> web.Response:
        actor = self._check(request)
        note = self.current().get(request.match_info["incident_id"])
        if note is None or note.cap is None or not actor.sees(note.incident.get("region")):
            raise web.HTTPNotFound(reason="no current CAP alert for this incident")
        body = str(note.cap["xml"]).encode()
        return web.Response(body=body, content_type=capxml.CAP_MIME, charset="utf-8")
