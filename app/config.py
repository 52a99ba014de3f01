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
    "BULK_CHUNK": 1_000,  # jobs per step of a background bulk operation (app/bulk.py)
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_NAME": "queuewatch_session",
    "SESSION_COOKIE_SECURE": False,  # --secure-cookies; HTTPS requests get Secure anyway (app/auth.py)
    # Who may do what (app/auth.py, README "Security"): no users and a loopback bind = open.
    "BIND": None,  # the CLI passes --bind; None (a test client) counts as loopback
    "USERS": None,  # users file: TOML or JSON lines of name, role, password_hash
    "TOKENS": None,  # tokens file: name, role, token_hash
    "TRUST_USER_HEADER": None,  # e.g. X-Forwarded-User, only from TRUSTED_PROXIES
    "TRUST_ROLE_HEADER": None,
    "TRUST_DEFAULT_ROLE": "viewer",
    "TRUSTED_PROXIES": ["127.0.0.1", "::1"],
    "INSECURE_NO_AUTH": False,
    "READ_ONLY": False,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DISABLED = {"", "none", "off"}


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
    return [part for item in items for part in re.split(r"[,\s]+", item.strip()) if part]


def parse_backends(redis: Iterable[str], rabbitmq: Iterable[str]) -> list[BackendSpec]:
    """Named backend specs; ``none`` (or an empty value) turns a kind off. Raises ValueError."""
    specs: list[BackendSpec] = []
    taken: set[str] = set()
    for kind, values, schemes in (("redis", redis, ("redis", "rediss", "unix")), ("rabbitmq", rabbitmq, ("amqp", "amqps"))):
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


def parse_celery_results(spec: str, backend_names: Iterable[str]) -> tuple[str | None, str]:
    """``[BROKER=]URL`` of a Celery Redis result backend: (broker backend name or None for all, URL)."""
    name, url = _split_name(spec)
    if not url.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"--celery-results {spec!r}: expected a redis:// URL")
    if name is not None and name not in set(backend_names):
        raise ValueError(f"--celery-results {spec!r}: no backend named {name!r}")
    return name, url


def link_celery_results(monitor: Any, spec: str) -> None:
    """Read Celery's failed tasks from the result backend ``spec`` names (see parse_celery_results)."""
    name, url = parse_celery_results(spec, monitor.backends)
    for backend in monitor.backends.values():
        if name in (None, backend.name):
            backend.adapter("celery").link_results(url)


def backend_options(specs: list[BackendSpec], settings: Any) -> dict[str, dict[str, Any]]:
    """Each backend's options from the settings: the Dramatiq namespace for Redis
    backends; for RabbitMQ backends the management API URL and the queues and
    dead-letter queues to watch when that API is off (``[NAME=]VALUE``, no name:
    every RabbitMQ backend). Raises ValueError for a name that is no backend."""
    rabbits = [s.name for s in specs if s.kind == "rabbitmq"]
    options: dict[str, dict[str, Any]] = {s.name: {} for s in specs}
    namespace = settings.get("DRAMATIQ_NAMESPACE")
    for spec in specs:
        if spec.kind == "redis" and namespace:
            options[spec.name]["system_options"] = {"dramatiq": {"namespace": namespace}}
    for key, option, many in (("RABBITMQ_MANAGEMENT", "management_url", False),
                              ("RABBITMQ_QUEUES", "queues", True), ("RABBITMQ_DLQS", "dead_letter_queues", True)):  # fmt: skip
        for value in split_specs(settings.get(key)):
            name, item = _split_name(value)
            if name is not None and name not in rabbits:
                raise ValueError(f"{value!r}: no RabbitMQ backend named {name!r}")
            for target in [name] if name else rabbits:
                if many:
                    options[target].setdefault(option, []).append(item)
                else:
                    options[target][option] = item
    return options


def default_state_path() -> Path:
    """Where the SQLite state store lives when --state is not given."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "queuewatch" / "queuewatch.sqlite3"
