"""The dashboard's own state store (SQLite by default): settings now; history,
alert rules and the audit log plug in here.

One short-lived connection per call, WAL mode: safe across threads and across
the processes of one host that share the file.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateStore:
    """Key/value settings in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        target = str(path)
        if "://" in target:
            raise ValueError(f"--state {target!r}: only a SQLite file path is supported so far")
        self.path = Path(target)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_default(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return what is stored (race-free)."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
            return db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0]

    def secret_key(self) -> str:
        """The session-signing key: made once, kept so sessions survive restarts."""
        return self.set_default("secret_key", secrets.token_urlsafe(48))
