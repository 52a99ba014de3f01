"""The bulk-operation part of the state store: operation records and the job
ids each operation took when it counted (its snapshot of what to act on).

``OpStore`` is the interface ``StateStore`` (app/state.py) extends;
``SQLiteOpStore`` is its SQLite half, mixed into ``SQLiteStateStore``. The
Redis half is ``adapters/state_redis_ops.py``. Records are opaque JSON text
here (app/bulk.py makes them); ids come in numbered chunks of text.
"""

from __future__ import annotations

from typing import Protocol

OPS_KEEP = 200  # operation records kept; the oldest finished ones go first, with their ids

OPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (id TEXT PRIMARY KEY, created REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ops_created ON ops (created);
CREATE TABLE IF NOT EXISTS op_ids (op TEXT NOT NULL, n INTEGER NOT NULL, ids TEXT NOT NULL, PRIMARY KEY (op, n)) WITHOUT ROWID;
"""


class OpStore(Protocol):
    def put_op(self, op_id: str, created: float, record: str) -> None:
        """Create or replace an operation's record; keeps the newest OPS_KEEP operations."""

    def op(self, op_id: str) -> str | None:
        """One operation's record, or None."""

    def ops(self, limit: int) -> list[str]:
        """Operation records, newest first."""

    def put_op_ids(self, op_id: str, n: int, ids: str) -> None:
        """Store (or replace) chunk ``n`` of an operation's ids."""

    def op_ids(self, op_id: str, n: int) -> str | None:
        """Chunk ``n`` of an operation's ids, or None."""

    def drop_op_ids(self, op_id: str) -> None:
        """Forget an operation's ids (it has finished with them)."""


class SQLiteOpStore:
    """The operation tables of the SQLite store (needs ``_connect`` from SQLiteStateStore)."""

    def put_op(self, op_id: str, created: float, record: str) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("INSERT INTO ops (id, created, record) VALUES (?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET record = excluded.record", (op_id, created, record))  # fmt: skip
            old = [row[0] for row in db.execute("SELECT id FROM ops ORDER BY created DESC LIMIT -1 OFFSET ?", (OPS_KEEP,))]
            db.executemany("DELETE FROM ops WHERE id = ?", [(i,) for i in old])
            db.executemany("DELETE FROM op_ids WHERE op = ?", [(i,) for i in old])

    def op(self, op_id: str) -> str | None:
        with self._connect() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT record FROM ops WHERE id = ?", (op_id,)).fetchone()
        return row[0] if row else None

    def ops(self, limit: int) -> list[str]:
        with self._connect() as db:  # type: ignore[attr-defined]
            return [row[0] for row in db.execute("SELECT record FROM ops ORDER BY created DESC, id LIMIT ?", (limit,))]

    def put_op_ids(self, op_id: str, n: int, ids: str) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("INSERT INTO op_ids (op, n, ids) VALUES (?, ?, ?) ON CONFLICT (op, n) DO UPDATE SET ids = excluded.ids",
                       (op_id, n, ids))  # fmt: skip

    def op_ids(self, op_id: str, n: int) -> str | None:
        with self._connect() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT ids FROM op_ids WHERE op = ? AND n = ?", (op_id, n)).fetchone()
        return row[0] if row else None

    def drop_op_ids(self, op_id: str) -> None:
        with self._connect() as db:  # type: ignore[attr-defined]
            db.execute("DELETE FROM op_ids WHERE op = ?", (op_id,))
