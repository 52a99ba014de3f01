"""The dashboard's own store: what queuewatch keeps for itself, as opposed to
what it reads from the systems it watches.

One interface (``interface.StateStore``) and two implementations side by side:
a SQLite file (``sqlite_store``, the default: embedded, nothing to run) and a
Redis database that several dashboard replicas share (``redis_store``,
``--state redis://…``). ``open_store`` picks one from ``--state``.

It lives under ``adapters/`` although it belongs to the dashboard: the app never
imports ``redis`` (or ``pika``), and the Redis store needs redis-py. Like the
adapters, both stores raise ``BackendUnavailable`` (Redis) or sqlite3's own
errors, and take no Flask.

The Redis store keeps the session-signing key in that database (the setting
``secret_key``): whoever can read it can forge a session. Protect it as the
dashboard's own secret.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from .interface import AUDIT_KEEP, OPERATIONS_KEEP, Point, StateStore
from .sqlite_store import SQLiteStateStore

__all__ = ["AUDIT_KEEP", "OPERATIONS_KEEP", "Point", "SQLiteStateStore", "StateStore", "open_store", "secret_key"]


def open_store(target: str | Path) -> StateStore:
    """The store for ``--state``: a Redis URL (any form ``--redis`` takes), else a SQLite file path."""
    text = str(target)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("redis", "rediss", "unix", "redis+sentinel"):
        from .redis_store import RedisStateStore

        return RedisStateStore(url=text)
    if scheme:
        raise ValueError(f"--state {text!r}: expected a SQLite file path or a redis:// URL")
    return SQLiteStateStore(text)


def secret_key(store: StateStore) -> str:
    """The session-signing key: made once, kept so sessions survive restarts (and are shared by replicas)."""
    return store.set_default("secret_key", secrets.token_urlsafe(48))
