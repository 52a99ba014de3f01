"""The alert part of the state store: rules, current alert states, bounded
alert history and notification claims (webhook targets are a setting).

``AlertStore`` is the interface ``StateStore`` (app/state.py) extends;
``SQLiteAlertStore`` is its SQLite half, mixed into ``SQLiteStateStore``.
The Redis half is ``adapters/state_redis_alerts.py``. Values are opaque text
here (JSON made by app/evaluator.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Protocol

CLAIM_DAYS = 30  # a claim is kept this long: longer than any alert is retried

ALERT_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rules (key TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_states (key TEXT PRIMARY KEY, alert TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_history (id TEXT PRIMARY KEY, started INTEGER NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alert_history_started ON alert_history (started);
CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, holder TEXT NOT NULL, at REAL NOT NULL);
"""


class AlertStore(Protocol):
    def alert_rules(self) -> dict[str, str]:
        """Every alert rule, by key."""

    def put_alert_rule(self, key: str, rule: str) -> None:
        """Create or replace a rule."""

    def delete_alert_rule(self, key: str) -> bool:
        """Remove a rule; False if there was none."""

    def alert_states(self) -> dict[str, str]:
        """The current state of every alert, by key."""

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        """Write some alerts' states and forget others, in one transaction."""

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        """Create or update one history entry; keep only the ``keep`` newest by ``started``."""

    def alert_history(self, limit: int) -> list[str]:
        """History entries, newest first."""

    def claim(self, claim_id: str, holder: str) -> bool:
        """Insert-if-absent: True for exactly one caller per id, whichever replica asks."""


class SQLiteAlertStore:
    """The alert tables of the SQLite store (needs ``_connect`` from SQLiteStateStore)."""

    def alert_rules(self) -> dict[str, str]:
        with self._connect() as db:  # type: ignore[attr-defined]
            return dict(db.execute("SELECT key, rule FROM alert_rules ORDER BY key"))

    def put_alert_rule(self, key: str, rule: str) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("INSERT INTO alert_rules (key, rule) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET rule = excluded.rule", (key, rule))

    def delete_alert_rule(self, key: str) -> bool:
        with self._connect() as db:  # type: ignore[attr-defined]
            return db.execute("DELETE FROM alert_rules WHERE key = ?", (key,)).rowcount > 0

    def alert_states(self) -> dict[str, str]:
        with self._connect() as db:  # type: ignore[attr-defined]
            return dict(db.execute("SELECT key, alert FROM alert_states"))

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.executemany("DELETE FROM alert_states WHERE key = ?", [(k,) for k in drop])
            db.executemany("INSERT INTO alert_states (key, alert) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET alert = excluded.alert",
                           list(states.items()))  # fmt: skip

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("INSERT INTO alert_history (id, started, entry) VALUES (?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET entry = excluded.entry", (entry_id, started, entry))  # fmt: skip
            db.execute("DELETE FROM alert_history WHERE started < (SELECT started FROM alert_history "
                       "ORDER BY started DESC LIMIT 1 OFFSET ?)", (keep - 1,))  # fmt: skip

    def alert_history(self, limit: int) -> list[str]:
        with self._connect() as db:  # type: ignore[attr-defined]
            return [row[0] for row in db.execute("SELECT entry FROM alert_history ORDER BY started DESC, id LIMIT ?", (limit,))]

    def claim(self, claim_id: str, holder: str) -> bool:
        now = time.time()
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("DELETE FROM claims WHERE at < ?", (now - CLAIM_DAYS * 86400,))
            return db.execute("INSERT OR IGNORE INTO claims (id, holder, at) VALUES (?, ?, ?)", (claim_id, holder, now)).rowcount == 1
