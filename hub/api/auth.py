"""Bearer tokens and roles for the HTTP API: `viewer` < `operator` < `admin`.

The config keeps only each token's SHA-256, so a leaked config file does not leak tokens.
`require(request, role)` gives the token's name, which is the actor in the audit trail.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
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


TOKENS: web.AppKey[tuple[Token, ...]] = web.AppKey("api_tokens", tuple)


def install(app: web.Application, tokens: Sequence[Token]) -> None:
    """Make the configured tokens known to the handlers of `app` (before it starts)."""
    app[TOKENS] = tuple(tokens)


def error(status: int, message: str) -> web.Response:
    """A JSON error with a message a person can act on."""
    return web.json_response({"error": message, "status": status}, status=status)


class AuthError(Exception):
    """The request has no valid token, or its token's role is too low."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def require(request: web.Request, role: str) -> str:
    """The name of the request's token if its role is at least `role`; AuthError otherwise."""
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
    return found.name


Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
Plain = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authorized(role: str) -> Callable[[Handler], Plain]:
    """Decorate a handler `(request, actor)`: it runs only for a token of `role` or above."""

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
