"""Bearer tokens and roles for the HTTP API: `viewer` < `operator` < `admin`.

The config keeps only each token's SHA-256, so a leaked config file does not leak tokens.
`require(request, role)` gives the `Actor`: the token's name, which is the actor in the audit
trail, and the regions it may see and act in (a city's desk; None for the province).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

ROLES = ("viewer", "operator", "admin")


class Token(Protocol):
    """A configured API client (hub.config.ApiToken)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def regions(self) -> Sequence[str] | None: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a request acts for: the token's name, its regions (None: every region) and its
    role (what the page offers it)."""

    name: str
    regions: frozenset[str] | None = None
    role: str = "viewer"

    def sees(self, region: str | None) -> bool:
        """Whether the token may see (and, with its role, act on) what is in `region`; what
        belongs to no region is the province's, for province tokens only."""
        return self.regions is None or region in self.regions

    def sees_any(self, regions: Collection[str | None]) -> bool:
        """Whether any of `regions` is the token's (an entry that touches several)."""
        return self.regions is None or any(r in self.regions for r in regions)

    def refusal(self, thing: str, region: str | None) -> str:
        """The sentence of a 403 for acting on `thing`, which is in `region`."""
        mine = ", ".join(sorted(self.regions or ()))
        where = f"is in {region}" if region else "belongs to no region"
        return f"token {self.name} may act in {mine} only; {thing} {where}"


TOKENS: web.AppKey[tuple[Token, ...]] = web.AppKey("api_tokens", tuple)


def install(app: web.Application, tokens: Sequence[Token]) -> None:
    """Make the configured tokens known to the handlers of `app` (before it starts)."""
    app[TOKENS] = tuple(tokens)


def error(status: int, message: str) -> web.Response:
    """A JSON error with a message a person can act on."""
    return web.json_response({"error": message, "status": status}, status=status)


class Recorder(Protocol):
    """The audit trail (hub.audit.AuditLog)."""

    def record(
        self, kind: str, actor: str, detail: str, **fields: str | int | float | bool | None
    ) -> object: ...


def refuse(
    audit: Recorder,
    actor: Actor,
    thing: str,
    region: str | None,
    **fields: str | int | float | bool | None,
) -> web.Response:
    """A 403 for acting on `thing` outside the actor's regions, audited as `refused`."""
    message = actor.refusal(thing, region)
    audit.record("refused", actor.name, message, region=region, **fields)
    return error(403, message)


class AuthError(Exception):
    """The request has no valid token, or its token's role is too low."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def require(request: web.Request, role: str) -> Actor:
    """The request's actor if its token's role is at least `role`; AuthError otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError(401, "send a token: Authorization: Bearer <token>")
    digest = hashlib.sha256(secret.strip().encode()).hexdigest()
    found = None
    for token in request.app.get(TOKENS, ()):
        # Compare every token, in constant time, so timing says nothing about digests.
        if hmac.compare_digest(digest, token.sha256):
            found = token
    if found is None:
        raise AuthError(401, "unknown token")
    if ROLES.index(found.role) < ROLES.index(role):
        raise AuthError(403, f"this needs the {role} role; token {found.name!r} is {found.role}")
    regions = None if found.regions is None else frozenset(found.regions)
    return Actor(found.name, regions, found.role)


Handler = Callable[[web.Request, Actor], Awaitable[web.StreamResponse]]
Plain = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authorized(role: str) -> Callable[[Handler], Plain]:
    """Decorate a handler `(request, actor)`: it runs only for a token of `role` or above;
    `actor` is the token's `Actor`, whose regions the handler filters and checks by."""

    def wrap(handler: Handler) -> Plain:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            try:
                actor = require(request, role)
            except AuthError as exc:
                return error(exc.status, str(exc))
            return await handler(request, actor)

        return checked

    return wrap
