"""Which host names the dashboard answers to, and which origins may change things.

DNS rebinding: a page on ``http://rebind.evil.example:8000`` whose name then
resolves to 127.0.0.1 is, to the browser, same-origin with a dashboard on
loopback, so its JSON POSTs need no preflight and reach the API. What gives it
away is the Host header, which still names the attacker's domain. So every
request's Host must be a name the dashboard was told it has: loopback names,
the address it binds, and ``--allowed-host`` names (``QUEUEWATCH_ALLOWED_HOSTS``);
others get 400. Every write must also come from this origin: an ``Origin``
header that names another host (or ``null``) gets 403.

On a wildcard bind (0.0.0.0, ::), or under another WSGI server, the names are unknowable: with authentication
configured, any Host is answered unless ``--allowed-host`` names some (logins
and tokens are not sent to a rebound origin); an open dashboard (no users)
answers loopback names and ``--allowed-host`` names only.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def split_host(value: str) -> str:
    """The host name of a ``Host`` header or URL netloc, without port, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    host, sep, port = value.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else value


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The names a dashboard answers to; ``None`` names: any."""

    def __init__(self, bind: str | None, configured: Iterable[str], authenticated: bool) -> None:
        names = [n.strip().lower() for n in configured if n.strip()]
        bind_host = split_host(bind.rpartition(":")[0] if bind and ":" in bind else (bind or ""))
        if bind and bind.startswith("["):
            bind_host = split_host(bind.rpartition(":")[0])
        # No bind (an app made by create_app() under another WSGI server) is as unknowable as a wildcard one.
        self.any = "*" in names or (not names and authenticated and (bind is None or bind_host in WILDCARD_BINDS))
        self.names = tuple(names + ([bind_host] if bind_host and bind_host not in WILDCARD_BINDS else []))

    def allows(self, host: str) -> bool:
        if self.any or is_loopback_name(host):
            return True
        return any(host == name or (("*" in name or "?" in name) and fnmatchcase(host, name)) for name in self.names)

    def describe(self) -> str:
        return "any name" if self.any else ", ".join(["localhost", "127.0.0.1", "::1", *self.names])


def check_request() -> None:
    policy: HostPolicy = current_app.extensions["queuewatch.hosts"]
    host = split_host(request.host or "")
    if not policy.allows(host):
        abort(400, description=f"this dashboard does not answer to the host name {host[:100]!r} (it answers to "
                               f"{policy.describe()}); start it with --allowed-host {host[:100]} if that is its name")  # fmt: skip
    if request.method in WRITES:
        origin = request.headers.get("Origin")
        if origin is None:
            return  # not a browser (curl, automation): it cannot carry someone else's session either
        netloc = urlsplit(origin).netloc if origin != "null" else ""
        origin_host = split_host(netloc)
        # Same origin, or (behind a proxy that rewrites Host) one of the dashboard's own names.
        if not netloc or (origin_host != host and (policy.any or not policy.allows(origin_host))):
            abort(403, description=f"a change was sent from another origin ({origin[:100]}): refused")


def init_app(app: Flask, authenticated: bool) -> None:
    from queuewatch import config

    policy = HostPolicy(app.config.get("BIND"), config.split_specs(app.config.get("ALLOWED_HOSTS")), authenticated)
    if policy.any and not config.split_specs(app.config.get("ALLOWED_HOSTS")):
        log.info("serving on %s with authentication: answering any Host name (--allowed-host NAME narrows it)",
                 app.config.get("BIND"))  # fmt: skip
    app.extensions["queuewatch.hosts"] = policy
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)  # before who-are-you: a foreign name is answered 400
