"""Huey's failures, revoked tasks and instance names, found by a budgeted background scan.

Huey keeps no failed registry: a failure is an ``Error`` its consumer stores in
the result store under the task id (a field of ``huey.results.N``; a key
``huey.r.N.<id>`` with ``RedisExpireHuey``), and nothing says when. Revoke
markers (``r:<id>``) live there too. ``HueyFailures`` finds them with an
incremental scan run by the sampler (``maintain``), never on a page view:

- Each step pipelines one ``SCAN MATCH huey.* COUNT 500`` (instance names, and
  the entries of expiring result stores: STRLEN, PTTL and the first bytes) and
  one ``HSCAN`` step of a result hash (``results.lua``: per field its size, a
  digest and its first 256 bytes, never the whole value). A pass ends when the
  SCAN and every known result hash are through.
- An entry's first bytes say what it is; an ``Error`` is read whole (HGET /
  GET, decoded by ``messages.read_error``) only when new or changed (digest,
  or size and expiry), so each failure is decoded once, not once per pass.
- Huey records no time of failure: ``failed_at`` is when the scan first saw the
  record (kept across restarts with ``dump_memory``), and says so.
- Bounds: 10,000 failures per instance (the newest seen), 1,000 instances,
  10,000 revoke markers per instance, Error records over 8 MiB not decoded.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from queuewatch.adapters.base import FailedJob
from queuewatch.adapters.failure_index import FailureIndex, expiry, same_expiry

from . import keys
from .messages import HueyError, Revoked, head_of, is_error_head, read_error, read_revoke

SCAN_COUNT = 500
HSCAN_COUNT = 200
HEAD_BYTES = 256
DIGEST_LIMIT = 256 * 1024
MAX_PER_QUEUE = 10_000
MAX_QUEUES = 1_000
MAX_REVOKED = 10_000
MAX_DECODE_BYTES = 8 * 1024 * 1024
INDEX_MESSAGE_LIMIT = 500
RESULTS_SCRIPT = Path(__file__).with_name("results.lua").read_text()


@dataclass(frozen=True)
class HueyFailure:
    """One Error record as the index keeps it."""

    id: str
    queue: str  # the Huey instance's name
    error_type: str | None
    error_message: str | None
    retries: int | None  # retries it had left when it failed
    seen_ms: int  # when the scan first saw it: Huey keeps no time
    expires_at: float | None
    size: int
    digest: str  # sha1 of the value ("" when too large to digest)

    @property
    def order(self) -> tuple[int, str]:
        return (-self.seen_ms, self.id)

    def row(self) -> FailedJob:
        return FailedJob(id=self.id, function=None, args_preview="(Huey keeps no copy of a failed task's arguments)",
                         error_type=self.error_type, error_message=self.error_message,
                         failed_at=datetime.fromtimestamp(self.seen_ms / 1000, timezone.utc), attempts=None,
                         expires_at=datetime.fromtimestamp(self.expires_at, timezone.utc) if self.expires_at else None)  # fmt: skip


def entry_for(task_id: str, name: str, error: HueyError, seen_ms: int, expires_at: float | None, size: int,
              digest: str) -> HueyFailure:  # fmt: skip
    error_type, message = error.described
    if message is not None and len(message) > INDEX_MESSAGE_LIMIT:
        message = message[: INDEX_MESSAGE_LIMIT - 1] + "…"
    return HueyFailure(task_id, name, error_type or "Error", message, error.retries, seen_ms, expires_at, size, digest)


class HueyFailures(FailureIndex[HueyFailure]):
    """Error records, revoke markers and instance names on one Redis database, kept by ``maintain``."""

    def __init__(self, client: redis.Redis, names: tuple[str, ...] = ()) -> None:
        super().__init__(max_per_queue=MAX_PER_QUEUE, max_queues=MAX_QUEUES)
        self.client = client
        self._results = client.register_script(RESULTS_SCRIPT)
        self._configured = set(names)
        self._names: set[str] = set(names)  # every instance seen, by any of its keys
        self._names_now: set[str] = set()
        self._expiring: set[str] = set()  # instances with huey.r.N.* entries
        self._revoked: dict[str, dict[str, Revoked]] = {}  # name -> task id -> marker
        self._revoked_now: dict[str, dict[str, Revoked]] = {}
        self._first_seen: dict[str, int] = {}  # task id -> ms, for failures (survives a restart)
        self._scan_cursor = 0
        self._scan_done = True
        self._hashes: list[str] = []  # result hashes still to walk this pass
        self._hash_cursor = 0

    # -- scanning (sampler thread) -----------------------------------------------

    def _begin(self) -> None:
        self._scan_cursor, self._scan_done = 0, False
        self._names_now = set(self._configured)
        self._revoked_now = {}
        self._hashes = sorted(self._names)
        self._hash_cursor = 0

    def _ended(self) -> None:
        self._names = self._names_now | {e.queue for e in self._entries.values()}
        self._revoked = self._revoked_now
        self._first_seen = {i: t for i, t in self._first_seen.items() if i in self._entries}

    def _step(self) -> bool:
        with self.client.pipeline(transaction=False) as pipe:
            if not self._scan_done:
                pipe.scan(self._scan_cursor, match=keys.SCAN_PATTERN, count=SCAN_COUNT)
            walking = self._hashes[0] if self._hashes else None
            if walking is not None:
                self._results(keys=[keys.results_key(walking)], args=[self._hash_cursor, HSCAN_COUNT, HEAD_BYTES, DIGEST_LIMIT],
                              client=pipe)  # fmt: skip
            replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if not self._scan_done:
            cursor, found = replies.pop(0)
            self._scan_cursor = int(cursor)
            self._scan_done = self._scan_cursor == 0
            self._learn(found)
        if walking is not None:
            self._read_hash(walking, replies[0])
        return self._scan_done and not self._hashes

    def _learn(self, found: list[bytes]) -> None:
        expiring = []
        with self._lock:
            for key in found:
                what = keys.classify(key, self._names)
                if what is None:
                    continue
                name, kind, entry = what
                if name not in self._names_now and len(self._names_now) >= MAX_QUEUES:
                    continue
                self._names_now.add(name)
                if kind == "results" and name not in self._names and name not in self._hashes:
                    self._hashes.append(name)  # a new instance: walk its results in this pass too
                    self._names.add(name)
                if kind == "expire" and entry is not None:
                    self._expiring.add(name)
                    expiring.append((key, name, entry))
        if expiring:
            self._read_expiring(expiring)

    def _read_hash(self, name: str, reply: list[Any]) -> None:
        cursor = reply[0]
        if len(reply) == 3 and reply[1] == b"wrongtype":
            self._hashes.pop(0)
            self._hash_cursor = 0
            return
        entries = []
        for i in range(1, len(reply), 4):
            field, size, digest, head = reply[i : i + 4]
            entries.append((field, int(size), digest.decode("ascii"), head, None))
        self._classify(name, entries, lambda field: ("hget", keys.results_key(name), field))
        self._hash_cursor = int(cursor)
        if self._hash_cursor == 0:
            self._hashes.pop(0)

    def _read_expiring(self, found: list[tuple[bytes, str, str]]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key, _, _ in found:
                pipe.strlen(key)
                pipe.pttl(key)
                pipe.getrange(key, 0, HEAD_BYTES - 1)
            replies = pipe.execute(raise_on_error=False)
        now = time.time()
        by_name: dict[str, list[tuple[bytes, int, str, bytes, float | None]]] = {}
        for n, (key, name, entry) in enumerate(found):
            size, pttl, head = replies[3 * n : 3 * n + 3]
            if not (type(size) is int and type(pttl) is int and isinstance(head, bytes)) or pttl == -2:
                continue  # gone since SCAN named it, or not a string: not Huey's
            by_name.setdefault(name, []).append((entry.encode(), size, "", head, expiry(pttl, now)))
        for name, entries in by_name.items():
            self._classify(name, entries, lambda field, name=name: ("get", keys.expire_key(name, field.decode()), None))

    def _classify(self, name: str, entries: list[tuple[bytes, int, str, bytes, float | None]], where: Any) -> None:
        """Sort one batch of result-store entries: revoke markers kept, Error records
        read whole when new or changed, everything else left alone."""
        to_read = []
        now_ms = int(time.time() * 1000)
        with self._lock:
            for raw, size, digest, head, expires_at in entries:
                try:
                    field = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue  # Huey writes text keys: not one of its entries
                kind = keys.entry_kind(field)
                if kind == "revoke":
                    revoked = self._revoked_now.setdefault(name, {})
                    if len(revoked) < MAX_REVOKED:
                        marker = (
                            read_revoke(head)
                            if size <= len(head)
                            else Revoked(None, False, f"{size:,} bytes, not a revoke marker Huey wrote")
                        )
                        revoked[field[len(keys.REVOKE_PREFIX) :]] = marker
                    continue
                if kind != "task":
                    continue
                if not is_error_head(head_of(head)):
                    if field in self._entries:
                        self._drop(field)  # an Error replaced by a value: the retry succeeded
                    continue
                old = self._entries.get(field)
                if (
                    old is not None
                    and old.queue == name
                    and old.size == size
                    and old.digest == digest
                    and same_expiry(old.expires_at, expires_at)
                ):
                    self._seen[field] = self.pass_number
                    self._count_found(name)
                    continue
                if size > MAX_DECODE_BYTES:
                    error = HueyError(size, "pickle", f"{size:,} bytes, too large to decode here")
                    self._record(field, name, error, now_ms, expires_at, size, digest)
                    continue
                to_read.append((field, size, digest, expires_at))
        if not to_read:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for field, _, _, _ in to_read:
                command, key, hfield = where(field.encode())
                if command == "hget":
                    pipe.hget(key, hfield)
                else:
                    pipe.get(key)
            values = pipe.execute(raise_on_error=False)
        with self._lock:
            for (field, size, digest, expires_at), data in zip(to_read, values):
                if isinstance(data, bytes):
                    digest = digest or (_sha1(data) if len(data) <= DIGEST_LIMIT else "")
                    self._record(field, name, read_error(data, max_bytes=MAX_DECODE_BYTES), now_ms, expires_at, len(data), digest)

    def _record(self, task_id: str, name: str, error: HueyError, now_ms: int, expires_at: float | None, size: int,
                digest: str, scanned: bool = True) -> None:  # fmt: skip
        seen = self._first_seen.setdefault(task_id, now_ms)
        if self._put(entry_for(task_id, name, error, seen, expires_at, size, digest)) and scanned:
            self._count_found(name)

    # -- reading (any thread) ---------------------------------------------------------

    def names(self) -> set[str]:
        """Every Huey instance seen: by its queue, schedule, results or counters."""
        with self._lock:
            return self._names | self._names_now | set(self._queues) | self._configured

    def expiring(self, name: str) -> bool:
        """Whether ``name`` keeps its results as keys of their own (RedisExpireHuey)."""
        with self._lock:
            return name in self._expiring

    def revoked(self, name: str) -> dict[str, Revoked]:
        """The revoke markers of the last whole pass (and those added since), by task id."""
        with self._lock:
            return dict(self._revoked.get(name, {})) | dict(self._revoked_now.get(name, {}))

    # -- what page views and actions learn ------------------------------------------

    def update(self, task_id: str, name: str, error: HueyError | None, size: int = 0, expires_at: float | None = None,
               digest: str = "") -> None:  # fmt: skip
        """An entry re-read outside the scan: ``None`` when it is gone or no failure."""
        with self._lock:
            if error is None:
                self._drop(task_id)
            else:
                self._record(task_id, name, error, int(time.time() * 1000), expires_at, size, digest, scanned=False)

    def learn_revoked(self, name: str, task_id: str, marker: Revoked | None) -> None:
        with self._lock:
            for table in (self._revoked, self._revoked_now):
                if marker is None:
                    table.get(name, {}).pop(task_id, None)
                else:
                    table.setdefault(name, {})[task_id] = marker

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {"first_seen": {i: e.seen_ms for i, e in self._entries.items()}}

    def load(self, data: dict[str, Any]) -> None:
        seen = data.get("first_seen")
        if isinstance(seen, dict):
            with self._lock:
                for task_id, ms in list(seen.items())[: MAX_PER_QUEUE * 10]:
                    if isinstance(task_id, str) and type(ms) is int:
                        self._first_seen.setdefault(task_id, ms)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
