"""Whether the API can listen where `api.listen` says, asked before the hub starts anything.

A port in use would otherwise surface as a traceback from the HTTP server's start, after the
hub has opened its store and connected to the broker.
"""

from __future__ import annotations

import errno
import socket

_ADVICE = {
    errno.EADDRINUSE: "the address is in use; set api.listen or stop what uses it",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's; set api.listen",
    errno.EACCES: "a port below 1024 needs privileges; set api.listen to a higher port",
}


class ListenError(Exception):
    """The API cannot listen on its address; the message says where and why, in one line."""


def listen_error(host: str, port: int, exc: OSError) -> ListenError:
    """The one-line error for `exc`, raised binding the API to host:port."""
    shown = f"[{host}]" if ":" in host else host
    why = _ADVICE.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    if isinstance(exc, socket.gaierror):
        why = f"cannot resolve {host!r} ({exc.strerror}); set api.listen"
    return ListenError(f"the API cannot listen on {shown}:{port}: {why}")


def check_listen(host: str, port: int) -> None:
    """Bind (and close) a socket the way the HTTP server will; ListenError if that fails.

    Like asyncio's servers: SO_REUSEADDR (so a port left in TIME_WAIT is free) and, for
    IPv6, IPV6_V6ONLY; every address the host resolves to is tried. Port 0 always passes.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        raise listen_error(host, port, exc) from None
