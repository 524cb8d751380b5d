"""Signed, short-lived tickets for the relay, and which relay serves which camera.

The browser never holds a camera's URL or the hub's tokens at the relay: the hub, having
checked the viewer's token and region and audited the view, signs `(purpose, camera,
expiry)` with a secret it shares with the relays, and the relay checks the signature. A
ticket is good for one camera, one purpose (`view`, `warm`, `status`) and until it expires.

With several relays, each camera belongs to the relay that scores highest for it
(rendezvous hashing): every hub and page computes the same answer from the list alone, and
adding or removing a relay moves only the cameras that relay gains or loses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

PURPOSES = ("view", "warm", "status")


class TicketError(ValueError):
    """A ticket that is malformed, forged, for another camera or purpose, or expired."""


def _signature(secret: str, purpose: str, camera: str, expires: int) -> str:
    message = f"{purpose}\n{camera}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def sign(secret: str, purpose: str, camera: str, expires: int) -> str:
    """A ticket for `purpose` on `camera`, valid until `expires` (Unix seconds)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown ticket purpose {purpose!r}")
    return f"{expires}.{_signature(secret, purpose, camera, expires)}"


def check(secret: str, ticket: str, purpose: str, camera: str, now: float) -> None:
    """Raise TicketError unless `ticket` allows `purpose` on `camera` at `now`."""
    expiry, _, signature = ticket.partition(".")
    if not expiry.isdigit() or not signature:
        raise TicketError("a ticket is <expiry>.<signature>; ask the hub for one")
    if not hmac.compare_digest(signature, _signature(secret, purpose, camera, int(expiry))):
        raise TicketError(f"the ticket is not for {purpose} on camera {camera}")
    if int(expiry) < now:
        raise TicketError("the ticket has expired; ask the hub for a new one")


def relay_for(camera: str, relays: Sequence[str]) -> str:
    """The relay of `camera` among `relays` (rendezvous hashing); ValueError if there is none."""
    if not relays:
        raise ValueError("no relay to choose from")

    def score(relay: str) -> bytes:
        return hashlib.sha256(f"{relay}\n{camera}".encode()).digest()[:8]

    return max(relays, key=score)
