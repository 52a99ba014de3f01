"""Celery's failed tasks, indexed by queue, kept up to date by the sampler.

Celery has no failed registry: a failure is a ``celery-task-meta-ID`` result
(status FAILURE) until ``result_expires``, and a ``task-failed`` event.
``FailureIndex`` learns both without ``KEYS`` and without a SCAN per page view:

- Live: the event listener calls ``from_event`` for every ``task-failed``; the
  id is then read from the result backend (one GET) at the next ``maintain``,
  which attributes it to its queue.
- Catch-up: ``maintain`` advances one ``SCAN MATCH celery-task-meta-* COUNT
  500`` cursor, kept across ticks, within its time budget. Each step costs one
  pipelined GETRANGE 0..31 + STRLEN + PTTL per key: a JSON record's head names
  its status, so successes are skipped without being read, and a failure is
  read (GET) only when new or when its size or expiry changed. Records that
  are not JSON are read once and remembered by size and expiry. A pass starts
  at most every 5 s and no sooner than twice the last pass's duration.
- A pass that ends without seeing an indexed result drops it (deleted or
  expired); an expiry that passes drops it at once.

A failure is listed under the queue its record names (``result_extended``) or
its ``task-sent`` event routed it to; otherwise under ``UNKNOWN``.

Memory is bounded: 10,000 failures per queue (the newest; beyond that the
count is the last pass's and approximate), 50,000 in all, 500 queues,
100,000 remembered non-JSON results, 10,000 ids waiting to be read, and
messages clipped to 500 characters. Event-only failures (no result record)
are kept a day.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from dataclasses import astuple, dataclass, replace
from typing import Any

from .results import HEAD_BYTES, ResultStore, glob_escape, parse_record, split_repr, status_from_head
from queuewatch.adapters.decoding.payload import args_preview

UNKNOWN = "(queue unknown)"
SCAN_COUNT = 500
MAX_PER_QUEUE = 10_000
MAX_ENTRIES = 50_000
MAX_QUEUES = 500
MAX_OTHERS = 100_000
MAX_PENDING = 10_000
MAX_DECODE_BYTES = 8 * 1024 * 1024
MESSAGE_LIMIT = 500
EVENT_TTL = 86_400.0
MIN_PASS_GAP = 5.0
DUMP_LIMIT = 5_000  # entries written by dump(): the newest


@dataclass(frozen=True)
class FailedEntry:
    """One failed task as the index keeps it."""

    id: str
    queue: str  # UNKNOWN when neither the record nor an event says
    function: str | None
    args_preview: str
    error_type: str | None
    error_message: str | None
    failed_at: float | None  # unix time
    retries: int | None
    worker: str | None
    source: str  # "result" (a record exists) | "event" (only a task-failed event was seen)
    refusal: str | None  # why requeue refuses it; None when it can
    expires_at: float | None  # unix time; None: kept until a pass misses it
    size: int  # bytes of the record; -1 for event-only entries
    root_id: str | None = None

    @property
    def order(self) -> tuple[int, str]:
        """Newest first (to the millisecond), ties by id: the order pages are cut in."""
        return (-round((self.failed_at or 0.0) * 1000), self.id)


def _clip(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def record_entry(record: Any, size: int, expires_at: float | None, known: FailedEntry | None) -> FailedEntry:
    """The entry for a FAILURE record, keeping what events told about it."""
    if record.args is not None and record.kwargs is not None:
        preview = args_preview(record.args, record.kwargs)
    else:
        preview = known.args_preview if known else (record.error or "")
    return FailedEntry(
        id=record.id,
        queue=record.queue or (known.queue if known else UNKNOWN),
        function=record.name or (known.function if known else None),
        args_preview=preview,
        error_type=record.error_type,
        error_message=_clip(record.error_message),
        failed_at=record.date_done.timestamp() if record.date_done else (known.failed_at if known else None),
        retries=record.retries,
        worker=record.worker or (known.worker if known else None),
        source="result",
        refusal=record.refusal,
        expires_at=expires_at,
        size=size,
        root_id=known.root_id if known else None,
    )


class FailureIndex:
    """Failed Celery tasks of one result backend, by queue."""

    def __init__(self, store: ResultStore | None) -> None:
        self.store = store
        self._lock = threading.Lock()  # the data below; never held during Redis I/O
        self._scan_lock = threading.Lock()
        self._entries: dict[str, FailedEntry] = {}
        self._queues: dict[str, dict[str, FailedEntry]] = {}
        self._ordered: dict[str, list[FailedEntry]] = {}
        self._seen: dict[str, int] = {}  # id -> the pass that last saw its record
        self._others: dict[str, tuple[int, float | None]] = {}  # non-JSON results that are not failures
        self._pending: OrderedDict[str, None] = OrderedDict()  # ids to read (from events)
        self._capped: set[str] = set()
        self._found: dict[str, int] = {}
        self._found_last: dict[str, int] = {}
        self._cursor = 0
        self._in_pass = False
        self.pass_number = 0
        self.passes_completed = 0
        self._pass_started = 0.0
        self._next_pass = 0.0
        self.version = 0  # changes whenever the index does: dump when it moved

    # -- the sampler's upkeep ----------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Read the ids events named, then advance the scan until the budget is spent."""
        if self.store is None:
            return
        deadline = time.monotonic() + budget_seconds
        with self._scan_lock:
            self._read_pending()
            while True:
                if not self._in_pass:
                    if time.monotonic() < self._next_pass:
                        return
                    self._start_pass()
                self._step()
                if not self._in_pass or time.monotonic() >= deadline:
                    return

    def relink(self, store: ResultStore) -> None:
        """Read another result backend from now on; entries it lacks go at the end of its first pass."""
        with self._scan_lock:
            self.store = store
            self._in_pass, self._next_pass = False, 0.0
            with self._lock:
                self._others.clear()

    def settle(self, timeout: float = 60.0) -> bool:
        """A whole pass now, from the start (tests and scripts). False if it timed out."""
        if self.store is None:
            return True
        deadline = time.monotonic() + timeout
        with self._scan_lock:
            self._read_pending()
            self._start_pass()
            while self._in_pass:
                if time.monotonic() > deadline:
                    return False
                self._step()
        return True

    def _start_pass(self) -> None:
        with self._lock:
            self.pass_number += 1
            self._found = {}
        self._cursor, self._in_pass, self._pass_started = 0, True, time.monotonic()

    def _step(self) -> None:
        assert self.store is not None
        cursor, keys = self.store.client.scan(self._cursor, match=glob_escape(self.store.prefix) + "*", count=SCAN_COUNT)
        self._cursor = int(cursor)
        ids = [i for i in (self.store.task_id(k) for k in keys) if i]
        if ids:
            self._read_heads(ids)
        if self._cursor == 0:
            self._finish_pass()

    def _finish_pass(self) -> None:
        with self._lock:
            current = self.pass_number
            for task_id in [i for i, e in self._entries.items() if e.source == "result" and self._seen.get(i, 0) < current]:
                self._drop(task_id)
            self._found_last = self._found
            self.passes_completed += 1
        self._in_pass = False
        took = time.monotonic() - self._pass_started
        self._next_pass = self._pass_started + max(MIN_PASS_GAP, 2 * took)

    def _read_heads(self, ids: list[str]) -> None:
        assert self.store is not None
        with self.store.client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                key = self.store.key(task_id)
                pipe.getrange(key, 0, HEAD_BYTES - 1)
                pipe.strlen(key)
                pipe.pttl(key)
            replies = pipe.execute(raise_on_error=False)
        now = time.time()
        to_read = []
        with self._lock:
            for n, task_id in enumerate(ids):
                head, size, pttl = replies[3 * n : 3 * n + 3]
                if not isinstance(head, bytes) or not isinstance(size, int) or size == 0 or pttl == -2:
                    continue  # expired since SCAN named it
                expires_at = None if pttl < 0 else now + pttl / 1000
                status = status_from_head(head)
                if status is not None and status != "FAILURE":
                    if task_id in self._entries:
                        self._drop(task_id)  # it ran again and succeeded
                    continue
                if self._unchanged(task_id, size, expires_at):
                    continue
                if size <= MAX_DECODE_BYTES:
                    to_read.append((task_id, size, expires_at))
        self._read_records(to_read)

    def _unchanged(self, task_id: str, size: int, expires_at: float | None) -> bool:
        entry = self._entries.get(task_id)
        if entry is not None and entry.source == "result" and entry.size == size and _same_expiry(entry.expires_at, expires_at):
            self._seen[task_id] = self.pass_number
            self._found[entry.queue] = self._found.get(entry.queue, 0) + 1
            return True
        other = self._others.get(task_id)
        return other is not None and other[0] == size and _same_expiry(other[1], expires_at)

    def _read_records(self, items: list[tuple[str, int, float | None]], scanned: bool = True) -> None:
        """GET and parse results (100 per round trip); ``scanned``: counted for this pass."""
        assert self.store is not None
        for start in range(0, len(items), 100):
            batch = items[start : start + 100]
            values = self.store.read(i for i, _, _ in batch)
            records = {i: parse_record(i, data, max_bytes=MAX_DECODE_BYTES) for i, data in values.items() if data is not None}
            with self._lock:
                for task_id, size, expires_at in batch:
                    data = values.get(task_id)
                    if data is None:
                        continue
                    record = records[task_id]
                    if record is None:
                        if task_id in self._entries:
                            self._drop(task_id)
                        if not data.startswith(b"{") and (task_id in self._others or len(self._others) < MAX_OTHERS):
                            self._others[task_id] = (size, expires_at)
                        continue
                    entry = record_entry(record, size, expires_at, self._entries.get(task_id))
                    self._put(entry)
                    if scanned:  # also those beyond the caps: a capped queue's count is this pass's
                        self._found[entry.queue] = self._found.get(entry.queue, 0) + 1

    def _read_pending(self) -> None:
        """Read, by id, the results of tasks events said failed (O(1) each)."""
        assert self.store is not None
        with self._lock:
            ids = list(self._pending)
            self._pending.clear()
        if not ids:
            return
        with self.store.client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.strlen(self.store.key(task_id))
                pipe.pttl(self.store.key(task_id))
            replies = pipe.execute(raise_on_error=False)
        now = time.time()
        items = []
        for n, task_id in enumerate(ids):
            size, pttl = replies[2 * n], replies[2 * n + 1]
            if isinstance(size, int) and 0 < size <= MAX_DECODE_BYTES and isinstance(pttl, int) and pttl != -2:
                items.append((task_id, size, None if pttl < 0 else now + pttl / 1000))
        self._read_records(items, scanned=False)

    # -- what events and actions tell ------------------------------------------------

    def from_event(self, task_id: str, *, name: str | None, argsrepr: str | None, kwargsrepr: str | None,
                   exception: str | None, hostname: str | None, timestamp: float | None, queue: str | None,
                   root_id: str | None, retries: int | None) -> None:  # fmt: skip
        """A ``task-failed`` event (with what ``task-received``/``task-sent`` said of the task)."""
        error_type, message = split_repr(exception)
        with self._lock:
            known = self._entries.get(task_id)
            if known is not None and known.source == "result":
                if root_id and not known.root_id:
                    self._put(replace(known, root_id=root_id))
                return
            preview = ", ".join(r for r in (argsrepr, kwargsrepr) if r not in (None, "", "()", "{}"))
            self._put(FailedEntry(
                id=task_id, queue=queue or UNKNOWN, function=name, args_preview=_clip(preview, 160) or "",
                error_type=error_type, error_message=_clip(message), failed_at=timestamp or time.time(),
                retries=retries, worker=hostname, source="event",
                refusal=("No result record of this task was found (results disabled, ignored, expired, or not yet "
                         "read): only the event is known, and its argsrepr is truncated text, not the arguments."),
                expires_at=(timestamp or time.time()) + EVENT_TTL, size=-1, root_id=root_id,
            ))  # fmt: skip
            if self.store is not None and len(self._pending) < MAX_PENDING:
                self._pending[task_id] = None

    def update(self, task_id: str, record: Any | None) -> None:
        """A record re-read by a page view or an action: None when it is gone or no failure."""
        with self._lock:
            known = self._entries.get(task_id)
            if record is None:
                if known is not None and known.source == "result":
                    self._drop(task_id)
                return
            self._put(record_entry(record, record.size, known.expires_at if known else None, known))

    def forget(self, ids: list[str]) -> None:
        with self._lock:
            for task_id in ids:
                self._drop(task_id)
                self._pending.pop(task_id, None)

    # -- bookkeeping (under _lock) ------------------------------------------------------

    def _put(self, entry: FailedEntry) -> bool:
        old = self._entries.get(entry.id)
        if old is not None and old.queue != entry.queue:
            self._drop(entry.id)
        if entry.queue not in self._queues and len(self._queues) >= MAX_QUEUES:
            return False
        if entry.id not in self._entries and len(self._entries) >= MAX_ENTRIES:
            self._capped.add(entry.queue)
            return False
        self._others.pop(entry.id, None)
        self._entries[entry.id] = entry
        self._queues.setdefault(entry.queue, {})[entry.id] = entry
        self._ordered.pop(entry.queue, None)
        if entry.source == "result":
            self._seen[entry.id] = self.pass_number
        self.version += 1
        entries = self._queues[entry.queue]
        if len(entries) > MAX_PER_QUEUE * 1.1:  # trim in bulk, not on every insert
            self._capped.add(entry.queue)
            for stale in sorted(entries.values(), key=lambda e: e.order)[MAX_PER_QUEUE:]:
                self._drop(stale.id)
        return True

    def _drop(self, task_id: str) -> None:
        entry = self._entries.pop(task_id, None)
        self._seen.pop(task_id, None)
        if entry is None:
            return
        self.version += 1
        entries = self._queues.get(entry.queue, {})
        entries.pop(task_id, None)
        self._ordered.pop(entry.queue, None)
        if not entries:
            self._queues.pop(entry.queue, None)
            self._capped.discard(entry.queue)

    def _live(self, queue: str) -> list[FailedEntry]:
        ordered = self._ordered.get(queue)
        if ordered is None:
            ordered = self._ordered[queue] = sorted(self._queues.get(queue, {}).values(), key=lambda e: e.order)
        now = time.time()
        expired = [e.id for e in ordered if e.expires_at is not None and e.expires_at <= now]
        if expired:
            for task_id in expired:
                self._drop(task_id)
            return self._live(queue)
        return ordered

    # -- reading (any thread) -----------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.store is None or self.passes_completed > 0

    def queue_names(self) -> list[str]:
        with self._lock:
            return sorted(self._queues)

    def count(self, queue: str) -> tuple[int, bool]:
        """(failures of ``queue``, whether that is an estimate beyond the entries held)."""
        with self._lock:
            held = len(self._live(queue))
            if queue in self._capped:
                return max(held, self._found_last.get(queue, 0)), True
            return held, False

    def window(self, queue: str, after: tuple[int, str] | None, limit: int) -> tuple[list[FailedEntry], int, int]:
        """(up to ``limit`` entries after position ``after``, the first one's rank, the total)."""
        with self._lock:
            entries = self._live(queue)
        start = 0 if after is None else bisect.bisect_right([e.order for e in entries], after)
        return entries[start : start + limit], start, len(entries)

    def entry(self, task_id: str) -> FailedEntry | None:
        with self._lock:
            return self._entries.get(task_id)

    def ids(self, queue: str) -> list[str]:
        with self._lock:
            return [e.id for e in self._live(queue)]

    # -- persistence ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The newest ``DUMP_LIMIT`` entries, JSON-safe."""
        with self._lock:
            newest = sorted(self._entries.values(), key=lambda e: e.order)[:DUMP_LIMIT]
            return {"version": 1, "entries": [list(astuple(e)) for e in newest]}

    def load(self, data: dict[str, Any]) -> None:
        """Entries from ``dump``: shown at once, until a pass finds their records gone."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return
        width = len(FailedEntry.__dataclass_fields__)
        with self._lock:
            for row in data.get("entries") or ():
                if isinstance(row, list) and len(row) == width and isinstance(row[0], str) and isinstance(row[1], str):
                    if row[0] not in self._entries:
                        self._put(FailedEntry(*row))
                        if self.store is not None and row[9] == "event" and len(self._pending) < MAX_PENDING:
                            self._pending[row[0]] = None


def _same_expiry(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old is new
    return abs(old - new) < 2.0  # PTTLs measured a round trip apart
