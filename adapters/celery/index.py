"""Celery's failed tasks, indexed by queue, kept up to date by the sampler.

Celery has no failed registry: a failure is a ``celery-task-meta-ID`` result
(status FAILURE) until ``result_expires``, and a ``task-failed`` event.
``CeleryFailures`` learns both (the bookkeeping is ``failure_index``'s) without ``KEYS`` and without a SCAN per page view:

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

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import astuple, dataclass, replace
from typing import Any

from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.failure_index import FailureIndex, expiry

from .finished import STATE_OF_STATUS, DoneIndex
from .results import HEAD_BYTES, ResultStore, glob_escape, parse_record, split_repr, status_from_head

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
DUMP_LIMIT = 5_000  # entries written by dump(): the newest


@dataclass(frozen=True)
class CeleryFailure:
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


def record_entry(record: Any, size: int, expires_at: float | None, known: CeleryFailure | None) -> CeleryFailure:
    """The entry for a FAILURE record, keeping what events told about it."""
    if record.args is not None and record.kwargs is not None:
        preview = args_preview(record.args, record.kwargs)
    else:
        preview = known.args_preview if known else (record.error or "")
    return CeleryFailure(
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


class CeleryFailures(FailureIndex[CeleryFailure]):
    """Failed Celery tasks of one result backend, by queue."""

    def __init__(self, store: ResultStore | None) -> None:
        super().__init__(max_per_queue=MAX_PER_QUEUE, max_queues=MAX_QUEUES, max_entries=MAX_ENTRIES, max_others=MAX_OTHERS)
        self.store = store
        self._pending: OrderedDict[str, None] = OrderedDict()  # ids to read (from events)
        self._cursor = 0
        # SUCCESS and REVOKED records the same scan meets, by queue (``finished``).
        self.done = {status: DoneIndex(status) for status in STATE_OF_STATUS}

    def _start_pass(self) -> None:
        super()._start_pass()
        for index in self.done.values():
            index._start_pass()

    def _finish_pass(self) -> None:
        super()._finish_pass()
        for index in self.done.values():
            index._finish_pass()

    # -- the sampler's upkeep ----------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Read the ids events named, then advance the scan until the budget is spent."""
        if self.store is not None:
            super().maintain(budget_seconds)

    def settle(self, timeout: float = 60.0) -> bool:
        return True if self.store is None else super().settle(timeout)

    def relink(self, store: ResultStore) -> None:
        """Read another result backend from now on; entries it lacks go at the end of its first pass."""
        with self._scan_lock:
            self.store = store
            self._in_pass, self._next_pass = False, 0.0
            with self._lock:
                self._others.clear()

    def _scanned(self, entry: CeleryFailure) -> bool:
        return entry.source == "result"

    def _begin(self) -> None:
        self._cursor = 0

    def _before_scan(self) -> None:
        self._read_pending()

    def _step(self) -> bool:
        assert self.store is not None
        cursor, keys = self.store.client.scan(self._cursor, match=glob_escape(self.store.prefix) + "*", count=SCAN_COUNT)
        self._cursor = int(cursor)
        ids = [i for i in (self.store.task_id(k) for k in keys) if i]
        if ids:
            self._read_heads(ids)
        return self._cursor == 0

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
        done_reads: list[tuple[str, str, int, float | None]] = []
        with self._lock:
            for n, task_id in enumerate(ids):
                head, size, pttl = replies[3 * n : 3 * n + 3]
                if not isinstance(head, bytes) or not isinstance(size, int) or size == 0 or pttl == -2:
                    continue  # expired since SCAN named it
                expires_at = expiry(pttl, now)
                status = status_from_head(head)
                if status is not None and status != "FAILURE":
                    if task_id in self._entries:
                        self._drop(task_id)  # it ran again and succeeded
                    done = self.done.get(status)
                    if done is not None and done.wants(task_id, size, expires_at):
                        done_reads.append((task_id, status, size, expires_at))
                    continue
                if self._unchanged(task_id, size, expires_at):
                    continue
                if size <= MAX_DECODE_BYTES:
                    to_read.append((task_id, size, expires_at))
        self._read_records(to_read)
        self._read_done(done_reads)

    def _read_done(self, items: list[tuple[str, str, int, float | None]]) -> None:
        """GET the SUCCESS/REVOKED records met (100 per round trip) for the finished lists."""
        assert self.store is not None
        for start in range(0, len(items), 100):
            batch = items[start : start + 100]
            values = self.store.read(i for i, _, _, _ in batch)
            for task_id, status, size, expires_at in batch:
                data = values.get(task_id)
                if data is not None:
                    self.done[status].found(task_id, data, size, expires_at)

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
                        if not data.startswith(b"{"):  # not JSON: remembered, so not read again
                            self._remember_other(task_id, size, expires_at)
                        continue
                    entry = record_entry(record, size, expires_at, self._entries.get(task_id))
                    self._put(entry)
                    if scanned:  # also those beyond the caps: a capped queue's count is this pass's
                        self._count_found(entry.queue)

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
                items.append((task_id, size, expiry(pttl, now)))
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
            self._put(CeleryFailure(
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

    def forget(self, ids: Sequence[str]) -> None:
        super().forget(ids)
        with self._lock:
            for task_id in ids:
                self._pending.pop(task_id, None)

    # -- reading (any thread) -----------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.store is None or self.passes_completed > 0

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
        width = len(CeleryFailure.__dataclass_fields__)
        with self._lock:
            for row in data.get("entries") or ():
                if isinstance(row, list) and len(row) == width and isinstance(row[0], str) and isinstance(row[1], str):
                    if row[0] not in self._entries:
                        self._put(CeleryFailure(*row))
                        if self.store is not None and row[9] == "event" and len(self._pending) < MAX_PENDING:
                            self._pending[row[0]] = None
