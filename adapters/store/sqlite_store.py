"""The state store in a SQLite file: the default (embedded, nothing to run).

One short-lived connection per call, WAL mode: safe across threads and across
the processes of one host that share the file. History points are kept per
series, tier and time (primary key), append-only.

The file holds the session-signing key, so it is made 0600 in a 0700 folder
(and tightened if found looser). It survives what happens to files: deleted
under a running dashboard, it is made again on the next call; found damaged at
start, it is moved aside and a new one started (``notices`` says so); read-only
or on a full disk, every call raises ``StoreUnavailable`` with the reason, and
``last_write_error`` keeps it for the banner and ``/readyz``. The schema is
versioned (``PRAGMA user_version``) so later versions can migrate it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from queuewatch.adapters.errors import StoreUnavailable

from .interface import AUDIT_KEEP, CLAIM_DAYS, OPERATIONS_KEEP, Point

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # PRAGMA user_version of a store this code made; MIGRATIONS lead an older one here
MIGRATIONS: dict[int, str] = {}  # version -> SQL that turns version-1 into it (none yet: 1 is the first)

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
CREATE TABLE IF NOT EXISTS alert_rules (key TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_states (key TEXT PRIMARY KEY, alert TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_history (id TEXT PRIMARY KEY, started INTEGER NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alert_history_started ON alert_history (started);
CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, holder TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ops (id TEXT PRIMARY KEY, created REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ops_created ON ops (created);
CREATE TABLE IF NOT EXISTS op_ids (op TEXT NOT NULL, n INTEGER NOT NULL, ids TEXT NOT NULL, PRIMARY KEY (op, n)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, count INTEGER NOT NULL, since REAL NOT NULL);
"""


def _private_dir(folder: Path) -> None:
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _private_file(path: Path) -> None:
    """The file, made 0600 if absent, tightened to 0600 if others may read it."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
            log.warning("the state file %s was readable by others (%o): made private (it holds the session key)", path, mode)
        except OSError as exc:  # not ours to change: say so
            log.warning("the state file %s is readable by others (%o) and cannot be made private: %s", path, mode, exc)


class SQLiteStateStore:
    """The state store in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.notices: list[str] = []  # what happened to the file that the operator should know
        self.last_write_error: tuple[float, str] | None = None  # (when, why) of the last failed write, until one succeeds
        self._inode: int | None = None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not any(word in str(exc) for word in ("not a database", "malformed", "corrupt")):
                raise StoreUnavailable(f"the state store {self.path} cannot be opened: {exc}") from exc
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            self.notices.append(f"The state file {self.path} was damaged ({exc}): it was moved to {aside} and a new one "
                                "started, so history, alert rules and settings start empty.")  # fmt: skip
            log.error(self.notices[-1])
            self._open()
        except OSError as exc:
            raise StoreUnavailable(f"the state store {self.path} cannot be opened: {exc}") from exc

    def _open(self) -> None:
        """The folder (0700) and the file (0600) if missing, WAL, and the schema at this version."""
        _private_dir(self.path.parent)
        _private_file(self.path)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(f"the state store {self.path} was made by a newer queuewatch (schema {version}; "
                                       f"this one knows {SCHEMA_VERSION})")  # fmt: skip
            with db:
                db.executescript(SCHEMA)  # CREATE ... IF NOT EXISTS: the whole current schema, on a new file too
                for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    db.executescript(MIGRATIONS[step])
                if version != SCHEMA_VERSION:
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()
        self._inode = self.path.stat().st_ino

    def _gone(self) -> bool:
        try:
            return self.path.stat().st_ino != self._inode
        except FileNotFoundError:
            return True

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._gone():  # deleted (or replaced) under a running dashboard: start a new one rather than fail
            self.notices.append(f"The state file {self.path} disappeared at {time.strftime('%H:%M:%S')}: a new one "
                                "was started (history, rules and settings from before are gone).")  # fmt: skip
            log.error(self.notices[-1])
            try:
                self._open()
            except (OSError, sqlite3.Error) as exc:
                self._failed(exc)
                raise StoreUnavailable(f"the state store {self.path} is gone and cannot be made again: {exc}") from exc
        try:
            db = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as exc:
            self._failed(exc)
            raise StoreUnavailable(f"the state store {self.path} cannot be opened: {exc}") from exc
        try:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the file consistent; a power cut may lose a sample
            with db:
                yield db
            if db.total_changes:
                self.last_write_error = None
        except sqlite3.Error as exc:
            self._failed(exc)
            raise StoreUnavailable(f"the state store {self.path} cannot be used: {exc}") from exc
        finally:
            db.close()

    def _failed(self, exc: BaseException) -> None:
        self.last_write_error = (time.time(), str(exc))

    def check(self) -> str | None:
        """Why the store cannot be written now, or None: a real write (for /readyz)."""
        try:
            self.put("readyz", str(time.time()))
        except StoreUnavailable as exc:
            return str(exc)
        return None

    # -- attempts (the login limiter) ---------------------------------------------

    def count_attempt(self, key: str, window: float) -> int:
        with self._connect() as db:
            now = time.time()
            db.execute("INSERT INTO attempts (key, count, since) VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
                       "count = CASE WHEN since <= ? THEN 1 ELSE count + 1 END, "
                       "since = CASE WHEN since <= ? THEN excluded.since ELSE since END",
                       (key, now, now - window, now - window))  # fmt: skip
            if int(now) % 64 == 0:
                db.execute("DELETE FROM attempts WHERE since <= ?", (now - 86400,))
            return db.execute("SELECT count FROM attempts WHERE key = ?", (key,)).fetchone()[0]

    def attempts(self, key: str, window: float) -> tuple[int, float]:
        with self._connect() as db:
            row = db.execute("SELECT count, since FROM attempts WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] <= time.time() - window:
            return 0, 0.0
        return row[0], row[1] + window - time.time()

    def reset_attempts(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM attempts WHERE key = ?", (key,))

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

    # -- alerts ------------------------------------------------------------------

    def alert_rules(self) -> dict[str, str]:
        with self._connect() as db:
            return dict(db.execute("SELECT key, rule FROM alert_rules ORDER BY key"))

    def put_alert_rule(self, key: str, rule: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO alert_rules (key, rule) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET rule = excluded.rule", (key, rule))

    def delete_alert_rule(self, key: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM alert_rules WHERE key = ?", (key,)).rowcount > 0

    def alert_states(self) -> dict[str, str]:
        with self._connect() as db:
            return dict(db.execute("SELECT key, alert FROM alert_states"))

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM alert_states WHERE key = ?", [(k,) for k in drop])
            db.executemany("INSERT INTO alert_states (key, alert) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET alert = excluded.alert",
                           list(states.items()))  # fmt: skip

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO alert_history (id, started, entry) VALUES (?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET entry = excluded.entry", (entry_id, started, entry))  # fmt: skip
            db.execute("DELETE FROM alert_history WHERE started < (SELECT started FROM alert_history "
                       "ORDER BY started DESC LIMIT 1 OFFSET ?)", (keep - 1,))  # fmt: skip

    def alert_history(self, limit: int) -> list[str]:
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT entry FROM alert_history ORDER BY started DESC, id LIMIT ?", (limit,))]

    def claim(self, claim_id: str, holder: str) -> bool:
        now = time.time()
        with self._connect() as db:
            db.execute("DELETE FROM claims WHERE at < ?", (now - CLAIM_DAYS * 86400,))
            return db.execute("INSERT OR IGNORE INTO claims (id, holder, at) VALUES (?, ?, ?)", (claim_id, holder, now)).rowcount == 1

    # -- bulk operations ---------------------------------------------------------

    def put_operation(self, op_id: str, created: float, record: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO ops (id, created, record) VALUES (?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET record = excluded.record", (op_id, created, record))  # fmt: skip
            old = [row[0] for row in db.execute("SELECT id FROM ops ORDER BY created DESC LIMIT -1 OFFSET ?", (OPERATIONS_KEEP,))]
            db.executemany("DELETE FROM ops WHERE id = ?", [(i,) for i in old])
            db.executemany("DELETE FROM op_ids WHERE op = ?", [(i,) for i in old])

    def operation(self, op_id: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM ops WHERE id = ?", (op_id,)).fetchone()
        return row[0] if row else None

    def operations(self, limit: int) -> list[str]:
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT record FROM ops ORDER BY created DESC, id LIMIT ?", (limit,))]

    def put_operation_ids(self, op_id: str, n: int, ids: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO op_ids (op, n, ids) VALUES (?, ?, ?) ON CONFLICT (op, n) DO UPDATE SET ids = excluded.ids",
                       (op_id, n, ids))  # fmt: skip

    def operation_ids(self, op_id: str, n: int) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT ids FROM op_ids WHERE op = ? AND n = ?", (op_id, n)).fetchone()
        return row[0] if row else None

    def drop_operation_ids(self, op_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM op_ids WHERE op = ?", (op_id,))

    def size_bytes(self) -> int:
        """The file's size on disk, WAL included (for the docs and tests)."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def close(self) -> None:
        """Nothing stays open between calls."""
