"""The dashboard's own state store: settings, the sampler's lease, and history
(and alert rules, states, history and claims: ``app/state_alerts.py``; bulk
operations and their job ids: ``app/state_ops.py``).

``StateStore`` is the interface; ``open_store`` picks the implementation from
``--state``: a SQLite file (the default: embedded, nothing to run) or a
``redis://`` URL that several dashboard replicas share (that one lives in
``adapters/state_redis.py``, because ``app/`` never imports redis).

History points are opaque bytes here (``history.encode`` makes them), keyed by
series, tier and time in milliseconds (times are positive). Points are
append-only: a point never overwrites one already stored for the same series,
tier and time.

SQLite: one short-lived connection per call, WAL mode: safe across threads and
across the processes of one host that share the file.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from .sqlite_alerts import ALERT_SCHEMA, AlertStore, SQLiteAlertStore
from .sqlite_operations import OPS_SCHEMA, OpStore, SQLiteOpStore

Point = tuple[str, int, bytes]  # (series, t in ms, payload)

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL REFERENCES series (id),
    tier TEXT NOT NULL,
    t INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (series, tier, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
"""
AUDIT_KEEP = 100_000  # audit entries kept; the oldest go first


@runtime_checkable
class StateStore(AlertStore, OpStore, Protocol):
    """What the dashboard keeps for itself. Every implementation passes tests/test_state_store.py."""

    location: str  # where, for logs (no password)

    def get(self, key: str) -> str | None:
        """A setting, or None."""

    def put(self, key: str, value: str) -> None:
        """Store a setting."""

    def set_default(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return what is stored (race-free)."""

    def acquire_lease(self, name: str, holder: str, ttl: float) -> tuple[str | None, float]:
        """Take or renew the lease if it is free, expired or ours, atomically.
        Returns (holder, seconds left) after the attempt: we hold it if holder is us."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if we hold it."""

    def lease(self, name: str) -> tuple[str | None, float]:
        """(holder, seconds left), or (None, 0) when nobody holds it."""

    def add_points(self, tier: str, points: Iterable[Point]) -> int:
        """Append points; one whose (series, tier, t) is taken is dropped, as may be one
        older than its series' newest. Returns how many were stored."""

    def points(self, tier: str, series: Sequence[str] | None, after: int, before: int) -> dict[str, list[tuple[int, bytes]]]:
        """Points with after < t < before, oldest first, per series (every series if None)."""

    def prune(self, tier: str, before: int) -> int:
        """Drop the tier's points older than ``before``; returns how many went."""

    def series(self) -> list[str]:
        """Every series with points."""

    def forget_empty_series(self) -> int:
        """Drop series that have no points left in any tier."""

    def add_audit(self, entry: str) -> str:
        """Append one audit entry (opaque JSON text); returns its id. Keeps the newest AUDIT_KEEP."""

    def audit(self, limit: int, before: str | None = None) -> list[tuple[str, str]]:
        """Up to ``limit`` (id, entry), newest first, older than the id ``before`` if given.
        Raises ValueError for a ``before`` that is not an id this store made."""

    def close(self) -> None:
        """Release connections."""


def open_store(target: str | Path) -> StateStore:
    """The store for ``--state``: a ``redis://`` / ``rediss://`` URL, else a SQLite file path."""
    text = str(target)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("redis", "rediss"):
        from .redis_store import RedisStateStore

        return RedisStateStore(url=text)
    if scheme:
        raise ValueError(f"--state {text!r}: expected a SQLite file path or a redis:// URL")
    return SQLiteStateStore(text)


def secret_key(store: StateStore) -> str:
    """The session-signing key: made once, kept so sessions survive restarts (and are shared by replicas)."""
    return store.set_default("secret_key", secrets.token_urlsafe(48))


class SQLiteStateStore(SQLiteAlertStore, SQLiteOpStore):
    """The state store in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.executescript(ALERT_SCHEMA)
            db.executescript(OPS_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the file consistent; a power cut may lose a sample
            with db:
                yield db
        finally:
            db.close()

    # -- settings --------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def set_default(self, key: str, value: str) -> str:
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
            return db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0]

    # -- lease -------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> tuple[str | None, float]:
        now = time.time()
        with self._connect() as db:
            # One statement: the row's write lock makes take-if-free-or-ours atomic across processes.
            db.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (:name, :holder, :expires) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
                "WHERE leases.expires <= :now OR leases.holder = excluded.holder",
                {"name": name, "holder": holder, "expires": now + ttl, "now": now},
            )
            row = db.execute("SELECT holder, expires FROM leases WHERE name = ?", (name,)).fetchone()
        return row[0], max(0.0, row[1] - now)

    def release_lease(self, name: str, holder: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def lease(self, name: str) -> tuple[str | None, float]:
        now = time.time()
        with self._connect() as db:
            row = db.execute("SELECT holder, expires FROM leases WHERE name = ? AND expires > ?", (name, now)).fetchone()
        return (row[0], row[1] - now) if row else (None, 0.0)

    # -- history -----------------------------------------------------------------

    def add_points(self, tier: str, points: Iterable[Point]) -> int:
        rows = list(points)
        if not rows:
            return 0
        with self._connect() as db:
            ids = self._series_ids(db, {series for series, _, _ in rows})
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO samples (series, tier, t, data) VALUES (?, ?, ?, ?)",
                [(ids[series], tier, t, payload) for series, t, payload in rows],
            )
            return db.total_changes - before

    @staticmethod
    def _series_ids(db: sqlite3.Connection, keys: set[str]) -> dict[str, int]:
        db.executemany("INSERT OR IGNORE INTO series (key) VALUES (?)", [(k,) for k in keys])
        ids: dict[str, int] = {}
        listed = sorted(keys)
        for start in range(0, len(listed), 500):
            chunk = listed[start : start + 500]
            marks = ",".join("?" * len(chunk))
            ids.update(db.execute(f"SELECT key, id FROM series WHERE key IN ({marks})", chunk).fetchall())
        return ids

    def points(self, tier: str, series: Sequence[str] | None, after: int, before: int) -> dict[str, list[tuple[int, bytes]]]:
        found: dict[str, list[tuple[int, bytes]]] = {}
        if before - after <= 1:
            return found
        with self._connect() as db:
            if series is None:
                rows = db.execute(
                    "SELECT s.key, x.t, x.data FROM series s JOIN samples x ON x.series = s.id "
                    "AND x.tier = ? AND x.t > ? AND x.t < ? ORDER BY s.id, x.t",
                    (tier, after, before),
                )
            else:
                keys = list(series)
                marks = ",".join("?" * len(keys))
                rows = db.execute(
                    f"SELECT s.key, x.t, x.data FROM series s JOIN samples x ON x.series = s.id "
                    f"AND x.tier = ? AND x.t > ? AND x.t < ? WHERE s.key IN ({marks}) ORDER BY s.id, x.t",
                    (tier, after, before, *keys),
                ) if keys else []  # fmt: skip
            for key, t, data in rows:
                found.setdefault(key, []).append((t, bytes(data)))
        return found

    def prune(self, tier: str, before: int) -> int:
        with self._connect() as db:
            # One delete per series: each is a primary-key range, where one
            # statement over the tier would scan the whole table.
            ids = [row[0] for row in db.execute("SELECT id FROM series")]
            before_changes = db.total_changes
            db.executemany("DELETE FROM samples WHERE series = ? AND tier = ? AND t < ?", [(i, tier, before) for i in ids])
            return db.total_changes - before_changes

    def series(self) -> list[str]:
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT key FROM series s WHERE EXISTS (SELECT 1 FROM samples x WHERE x.series = s.id) ORDER BY key")]

    def forget_empty_series(self) -> int:
        with self._connect() as db:
            return db.execute("DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM samples x WHERE x.series = series.id)").rowcount

    # -- audit -----------------------------------------------------------------

    def add_audit(self, entry: str) -> str:
        with self._connect() as db:
            entry_id = db.execute("INSERT INTO audit (entry) VALUES (?)", (entry,)).lastrowid
            if entry_id % 1000 == 0:
                db.execute("DELETE FROM audit WHERE id <= ?", (entry_id - AUDIT_KEEP,))
        return str(entry_id)

    def audit(self, limit: int, before: str | None = None) -> list[tuple[str, str]]:
        bound = int(before) if before and before.isdigit() else None
        if before and bound is None:
            raise ValueError(f"not an audit cursor: {before!r}")
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, entry FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", (bound if bound is not None else 2**62, limit)
            ).fetchall()
        return [(str(i), e) for i, e in rows]

    def size_bytes(self) -> int:
        """The file's size on disk, WAL included (for the docs and tests)."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def close(self) -> None:
        """Nothing stays open between calls."""
