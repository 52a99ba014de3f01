"""Who may do what: users, API tokens, a trusted proxy header, and one policy.

Credentials come from a users file (``--users``, TOML or JSON lines), from
``QUEUEWATCH_USER_<NAME>=role:hash`` variables, from a tokens file
(``--tokens``) or ``QUEUEWATCH_TOKEN_<NAME>=role:sha256:hex`` variables, and,
only when configured, from a header set by an authenticating reverse proxy.

One ``before_request`` check (``enforce``) covers every endpoint through the
``POLICY`` table; an endpoint the table does not name needs admin, so a route
added later is never open by accident. With no credentials configured the
dashboard is open (everyone is admin) and may only listen on loopback.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash, generate_password_hash

from . import sessions
from .logins import LoginLimiter, client_address

ROLES = ("viewer", "operator", "admin")
PUBLIC = "public"
READ = frozenset({"GET", "HEAD", "OPTIONS"})
ANY = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
WRITE = ANY - READ

# First match wins: (endpoint pattern, methods, role). Unmatched → admin.
POLICY: tuple[tuple[str, frozenset[str], str], ...] = (
    ("static", ANY, PUBLIC),
    ("auth.login", ANY, PUBLIC),
    ("auth.logout", ANY, PUBLIC),
    ("health.healthz", ANY, PUBLIC),
    ("health.readyz", READ, PUBLIC),
    ("metrics.metrics", READ, "viewer"),
    ("audit.*", ANY, "admin"),
    ("openapi.*", READ, "viewer"),
    ("pages.*", READ, "viewer"),
    ("pages.*", WRITE, "operator"),
    ("api.*", READ, "viewer"),
    ("api.*", WRITE, "operator"),
    # Where notifications go, and a test that posts to any URL: admin.
    ("alerts.*webhooks*", ANY, "admin"),
    ("alerts_api.*webhooks*", ANY, "admin"),
    ("alerts_api.post_test", ANY, "admin"),
    ("alerts.*", READ, "viewer"),
    ("alerts.*", WRITE, "operator"),
    ("alerts_api.*", READ, "viewer"),
    ("alerts_api.*", WRITE, "operator"),
    ("operations.*", READ, "viewer"),
    ("operations.*", WRITE, "operator"),
    ("operations_api.*", READ, "viewer"),
    ("operations_api.*", WRITE, "operator"),
    ("triage.*", READ, "viewer"),
    ("triage_api.*", READ, "viewer"),
)

# A real hash to check against when the user is unknown, so timing does not say who exists.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def required_role(endpoint: str | None, method: str, path: str) -> str:
    """The role a request needs: ``public``, ``viewer``, ``operator`` or ``admin``."""
    if endpoint is None:
        return "viewer"  # no such route (404/405): do not tell strangers which exist
    for pattern, methods, role in POLICY:
        if method in methods and fnmatchcase(endpoint, pattern):
            return role
    return "admin"


def allows(role: str | None, needed: str) -> bool:
    if needed == PUBLIC:
        return True
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "session" | "token" | "proxy" | "open"


@dataclass
class Credentials:
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (role, password hash)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha256 hex → (name, role)
    expires: dict[str, float] = field(default_factory=dict)  # token name → unix time it stops working

    @property
    def any(self) -> bool:
        return bool(self.users or self.tokens)


def hash_token(token: str) -> str:
    """How a token is stored: tokens are long and random, so one SHA-256 is enough."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _role(value: object, where: str) -> str:
    if value not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, not {value!r}")
    return str(value)


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a TOML file (``[[user]]``/``[[token]]`` tables or ``[users.NAME]``) or of JSON lines."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml" or text.lstrip()[:1] == "[":
        import tomllib

        data = tomllib.loads(text)
        records: list[dict[str, Any]] = []
        for key in ("user", "users", "token", "tokens"):
            value = data.get(key, [])
            if isinstance(value, dict):
                value = [{"name": name, **entry} for name, entry in value.items()]
            records += value
        return records
    return [json.loads(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_credentials(users_file: str | None, tokens_file: str | None, settings: Mapping[str, Any]) -> Credentials:
    """Users and tokens from the files and from ``USER_<NAME>``/``TOKEN_<NAME>`` settings. Raises ValueError."""
    creds = Credentials()
    if users_file:
        for i, rec in enumerate(_read_records(Path(users_file)), 1):
            where = f"{users_file} entry {i}"
            if not rec.get("name") or not rec.get("password_hash"):
                raise ValueError(f"{where}: needs name, password_hash and role")
            creds.users[str(rec["name"])] = (_role(rec.get("role"), where), str(rec["password_hash"]))
    if tokens_file:
        for i, rec in enumerate(_read_records(Path(tokens_file)), 1):
            where = f"{tokens_file} entry {i}"
            digest = str(rec.get("token_hash", ""))
            if not rec.get("name") or not digest.startswith("sha256:"):
                raise ValueError(f"{where}: needs name, role and token_hash (sha256:HEX, from `queuewatch make-token`)")
            creds.tokens[digest.split(":", 1)[1].lower()] = (str(rec["name"]), _role(rec.get("role"), where))
            if rec.get("expires"):
                creds.expires[str(rec["name"])] = _expiry(rec["expires"], where)
    for key, value in settings.items():
        for prefix in ("USER_", "TOKEN_"):
            if key.startswith(prefix) and key != "USER_HEADER" and isinstance(value, str):
                name = key[len(prefix):].lower()
                role, sep, secret = value.partition(":")
                if not sep or not secret:
                    raise ValueError(f"QUEUEWATCH_{key}: expected ROLE:HASH")
                if prefix == "USER_":
                    creds.users[name] = (_role(role, f"QUEUEWATCH_{key}"), secret)
                elif secret.startswith("sha256:"):
                    creds.tokens[secret.split(":", 1)[1].lower()] = (name, _role(role, f"QUEUEWATCH_{key}"))
                else:
                    raise ValueError(f"QUEUEWATCH_{key}: expected ROLE:sha256:HEX")
    return creds


def _expiry(value: object, where: str) -> float:
    """A token's ``expires``: an ISO 8601 date or time (UTC unless it says)."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: expires must be an ISO 8601 date or time, not {value!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def is_loopback(bind: str | None) -> bool:
    """Whether HOST:PORT listens on loopback only (no bind: a test client, so yes)."""
    if not bind:
        return True
    host = bind.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(bind: str | None, authenticated: bool, insecure: bool) -> str | None:
    """Why serving would expose an open dashboard, or None."""
    if authenticated or insecure or is_loopback(bind):
        return None
    return (f"refusing to serve on {bind} without authentication: anyone who can reach it could requeue, "
            "delete and purge jobs. Configure users (--users FILE or QUEUEWATCH_USER_<NAME>=role:hash), "
            "bind to 127.0.0.1, or pass --insecure-no-auth if something in front of queuewatch authenticates.")


@dataclass
class Auth:
    """What ``init_app`` keeps in ``app.extensions["queuewatch.auth"]``."""

    credentials: Credentials
    user_header: str | None
    role_header: str | None
    default_role: str
    proxies: frozenset[str]
    limiter: LoginLimiter

    @property
    def required(self) -> bool:
        return self.credentials.any or bool(self.user_header)

    def check_password(self, name: str, password: str) -> Principal | None:
        role, stored = self.credentials.users.get(name, (None, _DUMMY_HASH))
        try:
            ok = check_password_hash(stored, password)
        except (ValueError, TypeError):
            ok = False
        return Principal(name, role, "session") if ok and role else None


def auth() -> Auth:
    return current_app.extensions["queuewatch.auth"]


def identify() -> Principal | None:
    """Who sent this request: a bearer token, the trusted proxy's header, or the session."""
    state = auth()
    if not state.required:
        return Principal("anonymous", "admin", "open")
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        found = state.credentials.tokens.get(hashlib.sha256(header[7:].strip().encode()).hexdigest())
        if found is None:
            abort(401, description="the bearer token is not known")
        expires = state.credentials.expires.get(found[0])
        if expires is not None and time.time() >= expires:
            abort(401, description=f"the bearer token {found[0]!r} expired at "
                                   f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}")  # fmt: skip
        return Principal(found[0], found[1], "token")
    if state.user_header and request.remote_addr in state.proxies:
        name = request.headers.get(state.user_header, "").strip()
        if name:
            role = request.headers.get(state.role_header, "").strip().lower() if state.role_header else ""
            return Principal(name, role if role in ROLES else state.default_role, "proxy")
    name = session.get("user")
    if isinstance(name, str) and name in state.credentials.users:
        if sessions.valid(name):
            return Principal(name, state.credentials.users[name][0], "session")
        session.clear()  # revoked by a logout, idle too long or too old: log in again
    return None


def principal() -> Principal | None:
    return g.get("principal")


def can(role: str) -> bool:
    """For templates: whether this request's principal may act as ``role`` (buttons are hidden otherwise)."""
    if role != "viewer" and current_app.config.get("READ_ONLY"):
        return False
    return allows(getattr(principal(), "role", None), role)


def enforce() -> Any:
    """The one check every request passes: 401 or a redirect to log in, 403, or through."""
    g.principal = identify()
    needed = required_role(request.endpoint, request.method, request.path)
    if current_app.config.get("READ_ONLY") and request.method not in READ and request.endpoint not in ("auth.login", "auth.logout"):
        abort(403, description="queuewatch runs read-only (--read-only): nothing can be changed")
    if allows(getattr(g.principal, "role", None), needed):
        return None
    if g.principal is None:
        machine = request.path.startswith("/api/") or request.endpoint == "metrics.metrics"
        login = url_for("auth.login", next=request.full_path.rstrip("?"))
        if request.headers.get("HX-Request") == "true":
            # A page left open past its session: htmx follows HX-Redirect to the login page.
            return Response("log in first\n", 401, {"HX-Redirect": url_for("auth.login")}, mimetype="text/plain")
        if request.method in READ and not machine:
            return redirect(login)
        abort(401, description="log in first (or send Authorization: Bearer TOKEN)")
    abort(403, description=f"{g.principal.name} is {g.principal.role}; this needs {needed}")


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure when configured, or when the request itself came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or (bool(request) and request.is_secure)


def init_app(app: Flask) -> None:
    config = app.config
    credentials = load_credentials(config.get("USERS"), config.get("TOKENS"), config)
    problem = exposure_problem(config.get("BIND"), credentials.any or bool(config.get("TRUST_USER_HEADER")), bool(config.get("INSECURE_NO_AUTH")))
    if problem:
        raise ValueError(problem)
    proxies = config.get("TRUSTED_PROXIES") or ["127.0.0.1", "::1"]
    app.extensions["queuewatch.auth"] = Auth(
        credentials=credentials,
        user_header=config.get("TRUST_USER_HEADER") or None,
        role_header=config.get("TRUST_ROLE_HEADER") or None,
        default_role=_role(config.get("TRUST_DEFAULT_ROLE") or "viewer", "--trust-default-role"),
        proxies=frozenset(proxies.split(",") if isinstance(proxies, str) else proxies),
        limiter=LoginLimiter(app.extensions["queuewatch.store"]),
    )
    app.session_interface = SessionInterface()
    app.before_request(enforce)
    app.jinja_env.globals.update(can=can, principal=principal, auth_required=lambda: auth().required)


def client() -> str:
    """This request's client address (behind a trusted proxy, the hop it added)."""
    return client_address(auth().proxies)


def make_token() -> str:
    return "qw_" + secrets.token_urlsafe(32)
