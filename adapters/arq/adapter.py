"""Arq (0.2x; asyncio, Redis only) read and moved through its own keys, never ``import arq``.

Keys: a queue is a zset (``arq:queue`` by default, any name) of job ids scored
by run-at time in ms; ``arq:job:ID`` the job record ``{t,f,a,k,et}``;
``arq:in-progress:ID`` while a worker runs it; ``arq:retry:ID`` its try counter;
``arq:result:ID`` the result record, kept ``keep_result`` seconds;
``<queue>:health-check`` a worker's report (see ``records.HealthReport``).

Counts, for every queue in one round trip (``counts.lua``, read-only):
ready = ZCOUNT up to now, deferred = the rest. A running job stays in its zset,
and arq keeps no per-queue set of running jobs, so the script checks the
in-progress keys of the 1,000 lowest-scored ready jobs: workers take ready jobs
lowest score first, so that is where the running ones are. In progress is that
count, waiting (depth) is ready minus it, and the oldest waiting age is that of
the first ready job not running. With more than 1,000 ready jobs a note says
the count covers only those. The health report's ``j_ongoing`` is not used as
the count: it can be an interval (an hour by default) old and is only the
latest worker's.

Failed jobs exist only as results; ``index.ArqFailures`` finds them in the
background (``maintain``). Requeue rebuilds the job record from the result's
own bytes (``jobs``) and, per chunk, in one WATCH/MULTI transaction deletes
the result, retry and in-progress keys, writes the job with try 1 (the worker
INCRs the deleted retry key to 1, so ``max_tries`` starts over) and ZADDs it
to its queue to run now. Delete is the same transaction deleting the results.
Purge (``purge.lua``) removes ready jobs in chunks, never running ones.

Workers: arq records no per-worker identity; all workers of a queue rewrite one
``<queue>:health-check`` report, so ``workers()`` shows one worker per queue,
alive while the report is fresh, and for an hour as dead once it is gone.
Queues: the default one, those given as ``queues=``, and those the scan finds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import redis

from queuewatch.adapters.base import (ALL, ActionResult, Adapter, FailedJob, JobDetail, Page, QueueStats, Selection, Tally,
                                      Worker, chunks, unique)  # fmt: skip
from queuewatch.adapters.errors import BackendUnavailable, NotFound, Unsupported
from queuewatch.adapters.failure_index import expiry, failed_page, same_expiry
from queuewatch.adapters.redis_errors import redis_errors

from .control import ArqControl
from .periodic import ArqPeriodic
from .index import DEFAULT_QUEUE, HEALTH_SUFFIX, JOB_KEY_PREFIXES, RESULT_PREFIX, ArqFailure, ArqFailures
from .jobs import job_record
from .records import HealthReport, job_detail, ms_time, parse_health, read_record, report_details, report_notes
from .states import ArqJobStates
from .timings import ArqTimings

JOB_PREFIX = "arq:job:"
IN_PROGRESS_PREFIX = "arq:in-progress:"
RETRY_PREFIX = "arq:retry:"
ABORT_KEY = "arq:abort"
HEAD = 1_000  # ready jobs whose in-progress keys are checked per queue
CHUNK = 200  # results per requeue/delete transaction
PURGE_CHUNK = 1_000
JOB_EXPIRES_MS = 86_400_000  # what arq's enqueue_job gives a job: a day (expires_extra_ms)
DEAD_WORKER_MEMORY = 3600.0  # seconds a worker whose report vanished is still shown, as dead

_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("counts", "purge")}


class ArqAdapter(ArqPeriodic, ArqTimings, ArqControl, ArqJobStates, Adapter):
    """Arq on one Redis database."""

    system = "arq"
    label = "Arq"

    def __init__(self, *, backend: str, client: redis.Redis, queues: Sequence[str] = ()) -> None:
        super().__init__(backend=backend)
        self.client = client
        self.configured = tuple(queues)
        self.index = ArqFailures(client)
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._reports: dict[str, tuple[HealthReport, float]] = {}  # last report per queue, and when seen
        self._reports_lock = threading.Lock()

    @classmethod
    def detect(cls, client: redis.Redis) -> bool:
        """Arq is here if its default queue or worker report exists (custom queue names
        are found by the backend's survey: ``recognizes``)."""
        return bool(client.exists(DEFAULT_QUEUE, DEFAULT_QUEUE + HEALTH_SUFFIX))

    @classmethod
    def recognizes(cls, key: bytes) -> bool:
        return key.startswith(b"arq:") or key.endswith(HEALTH_SUFFIX.encode())

    # -- background ------------------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Advance the scan for failed results and queue names (the sampler's tick)."""
        with redis_errors():
            self.index.maintain(budget_seconds)

    def settle(self, timeout: float = 60.0) -> bool:
        """Scan everything now (tests, scripts): what exists now is then indexed."""
        with redis_errors():
            return self.index.settle(timeout)

    # -- reads -----------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def workers(self) -> list[Worker]:
        return self.overview()[1]

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        """Every known queue's counts and worker report in one round trip."""
        with self._reports_lock:  # read again the queues whose worker reported, to see it go
            reported = set(self._reports)
        names = sorted(set(self.configured) | self.index.queue_names() | reported | {DEFAULT_QUEUE})
        now = time.time()
        with redis_errors():
            stats = self._read_queues(names, now)
        shown = [s for s in stats if s.name != DEFAULT_QUEUE or s.name in self.configured or _anything(s)]
        return shown, self._workers(now)

    def queue(self, name: str) -> QueueStats:
        with redis_errors():
            [stats] = self._read_queues([name], time.time())
            known = name in self.configured or name in self.index.queue_names() or name in self._reports or bool(
                stats.failed or stats.details[2:]
            )
            if not known and _anything(stats):  # a zset, but is it arq's? Its first job says.
                head = self.client.zrange(name, 0, 0)
                known = bool(head) and self.client.exists(*(p.encode() + head[0] for p in JOB_KEY_PREFIXES)) > 0
        if not known:
            raise NotFound(f"no Arq queue named {name!r}")
        return stats

    def _read_queues(self, names: list[str], now: float) -> list[QueueStats]:
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                self._scripts["counts"](keys=[name], args=[int(now * 1000), HEAD, IN_PROGRESS_PREFIX], client=pipe)
                pipe.get(name + HEALTH_SUFFIX)
                pipe.pttl(name + HEALTH_SUFFIX)
            replies = pipe.execute(raise_on_error=False)
        stats = []
        for i, name in enumerate(names):
            counts, raw, pttl = replies[3 * i : 3 * i + 3]
            report = parse_health(raw if isinstance(raw, bytes) else None, pttl if isinstance(pttl, int) else None)
            self._remember(name, report, now)
            failed, estimated = self.index.count(name)
            done_total, failed_total = self.index.totals(name)
            liveness = report.liveness if report is not None else "dead"
            notes = []
            if isinstance(counts, Exception):  # a key of that name that is not a zset, say
                notes.append(f"The queue's counts could not be read: {counts}")
                counts = [None] * 5
            total, ready, running, checked, oldest = counts
            if ready is not None and ready > checked and running == checked:
                notes.append(f"In progress counts the running jobs among the next {checked:,} ready ones; "
                             f"{ready:,} are ready.")  # fmt: skip
            if estimated:
                notes.append(f"Failed is about {failed:,}, from the last full scan; the newest "
                             f"{len(self.index.ordered(name)):,} are listed.")  # fmt: skip
            elif not self.index.complete:
                notes.append("Failed is partial: the first background scan for Arq's failed results has not finished.")
            notes.append("Arq keeps a failed job only as its result, until keep_result expires it (1 h by default); "
                         "a background scan finds them, so a new failure shows after the next scan.")  # fmt: skip
            notes += report_notes(report)
            stats.append(
                QueueStats(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    depth=_minus(ready, running),
                    in_progress=running,
                    scheduled=_minus(total, ready),
                    failed=failed,
                    workers=None if liveness == "unknown" else int(liveness == "alive"),
                    workers_unknown=report.unknown_reason() if report is not None and liveness == "unknown" else None,
                    oldest_age_seconds=max(0.0, now - float(oldest) / 1000) if oldest is not None else None,
                    details=(("ready", ready), ("deferred", _minus(total, ready))) + report_details(report),
                    notes=tuple(notes),
                    partial=not self.index.complete,
                    processed_total=done_total,
                    failed_total=failed_total,
                )
            )
        return stats

    def _remember(self, queue: str, report: HealthReport | None, now: float) -> None:
        if report is not None:
            with self._reports_lock:
                if now >= self._reports.get(queue, (None, 0.0))[1]:  # a slower concurrent read is older
                    self._reports[queue] = (report, now)

    def _workers(self, now: float) -> list[Worker]:
        """One worker per queue with a report (arq records no per-worker identity), and
        for an hour, as dead, the last report of a queue whose report went away."""
        with self._reports_lock:
            for queue in [q for q, (_, seen) in self._reports.items() if now - seen > DEAD_WORKER_MEMORY]:
                del self._reports[queue]
            reports = sorted(self._reports.items())
        workers = []
        for queue, (report, seen) in reports:
            gone = seen < now  # this read found no report for the queue
            liveness = "dead" if gone else report.liveness
            alive = liveness == "alive"
            state = ("dead" if gone else "stale" if report.stale else "unknown" if liveness == "unknown"
                     else "busy" if report.ongoing else "idle")  # fmt: skip
            workers.append(
                Worker(
                    backend=self.backend,
                    system=self.system,
                    name=f"arq worker on {queue}",
                    hostname=None,
                    pid=None,
                    queues=(queue,),
                    state=state,
                    alive=alive,
                    last_heartbeat=report.written_at,
                    current_job=None,
                    successful_jobs=report.complete,
                    failed_jobs=report.failed,
                    details=(("liveness", report.unknown_reason()),) if liveness == "unknown" else (),
                )
            )
        return workers

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        with redis_errors():
            return failed_page(self.index, queue, limit, cursor, lambda window: self._recheck(queue, window), ArqFailure.row)

    def _recheck(self, queue: str, entries: list[ArqFailure]) -> list[ArqFailure]:
        """The entries whose results are still these failures: size and expiry in one
        pipeline; results that changed are read again, in one more."""
        with self.client.pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.strlen(RESULT_PREFIX + e.id)
                pipe.pttl(RESULT_PREFIX + e.id)
            replies = pipe.execute(raise_on_error=False)
        now, changed = time.time(), {}
        for n, e in enumerate(entries):
            size, pttl = replies[2 * n], replies[2 * n + 1]
            if not (type(size) is int and type(pttl) is int) or pttl == -2 or size == 0:  # gone, or not arq's
                self.index.update(e.id, None)
            elif size != e.size or not same_expiry(e.expires_at, expiry(pttl, now)):
                changed[e.id] = (size, expiry(pttl, now))
        if changed:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in changed:
                    pipe.get(RESULT_PREFIX + job_id)
                for (job_id, (size, expires_at)), data in zip(changed.items(), pipe.execute(raise_on_error=False)):
                    record = read_record(data) if isinstance(data, bytes) else None
                    self.index.update(job_id, record if record and record.error is None else None, size, expires_at)
        fresh = [self.index.entry(e.id) for e in entries]
        return [e for e in fresh if e is not None and e.queue == queue]

    def job(self, queue: str, job_id: str) -> JobDetail:
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(RESULT_PREFIX + job_id)
                pipe.pttl(RESULT_PREFIX + job_id)
                pipe.get(JOB_PREFIX + job_id)
                pipe.zscore(queue, job_id)
                pipe.exists(IN_PROGRESS_PREFIX + job_id)
                result, pttl, job, score, running = pipe.execute(raise_on_error=False)
        if isinstance(result, bytes):
            record = read_record(result)
            if record.error is None and (record.queue or DEFAULT_QUEUE) != queue:
                raise NotFound(f"Arq job {job_id!r} belongs to queue {record.queue!r}, not {queue!r}")
            status = "unknown" if record.error else "failed" if record.failed else "complete"
            expires_at = expiry(pttl, time.time()) if isinstance(pttl, int) else None
            state = None if record.error else "failed" if record.failed else "finished"
            return replace(job_detail(job_id, queue, record, status, expires_at), state=state,
                           ended_at=ms_time(record.finished_ms))  # fmt: skip
        if isinstance(job, bytes) and score is not None and not isinstance(score, Exception):
            status = "in_progress" if running else "deferred" if score > time.time() * 1000 else "queued"
            state = {"deferred": "scheduled", "queued": "waiting"}.get(status, status)
            return replace(job_detail(job_id, queue, read_record(job), status, None), state=state,
                           scheduled_for=ms_time(int(score)) if status == "deferred" else None,
                           worker=f"arq worker on {queue}" if running else None)  # fmt: skip
        raise NotFound(f"Arq job {job_id!r} has no result or record (any more) in queue {queue!r}")

    # -- moves -----------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        targets = self.index.ids(queue) if ids is ALL else unique(ids)
        with redis_errors():
            self._check_requeueable(queue, targets)
        return self._transact(queue, targets, requeue=True)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        targets = self.index.ids(queue) if ids is ALL else unique(ids)
        return self._transact(queue, targets, requeue=False)

    def _check_requeueable(self, queue: str, ids: list[str]) -> None:
        """Refuse the whole requeue, before moving anything, if a job cannot be rebuilt."""
        refused = []
        for chunk in chunks(ids, CHUNK):
            for job_id, data in zip(chunk, self.client.mget([RESULT_PREFIX + i for i in chunk])):
                try:
                    self._plan(queue, data)
                except Unsupported as exc:
                    refused.append(f"{job_id}: {exc}")
        if refused:
            more = f" (and {len(refused) - 3:,} more)" if len(refused) > 3 else ""
            raise Unsupported(f"nothing was requeued: {len(refused):,} job(s) cannot be: {'; '.join(refused[:3])}{more}")

    def _plan(self, queue: str, data: bytes | None, requeue: bool = True) -> bytes | None:
        """What to write back for a failed result of ``queue``: the job record to requeue it,
        or b"" to delete it; None if it is not one (any more)."""
        if data is None:
            return None
        record = read_record(data)
        if not record.failed or (record.queue or DEFAULT_QUEUE) != queue:
            return None
        if not requeue:
            return b""
        if record.queue is None:
            raise Unsupported("the result does not name its queue (older arq): requeue it with arq itself")
        return job_record(data, record.encoding, job_try=1)

    def _transact(self, queue: str, ids: list[str], *, requeue: bool) -> ActionResult:
        tally = Tally()
        with tally.reporting(), redis_errors():
            for chunk in chunks(ids, CHUNK):
                tally.add(*self._transact_chunk(queue, chunk, requeue))
        return tally.result()

    def _transact_chunk(self, queue: str, ids: list[str], requeue: bool) -> tuple[int, list[str]]:
        keys = [RESULT_PREFIX + i for i in ids]
        for _ in range(10):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    plans = {}
                    for job_id, data in zip(ids, pipe.mget(keys)):
                        try:
                            job = self._plan(queue, data, requeue)
                        except Unsupported:
                            job = None  # became so since the check: left alone, reported not found
                        if job is not None:
                            plans[job_id] = job
                    pipe.multi()
                    now_ms = int(time.time() * 1000)
                    for job_id, job in plans.items():
                        if requeue:
                            pipe.delete(RESULT_PREFIX + job_id, RETRY_PREFIX + job_id, IN_PROGRESS_PREFIX + job_id)
                            pipe.zrem(ABORT_KEY, job_id)  # an old abort request must not stop the new run
                            pipe.set(JOB_PREFIX + job_id, job, px=JOB_EXPIRES_MS)
                            pipe.zadd(queue, {job_id: now_ms})
                        else:
                            pipe.delete(RESULT_PREFIX + job_id)
                    if plans:
                        pipe.execute()
                except redis.exceptions.WatchError:
                    continue
            self.index.forget(ids)
            return len(plans), [i for i in ids if i not in plans]
        raise BackendUnavailable("Arq results kept changing during the transaction; nothing was changed in the last chunk")

    def purge(self, queue: str) -> ActionResult:
        now_ms = int(time.time() * 1000)
        skipped = 0
        tally = Tally()
        with tally.reporting(), redis_errors():
            remaining = self.client.zcount(queue, "-inf", now_ms)  # jobs added during the purge are kept
            while remaining > 0:
                args = [JOB_PREFIX, IN_PROGRESS_PREFIX, RETRY_PREFIX, now_ms, min(PURGE_CHUNK, remaining), skipped]
                removed, kept, examined = self._scripts["purge"](keys=[queue], args=args)
                if examined == 0:
                    break
                tally.add(removed)
                skipped += kept
                remaining -= examined
        return ActionResult(tally.affected)


# -- helpers -------------------------------------------------------------------


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _anything(stats: QueueStats) -> bool:
    return bool(stats.depth or stats.in_progress or stats.scheduled or stats.failed or stats.workers or stats.details[2:])
