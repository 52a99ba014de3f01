"""Arq's failed jobs and queue names, found by a budgeted background scan.

Arq has no failed registry: a failed job is only its result ``arq:result:ID``
(success flag false) until ``keep_result`` expires it, and a queue is only a
zset or a ``<queue>:health-check`` key. ``ArqFailures`` finds both with an
incremental SCAN run by the sampler (``maintain``), never on a page view, and
keeps what it found in memory (the bookkeeping is ``failure_index``'s):

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

import time
from dataclasses import dataclass

import redis

from queuewatch.adapters.base import FailedJob
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.failure_index import FailureIndex, expiry

from .records import ArqRecord, attempts, describe_error, ms_time, parse_health, read_record, unix_time

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
INDEX_MESSAGE_LIMIT = 500  # characters of a message kept per entry; the job page reads it whole


@dataclass(frozen=True)
class ArqFailure:
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

    def row(self) -> FailedJob:
        """The failed-list row."""
        return FailedJob(id=self.id, function=self.function, args_preview=self.args_preview, error_type=self.error_type,
                         error_message=self.error_message, failed_at=ms_time(self.finished_ms), attempts=self.attempts,
                         started_at=ms_time(self.started_ms), expires_at=unix_time(self.expires_at))  # fmt: skip


def entry_for(job_id: str, record: ArqRecord, expires_at: float | None) -> ArqFailure:
    """What the index keeps of a failed result."""
    error_type, message = describe_error(record.result)
    if message is not None and len(message) > INDEX_MESSAGE_LIMIT:
        message = message[: INDEX_MESSAGE_LIMIT - 1] + "…"
    return ArqFailure(
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


class ArqFailures(FailureIndex[ArqFailure]):
    """Failed Arq results and queue names on one Redis database, kept by ``maintain``."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(max_per_queue=MAX_PER_QUEUE, max_queues=MAX_QUEUES, max_others=MAX_REMEMBERED)
        self.client = client
        self._queues_now: set[str] = set()
        self._queue_names: set[str] = set()
        self._cursors = dict.fromkeys(SCANS, 0)
        self._done = dict.fromkeys(SCANS, True)
        self.zset_scan = True  # False on Redis < 6 (no SCAN TYPE): queues come from workers and results only
        # Results found for the first time, per queue, since this index started: exact per-queue
        # counters for the throughput charts (arq itself counts only per worker, in an hourly report).
        # Counted once per result (a result already read is not read again while it lasts); what
        # the first pass finds is the past, not throughput, so ``totals`` answers only after it.
        self._done_total: dict[str, int] = {}
        self._failed_total: dict[str, int] = {}
        self._totals_exact = True  # False once a result could not be remembered (it would be counted again)
        self._ran_until: dict[str, float] = {}  # queue -> when its newest successful result expires
        # Cron jobs, as far as arq records them: only their runs' results (id cron:NAME:SCHEDULED_MS).
        self._cron: dict[tuple[str, str], CronRuns] = {}

    # -- scanning (sampler thread) -------------------------------------------------

    def _begin(self) -> None:
        self._cursors = dict.fromkeys(SCANS, 0)
        self._done = {name: name == "zsets" and not self.zset_scan for name in SCANS}
        self._queues_now = set()

    def _ended(self) -> None:
        now = time.time()
        self._ran_until = {q: until for q, until in self._ran_until.items() if until > now}
        self._queue_names = self._queues_now | set(self._ran_until)

    def _step(self) -> bool:
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
        return all(self._done.values())

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
                    entry = self._entries.get(job_id)
                    if entry is not None:
                        self._queues_now.add(entry.queue)
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

    def _record(self, job_id: str, record: ArqRecord, size: int, expires_at: float | None, scanned: bool = True) -> None:
        if record.is_result and record.queue and (record.function or "").startswith("cron:"):
            self._learn_cron(job_id, record)
        if not record.failed:
            new = job_id not in self._others
            self._remember_other(job_id, size, expires_at)
            if record.is_result and record.queue is not None:
                if job_id not in self._others:
                    self._totals_exact = False
                elif new:
                    self._done_total[record.queue] = self._done_total.get(record.queue, 0) + 1
                # A queue that ran jobs within keep_result is a queue, until its last result expires.
                if record.queue in self._ran_until or len(self._ran_until) < MAX_QUEUES:
                    until = float("inf") if expires_at is None else expires_at
                    self._ran_until[record.queue] = max(until, self._ran_until.get(record.queue, 0.0))
            return
        new = job_id not in self._entries
        entry = entry_for(job_id, record, expires_at)
        if not self._put(entry):  # one queue too many: not kept
            self._totals_exact = False
            return
        if new:
            self._done_total[entry.queue] = self._done_total.get(entry.queue, 0) + 1
            self._failed_total[entry.queue] = self._failed_total.get(entry.queue, 0) + 1
        if scanned:  # counted once per pass, by the scan
            self._count_found(entry.queue)
        self._queues_now.add(entry.queue)

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

    def _learn_cron(self, job_id: str, record: ArqRecord) -> None:
        name = record.function or ""
        prefix, _, stamp = job_id.rpartition(":")
        scheduled = int(stamp) if prefix == name and stamp.isdigit() else record.enqueued_ms
        key = (record.queue or "", name)
        runs = self._cron.get(key)
        if runs is None:
            if len(self._cron) >= MAX_CRON_JOBS:
                return
            runs = self._cron[key] = CronRuns()
        runs.add(scheduled, record)

    def cron_runs(self) -> dict[tuple[str, str], CronRuns]:
        """(queue, cron job name) -> what its results say of its runs (a copy)."""
        with self._lock:
            return {key: runs.copy() for key, runs in self._cron.items()}

    def totals(self, queue: str) -> tuple[int | None, int | None]:
        """(jobs done, jobs failed) of ``queue`` since this index started, counted from the results
        arq keeps; (None, None) until a whole pass has been read, or when a cap made counts unsure."""
        with self._lock:
            if not self.passes_completed or not self._totals_exact or queue in self._capped:
                return None, None
            return self._done_total.get(queue, 0), self._failed_total.get(queue, 0)

    def queue_names(self) -> set[str]:
        """Queues found by the scan: with failures, a worker's report, or jobs."""
        with self._lock:
            return self._queue_names | self._queues_now | set(self._queues)

    # -- what page views and actions learn -----------------------------------------

    def update(self, job_id: str, record: ArqRecord | None, size: int = 0, expires_at: float | None = None) -> None:
        """A result re-read outside the scan: ``None`` when it is gone."""
        with self._lock:
            if record is None:
                self._drop(job_id)
            else:
                self._record(job_id, record, size, expires_at, scanned=False)


MAX_CRON_JOBS = 1_000
CRON_RUNS_KEPT = 8


class CronRuns:
    """The latest runs of one arq cron job: (scheduled ms, finished ms, success), newest first."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int | None, bool | None]] = []
        self.seen = 0

    def add(self, scheduled: int | None, record: ArqRecord) -> None:
        if scheduled is None or any(s == scheduled for s, _, _ in self.runs):
            return
        self.seen += 1
        self.runs = sorted(self.runs + [(scheduled, record.finished_ms, record.success)], reverse=True)[:CRON_RUNS_KEPT]

    def copy(self) -> CronRuns:
        other = CronRuns()
        other.runs, other.seen = list(self.runs), self.seen
        return other

    def interval_ms(self) -> int | None:
        """The smallest gap between consecutive scheduled runs seen (arq's schedule is in the worker's code)."""
        gaps = [a - b for (a, _, _), (b, _, _) in zip(self.runs, self.runs[1:]) if a > b]
        return min(gaps) if gaps else None


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
