"""Configuration defaults and the parsing of backend specs.

Every setting can come from the command line, from a ``QUEUEWATCH_*``
environment variable, or from ``create_app(test_config)``. Backend specs are
``[NAME=]URL``; names default to the kind (``redis``, then ``redis-2``...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_REDIS = "redis://localhost:6379/0"
DEFAULT_RABBITMQ = "amqp://guest:guest@localhost:5672/%2F"
DEFAULTS = {
    "REDIS": [DEFAULT_REDIS],
    "RABBITMQ": [DEFAULT_RABBITMQ],
    "STATE": None,  # resolved by default_state_path()
    "POLL": 5.0,  # seconds between snapshots, and between page refreshes
    "SAMPLER": False,  # `queuewatch serve` turns the background sampler on
    "PAGE_SIZE": 50,
    "BULK_CHUNK": 1_000,  # jobs per step of a background bulk operation (app/failures/operations.py)
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_NAME": "queuewatch_session",
    "SESSION_COOKIE_SECURE": False,
    "SESSION_IDLE_SECONDS": 12 * 3600,  # --session-idle: a session unused this long ends (app/security/sessions.py)
    "PERMANENT_SESSION_LIFETIME": 7 * 86400,  # and any session this old  # --secure-cookies; HTTPS requests get Secure anyway (app/security/auth.py)
    # Who may do what (app/security/auth.py, README "Security"): no users and a loopback bind = open.
    "BIND": None,  # the CLI passes --bind; None (a test client) counts as loopback
    "USERS": None,  # users file: TOML or JSON lines of name, role, password_hash
    "TOKENS": None,  # tokens file: name, role, token_hash
    "TRUST_USER_HEADER": None,  # e.g. X-Forwarded-User, only from TRUSTED_PROXIES
    "TRUST_ROLE_HEADER": None,
    "TRUST_DEFAULT_ROLE": "viewer",
    "TRUSTED_PROXIES": ["127.0.0.1", "::1"],
    "INSECURE_NO_AUTH": False,
    "ALLOWED_HOSTS": [],
    "WEBHOOK_ALLOW_INTERNAL": False,  # --webhook-allow-internal: webhooks to link-local/metadata addresses  # host names answered besides loopback names and the bind address (app/security/hosts.py)
    "READ_ONLY": False,
    # Request bodies: at most this many bytes (413 before anything reads them); forms the same.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 4 * 1024 * 1024,
    "MAX_FORM_PARTS": 20_000,
    "DECODE_SECONDS": 1.0,  # CPU a page may spend decoding payloads; the rest shows "not decoded"
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DISABLED = {"", "none", "off"}
_SENTINEL_HOSTS = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*=)?redis\+sentinel://[^/?#]*$", re.IGNORECASE)  # still in its host list


@dataclass(frozen=True)
class BackendSpec:
    name: str
    kind: str  # "redis" | "rabbitmq"
    url: str


def split_specs(value: str | Iterable[str] | None) -> list[str]:
    """A list of specs from a list, or from one string separated by commas or spaces."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    parts: list[str] = []
    for part in (part for item in items for part in re.split(r"[,\s]+", item.strip()) if part):
        # A Sentinel URL lists its sentinels with commas (redis+sentinel://h1:26379,h2:26379/mymaster/0).
        if parts and _SENTINEL_HOSTS.match(parts[-1]) and "://" not in part:
            parts[-1] += "," + part
        else:
            parts.append(part)
    return parts


def parse_backends(redis: Iterable[str], rabbitmq: Iterable[str]) -> list[BackendSpec]:
    """Named backend specs; ``none`` (or an empty value) turns a kind off. Raises ValueError."""
    specs: list[BackendSpec] = []
    taken: set[str] = set()
    for kind, values, schemes in (("redis", redis, ("redis", "rediss", "unix", "redis+sentinel")), ("rabbitmq", rabbitmq, ("amqp", "amqps"))):
        for value in values:
            if value.strip().lower() in DISABLED:
                continue
            name, url = _split_name(value)
            scheme = url.split("://", 1)[0].lower() if "://" in url else ""
            if scheme not in schemes:
                raise ValueError(f"--{kind} {value!r}: expected a {' or '.join(s + '://' for s in schemes)} URL")
            if name is None:
                name = kind
                n = 2
                while name in taken:
                    name, n = f"{kind}-{n}", n + 1
            if name in taken:
                raise ValueError(f"backend name {name!r} is used twice")
            taken.add(name)
            specs.append(BackendSpec(name=name, kind=kind, url=url))
    return specs


def _split_name(value: str) -> tuple[str | None, str]:
    head, sep, tail = value.partition("=")
    if sep and "://" not in head and _NAME.match(head):
        return head, tail
    return None, value


def backend_options(specs: list[BackendSpec], settings: Any) -> dict[str, dict[str, Any]]:
    """Each backend's constructor options from the settings.

    Which settings exist is said by the backends and adapters themselves (their
    ``options``): a value is ``[NAME=]VALUE``, where NAME is a backend that takes
    the setting; without a name it goes to every backend that does. Adapter
    options go under ``system_options[system]``. Raises ValueError for a name
    that is no such backend, or a URL of the wrong scheme.
    """
    from queuewatch.adapters.backends import BACKENDS

    options: dict[str, dict[str, Any]] = {s.name: {} for s in specs}
    takers: dict[str, list[tuple[BackendSpec, str | None, Any]]] = {}
    for spec in specs:
        backend = BACKENDS[spec.kind]
        for option in backend.options:
            takers.setdefault(option.setting, []).append((spec, None, option))
        for adapter in backend.adapter_classes:
            for option in adapter.options:
                takers.setdefault(option.setting, []).append((spec, adapter.system, option))
    for setting, places in takers.items():
        flag = "--" + setting.lower().replace("_", "-")
        kinds = {BACKENDS[spec.kind].label for spec, _, _ in places}
        for value in split_specs(settings.get(setting)):
            name, item = _split_name(value)
            if name is not None and name not in {spec.name for spec, _, _ in places}:
                kind = f"{kinds.pop()} " if len(kinds) == 1 else ""
                raise ValueError(f"{flag} {value!r}: no {kind}backend named {name!r}")
            for spec, system, option in places:
                if name not in (None, spec.name):
                    continue
                scheme = item.split("://", 1)[0].lower() if "://" in item else ""
                if option.schemes and scheme not in option.schemes:
                    raise ValueError(f"{flag} {value!r}: expected a {' or '.join(s + '://' for s in option.schemes)} URL")
                target = options[spec.name] if system is None else options[spec.name].setdefault("system_options", {}).setdefault(system, {})
                if option.many:
                    target.setdefault(option.keyword, []).append(item)
                else:
                    target[option.keyword] = item
    return options


def default_state_path() -> Path:
    """Where the SQLite state store lives when --state is not given."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "queuewatch" / "queuewatch.sqlite3"
