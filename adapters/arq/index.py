"""Arq's failed jobs and queue names, found by a budgeted background scan.

Arq has no failed registry: a failed job is only its result ``arq:result:ID``
(success flag false) until ``keep_result`` expires it, and a queue is only a
zset or a ``<queue>:health-check`` key. ``FailedIndex`` finds both with an
incremental SCAN run by the sampler (``maintain``), never on a page view, and
keeps what it found in memory:

- Three cursors advance together, one pipelined round trip per step of COUNT
  500: ``MATCH arq:result:*``, ``MATCH *:health-check`` (a queue with a worker)
  and ``TYPE zset`` (a queue, when its first member has an arq job, in-progress,
  retry or result key). A pass ends when all three cursors are back at 0.
- A result key costs STRLEN + PTTL per pass; it is read (GET, decoded by
  ``payload.decode``) only when new or when its size or expiry changed, so
  each result is decoded once, not once per pass.
- A pass starts at most every 5 s, and no sooner than twice the last pass's
  duration after it started: scanning takes at most half of the time.
- Memory is bounded: 10,000 failed results per queue (the newest by finish
  time; beyond that the count is the last full pass's and approximate, and
  the results not kept are read again each pass, to take the place of listed
  ones that go), 1,000 queue names, 200,000 remembered results that are not
  failures, clipped messages and previews. Results over 8 MiB are not decoded.
- "Requeue all" and "delete all" act on the failed results the index holds.
- Entries go when their expiry passes, when a pass ends without seeing them, or
  when a page view or an action finds them gone.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

import redis

from .records import ArqRecord, attempts, describe_error, parse_health, read_record
from queuewatch.adapters.decoding.payload import args_preview

DEFAULT_QUEUE = "arq:queue"
RESULT_PREFIX = "arq:result:"
HEALTH_SUFFIX = ":health-check"
ABORT_KEY = b"arq:abort"
JOB_KEY_PREFIXES = ("arq:job:", "arq:in-progress:", "arq:retry:", RESULT_PREFIX)
SCAN_COUNT = 500
SCANS = {"results": {"match": RESULT_PREFIX + "*"}, "health": {"match": "*" + HEALTH_SUFFIX}, "zsets": {"_type": "zset"}}
MAX_PER_QUEUE = 10_000
MAX_QUEUES = 1_000
MAX_REMEMBERED = 200_000
MAX_DECODE_BYTES = 8 * 1024 * 1024
READ_BYTES_PER_ROUND_TRIP = 4 * 1024 * 1024
MIN_PASS_GAP = 5.0
INDEX_MESSAGE_LIMIT = 500  # characters of a message kept per entry; the job page reads it whole


@dataclass(frozen=True)
class FailedEntry:
    """One failed result as the index keeps it."""

    id: str
    queue: str
    queue_recorded: bool  # False: the record names no queue (older arq); listed under arq:queue
    function: str | None
    args_preview: str
    error_type: str | None
    error_message: str | None
    attempts: int | None
    started_ms: int | None
    finished_ms: int | None
    expires_at: float | None  # unix time; None: kept forever
    size: int
    encoding: str

    @property
    def order(self) -> tuple[int, str]:
        """Newest first, ties by id: the order pages are cut in."""
        return (-(self.finished_ms or 0), self.id)


def entry_for(job_id: str, record: ArqRecord, expires_at: float | None) -> FailedEntry:
    """What the index keeps of a failed result."""
    error_type, message = describe_error(record.result)
    if message is not None and len(message) > INDEX_MESSAGE_LIMIT:
        message = message[: INDEX_MESSAGE_LIMIT - 1] + "…"
    return FailedEntry(
        id=job_id,
        queue=record.queue or DEFAULT_QUEUE,
        queue_recorded=record.queue is not None,
        function=record.function,
        args_preview=args_preview(record.args, record.kwargs),
        error_type=error_type,
        error_message=message,
        attempts=attempts(record, error_type, message),
        started_ms=record.started_ms,
        finished_ms=record.finished_ms,
        expires_at=expires_at,
        size=record.size,
        encoding=record.encoding,
    )


def expiry(pttl: int, now: float) -> float | None:
    """A key's expiry as unix time from its PTTL (-1: none)."""
    return None if pttl < 0 else now + pttl / 1000


class FailedIndex:
    """Failed Arq results and queue names on one Redis database, kept by ``maintain``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._lock = threading.Lock()  # the data below; never held during Redis I/O
        self._scan_lock = threading.Lock()  # one scan at a time (sampler, settle)
        self._entries: dict[str, dict[str, FailedEntry]] = {}  # queue -> id -> entry
        self._where: dict[str, str] = {}  # id -> queue
        self._seen: dict[str, int] = {}  # id -> the pass that last saw it
        self._others: dict[str, tuple[int, float | None, int]] = {}  # id -> (size, expiry, pass) of non-failures
        self._ordered: dict[str, list[FailedEntry]] = {}  # queue -> entries newest first (cache)
        self._capped: set[str] = set()
        self._found: dict[str, int] = {}  # failed results seen per queue in this pass
        self._found_last: dict[str, int] = {}
        self._queues_now: set[str] = set()
        self._queues: set[str] = set()
        self._cursors = dict.fromkeys(SCANS, 0)
        self._done = dict.fromkeys(SCANS, True)
        self.zset_scan = True  # False on Redis < 6 (no SCAN TYPE): queues come from workers and results only
        self.pass_number = 0
        self.passes_completed = 0
        self._pass_started = 0.0
        self._next_pass = 0.0

    # -- scanning (sampler thread) -------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Advance the scan (at least one step) until the budget is spent or the pass ends.
        Between passes, wait until the next one is due."""
        deadline = time.monotonic() + budget_seconds
        with self._scan_lock:
            while True:
                if all(self._done.values()):
                    if time.monotonic() < self._next_pass:
                        return
                    self._start_pass()
                self._step()
                if all(self._done.values()):
                    self._finish_pass()
                    return
                if time.monotonic() >= deadline:
                    return

    def settle(self, timeout: float = 60.0) -> bool:
        """Run a whole pass now, from the start, so everything present now is indexed.
        For tests and scripts; the sampler uses ``maintain``. False if it timed out."""
        deadline = time.monotonic() + timeout
        with self._scan_lock:
            self._start_pass()
            while not all(self._done.values()):
                if time.monotonic() > deadline:
                    return False
                self._step()
            self._finish_pass()
        return True

    def _start_pass(self) -> None:
        with self._lock:
            self.pass_number += 1
            self._cursors = dict.fromkeys(SCANS, 0)
            self._done = {name: name == "zsets" and not self.zset_scan for name in SCANS}
            self._found = {}
            self._queues_now = set()
        self._pass_started = time.monotonic()

    def _finish_pass(self) -> None:
        with self._lock:
            current = self.pass_number
            for job_id in [i for i, seen in self._seen.items() if seen < current]:
                self._drop(job_id)
            self._others = {i: v for i, v in self._others.items() if v[2] >= current}
            self._found_last = self._found
            self._capped = {q for q in self._capped if self._found.get(q, 0) > MAX_PER_QUEUE}
            self._queues = set(self._queues_now)
            self.passes_completed += 1
        took = time.monotonic() - self._pass_started
        self._next_pass = self._pass_started + max(MIN_PASS_GAP, 2 * took)

    def _step(self) -> None:
        active = [name for name, done in self._done.items() if not done]
        with self.client.pipeline(transaction=False) as pipe:
            for name in active:
                pipe.scan(self._cursors[name], count=SCAN_COUNT, **SCANS[name])
            replies = pipe.execute(raise_on_error=False)
        found: dict[str, list[bytes]] = {name: [] for name in SCANS}
        for name, reply in zip(active, replies):
            if isinstance(reply, redis.exceptions.ResponseError) and name == "zsets":
                self.zset_scan = False  # SCAN ... TYPE needs Redis 6
                self._done[name] = True
                continue
            if isinstance(reply, Exception):
                raise reply
            cursor, keys = reply
            self._cursors[name] = int(cursor)
            self._done[name] = int(cursor) == 0
            found[name] = keys
        self._read_results(found["results"])
        self._learn_queues(found["health"], found["zsets"])

    def _read_results(self, keys: list[bytes]) -> None:
        ids = []
        for key in keys:
            try:
                ids.append(key.decode("utf-8").removeprefix(RESULT_PREFIX))
            except UnicodeDecodeError:  # arq writes str ids: not one of its keys
                continue
        if not ids:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.strlen(RESULT_PREFIX + job_id)
                pipe.pttl(RESULT_PREFIX + job_id)
            sizes = pipe.execute(raise_on_error=False)
        now = time.time()
        to_read = []
        with self._lock:
            for n, job_id in enumerate(ids):
                size, pttl = sizes[2 * n], sizes[2 * n + 1]
                if not (type(size) is int and type(pttl) is int) or pttl == -2 or size == 0:
                    continue  # expired since SCAN named it, or not a string: not arq's
                expires_at = expiry(pttl, now)
                if self._unchanged(job_id, size, expires_at):
                    continue
                if size > MAX_DECODE_BYTES:
                    self._remember_other(job_id, size, expires_at)
                else:
                    to_read.append((job_id, size, expires_at))
        for batch in _batches(to_read):
            with self.client.pipeline(transaction=False) as pipe:
                for job_id, _, _ in batch:
                    pipe.get(RESULT_PREFIX + job_id)
                values = pipe.execute(raise_on_error=False)
            with self._lock:
                for (job_id, size, expires_at), data in zip(batch, values):
                    if isinstance(data, bytes):
                        self._record(job_id, read_record(data, max_bytes=MAX_DECODE_BYTES), size, expires_at)

    def _unchanged(self, job_id: str, size: int, expires_at: float | None) -> bool:
        """Whether a result is the one read before (same size, same expiry); marks it seen."""
        queue = self._where.get(job_id)
        if queue is not None:
            entry = self._entries[queue][job_id]
            if entry.size == size and same_expiry(entry.expires_at, expires_at):
                self._seen[job_id] = self.pass_number
                self._found[queue] = self._found.get(queue, 0) + 1
                self._queues_now.add(queue)
                return True
            return False
        other = self._others.get(job_id)
        if other is not None and other[0] == size and same_expiry(other[1], expires_at):
            self._others[job_id] = (size, expires_at, self.pass_number)
            return True
        return False

    def _record(self, job_id: str, record: ArqRecord, size: int, expires_at: float | None, scanned: bool = True) -> None:
        if not record.failed:
            self._drop(job_id)
            self._remember_other(job_id, size, expires_at)
            return
        entry = entry_for(job_id, record, expires_at)
        self._put(entry)
        if entry.queue not in self._entries:  # one queue too many: not kept
            return
        if scanned:  # counted once per pass, by the scan
            self._found[entry.queue] = self._found.get(entry.queue, 0) + 1
        self._queues_now.add(entry.queue)

    def _remember_other(self, job_id: str, size: int, expires_at: float | None) -> None:
        if job_id in self._others or len(self._others) < MAX_REMEMBERED:
            self._others[job_id] = (size, expires_at, self.pass_number)

    def _put(self, entry: FailedEntry) -> None:
        if self._where.get(entry.id, entry.queue) != entry.queue:
            self._drop(entry.id)
        if entry.queue not in self._entries and len(self._entries) >= MAX_QUEUES:
            return
        self._others.pop(entry.id, None)
        entries = self._entries.setdefault(entry.queue, {})
        entries[entry.id] = entry
        self._where[entry.id] = entry.queue
        self._seen[entry.id] = self.pass_number
        self._ordered.pop(entry.queue, None)
        if len(entries) > MAX_PER_QUEUE * 1.1:  # trim in bulk, not on every insert
            self._capped.add(entry.queue)
            for old in sorted(entries.values(), key=lambda e: e.order)[MAX_PER_QUEUE:]:
                self._drop(old.id)

    def _drop(self, job_id: str) -> None:
        queue = self._where.pop(job_id, None)
        self._seen.pop(job_id, None)
        if queue is not None:
            entries = self._entries[queue]
            entries.pop(job_id, None)
            self._ordered.pop(queue, None)
            if not entries:
                del self._entries[queue]
                self._capped.discard(queue)

    def _learn_queues(self, health_keys: list[bytes], zset_keys: list[bytes]) -> None:
        candidates = [k for k in zset_keys if k != ABORT_KEY]
        if not health_keys and not candidates:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key in health_keys:
                pipe.get(key)
            for key in candidates:
                pipe.zrange(key, 0, 0)
            replies = pipe.execute(raise_on_error=False)
        names = [_name(key[: -len(HEALTH_SUFFIX)]) for key, value in zip(health_keys, replies)
                 if parse_health(_bytes(value), None)]  # fmt: skip
        heads = [(key, value[0]) for key, value in zip(candidates, replies[len(health_keys) :])
                 if isinstance(value, list) and value]  # fmt: skip
        if heads:  # a zset is an arq queue if its first member has an arq job, in-progress, retry or result key
            with self.client.pipeline(transaction=False) as pipe:
                for _, member in heads:
                    pipe.exists(*(prefix.encode() + member for prefix in JOB_KEY_PREFIXES))
                found = pipe.execute(raise_on_error=False)
            names += [_name(key) for (key, _), exists in zip(heads, found) if type(exists) is int and exists > 0]
        with self._lock:
            for name in names:
                if name is not None and (name in self._queues_now or len(self._queues_now) < MAX_QUEUES):
                    self._queues_now.add(name)

    # -- reading (any thread) -------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether a whole pass has run: before that, counts are partial."""
        return self.passes_completed > 0

    def queue_names(self) -> set[str]:
        with self._lock:
            return self._queues | self._queues_now | set(self._entries)

    def count(self, queue: str) -> tuple[int, bool]:
        """(failed results of ``queue``, whether that is an estimate beyond the entries held)."""
        with self._lock:
            held = len(self._live(queue))
            if queue in self._capped:
                return max(held, self._found_last.get(queue, 0)), True
            return held, False

    def ordered(self, queue: str) -> list[FailedEntry]:
        """The queue's entries newest first (expired ones dropped)."""
        with self._lock:
            return self._live(queue)

    def window(self, queue: str, after: tuple[int, str] | None, limit: int) -> tuple[list[FailedEntry], int, int]:
        """(up to ``limit`` entries after the ``after`` position, the first one's rank, the total)."""
        entries = self.ordered(queue)
        start = 0 if after is None else bisect.bisect_right([e.order for e in entries], after)
        return entries[start : start + limit], start, len(entries)

    def entry(self, job_id: str) -> FailedEntry | None:
        with self._lock:
            queue = self._where.get(job_id)
            return None if queue is None else self._entries[queue].get(job_id)

    def ids(self, queue: str) -> list[str]:
        return [e.id for e in self.ordered(queue)]

    def _live(self, queue: str) -> list[FailedEntry]:
        ordered = self._ordered.get(queue)
        if ordered is None:
            ordered = self._ordered[queue] = sorted(self._entries.get(queue, {}).values(), key=lambda e: e.order)
        now = time.time()
        if any(e.expires_at is not None and e.expires_at <= now for e in ordered):
            for e in [e for e in ordered if e.expires_at is not None and e.expires_at <= now]:
                self._drop(e.id)
            return self._live(queue)
        return ordered

    # -- what page views and actions learn -----------------------------------------

    def update(self, job_id: str, record: ArqRecord | None, size: int = 0, expires_at: float | None = None) -> None:
        """A result re-read outside the scan: ``None`` when it is gone."""
        with self._lock:
            if record is None:
                self._drop(job_id)
            else:
                self._record(job_id, record, size, expires_at, scanned=False)

    def forget(self, ids: list[str]) -> None:
        with self._lock:
            for job_id in ids:
                self._drop(job_id)
                self._others.pop(job_id, None)


def same_expiry(old: float | None, new: float | None) -> bool:
    """Whether two expiries measured from PTTLs are the same one."""
    if old is None or new is None:
        return old is new
    return abs(old - new) < 2.0  # PTTL is measured a round trip apart: allow for that


def _batches(items: list[tuple[str, int, float | None]]) -> list[list[tuple[str, int, float | None]]]:
    batches: list[list[tuple[str, int, float | None]]] = [[]]
    size = 0
    for item in items:
        if batches[-1] and size + item[1] > READ_BYTES_PER_ROUND_TRIP:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item[1]
    return [b for b in batches if b]


def _bytes(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _name(key: bytes) -> str | None:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None
