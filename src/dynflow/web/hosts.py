"""Which ``Host`` the console answers to: a guard against DNS rebinding.

A console without authentication trusts whoever can reach it. A web page on a
domain that its owner points at 127.0.0.1 could otherwise read the console from a
victim's browser and post its forms (the page and the console are then "the same
origin"). So without authentication only the loopback names are served, unless the
application names the hosts it is reached by (``create_app(allowed_hosts=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: the names a console without authentication answers to by default
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def host_name(host: str) -> str:
    """``host`` without its port, lower case: ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed(hosts: Iterable[str]) -> frozenset[str]:
    """The names of ``hosts`` (ports ignored); ``*`` allows any."""
    return frozenset(host_name(h) for h in hosts)


class HostCheck:
    """Refuse (400) an HTTP request whose ``Host`` is not one of ``hosts``."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.hosts:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
        if host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            f"host {header!r} is not served by this console: reach it as "
            f"{' or '.join(sorted(self.hosts))}, or start it with allowed_hosts "
            "(dynflow console --allowed-host NAME) naming the host",
            status_code=400,
        )
        await response(scope, receive, send)
