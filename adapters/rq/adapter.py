"""RQ (1.16, 2.x and 3.0) read and moved through its own Redis keys, never ``import rq``.

Keys (``keys.Keys``, under rq 3.0's ``RQ_KEY_PREFIX``, ``rq`` by default): ``rq:queues``
(set of ``rq:queue:NAME``), the queue lists, the registries
``rq:{wip,started,scheduled,deferred,ready,failed,finished,canceled}:NAME`` (zsets),
job hashes ``rq:job:ID``, failure tracebacks in the ``rq:results:ID`` stream (2.x, 3.0)
or the job's ``exc_info`` (1.x), workers in ``rq:workers`` → ``rq:worker:NAME`` hashes
(3.0: the runs in ``rq:worker:NAME:executions``), and rq 2.12/3.0's cron schedulers and
job groups (``periodic``).

Every count is O(1) and the overview costs a constant number of round trips; lists
(``states``) cost O(page). Moves run as Lua scripts, one chunk per call, with
``common.lua`` (rq's own steps: Job.delete, the 3.0 rate limiter) prepended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from queuewatch.adapters.base import (ALL, STATES, ActionResult, Adapter, FailedJob, Job, JobDetail, Option, Page, Periodic, QueueStats,
                                      Selection, Tally, Worker, chunks, unique)  # fmt: skip
from queuewatch.adapters.errors import NotFound
from queuewatch.adapters.redis_errors import redis_errors

from .control import RQControl
from .detail import read_detail
from .jobs import EPOCH, format_time, int_of, parse_time, split_member, text_of
from .keys import REGISTRIES, Keys
from .periodic import cron_periodic, read_cron, read_groups, read_rq_scheduler
from .rows import RowReader, failed_row
from .states import StateLists
from .timings import RQTimings
from .values import CronSchedules, Groups

CHUNK = 1000  # ids per Lua call: a few ms of Redis time each
MAX_QUEUES = 10_000  # queues read per snapshot at most: discovery stays bounded whatever rq:queues holds
MAX_WORKERS = 5_000
_HERE = Path(__file__).parent
_COMMON = (_HERE / "common.lua").read_text()
_SCRIPTS = {name: (_COMMON if name != "purge" else "") + (_HERE / f"{name}.lua").read_text()
            for name in ("requeue", "delete", "purge", "delete_jobs", "enqueue_now")}  # fmt: skip
# Ids per delete_jobs call: a waiting job leaves its queue by LREM, as in rq, which costs its
# position in the list (about 35 ms at the tail of a queue of 1,000,000): ten at most keep
# one call well under a second. enqueue_now only touches registries (O(log N) each).
LIVE_CHUNK = {"delete_jobs": 10, "enqueue_now": CHUNK}
GROUPS_PAGE = 100  # groups per call at most
GROUP_JOBS = 100  # jobs read per group at most


class RQAdapter(RQTimings, RQControl, Adapter):
    """RQ on one Redis database."""

    system = "rq"
    label = "RQ"
    # rq 3.0's RQ_KEY_PREFIX, for deployments that set it (1.16 and 2.x always use "rq").
    options = (Option("RQ_KEY_PREFIX", "prefix"),)

    def __init__(self, *, backend: str, client: redis.Redis, prefix: str = "rq") -> None:
        super().__init__(backend=backend)
        self.client = client
        self.keys = Keys(prefix)
        self._rows = RowReader(client, self.keys)
        self._states = StateLists(client, self.keys, self._rows)
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._capped: dict[str, tuple[int, int]] = {}  # "queues"/"workers" -> (members, shown) when over the cap

    @classmethod
    def detect(cls, client: redis.Redis, prefix: str = "rq") -> bool:
        """RQ is here if it has registered a queue or a worker."""
        keys = Keys(prefix)
        return bool(client.exists(keys.queues, keys.workers))

    # -- reads -------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def workers(self) -> list[Worker]:
        return self.overview()[1]

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        """Queues and workers in four round trips, however many there are (up to the caps)."""
        with redis_errors():
            queue_keys = self._members(self.keys.queues, MAX_QUEUES, "queues")
            workers = self._read_workers(sorted(self._members(self.keys.workers, MAX_WORKERS, "workers")))
            names = {key.decode("utf-8", "replace").removeprefix(self.keys.queue_prefix) for key in queue_keys}
            names.update(q for w in workers for q in w.queues)
            stats = self._read_queues(sorted(names)[: MAX_QUEUES + MAX_WORKERS], workers)
        self.known_queues = tuple(sorted(names))  # what the sampler's other reads go by (timings): no second SMEMBERS
        return stats, workers

    def _members(self, key: bytes, cap: int, what: str) -> set[bytes]:
        """A set's members, up to ``cap``: SMEMBERS when it is small, else SSCAN until the cap.
        A set far larger than any real deployment (100,000 bogus members) costs a bounded read,
        and ``notes()`` says how many were left out."""
        size = self.client.scard(key)
        if size <= cap:
            self._capped.pop(what, None)
            return set(self.client.smembers(key))
        found: set[bytes] = set()
        cursor = 0
        while len(found) < cap:
            cursor, members = self.client.sscan(key, cursor, count=1000)
            found.update(members)
            if int(cursor) == 0:
                break
        found = set(sorted(found)[:cap])
        self._capped[what] = (size, len(found))
        return found

    def notes(self) -> tuple[str, ...]:
        return tuple(f"RQ's {key.decode()} holds {size:,} {what}: the first {shown:,} found are shown, {size - shown:,} are "
                     f"not (far more than any real deployment: leftovers, or a client writing there by mistake)."
                     for what, (size, shown) in sorted(self._capped.items())
                     for key in [self.keys.queues if what == "queues" else self.keys.workers])  # fmt: skip

    def queue(self, name: str) -> QueueStats:
        with redis_errors():
            workers = self._read_workers(sorted(self.client.smembers(self.keys.workers)))
            stats = self._read_queues([name], workers)[0]
            known = self.client.sismember(self.keys.queues, self.keys.queue(name))
        counts = [stats.depth, stats.in_progress, stats.scheduled, stats.failed, stats.workers]
        if not known and not any(counts + [value for _, value in stats.details]):
            raise NotFound(f"no RQ queue named {name!r}")
        return stats

    def _read_queues(self, names: list[str], workers: list[Worker]) -> list[QueueStats]:
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(self.keys.queue(name))
                pipe.llen(self.keys.intermediate(name))
                pipe.lindex(self.keys.queue(name), 0)
                for registry in REGISTRIES:
                    pipe.zcard(self.keys.registry(registry, name))
            replies = pipe.execute(raise_on_error=False)
        width = 3 + len(REGISTRIES)
        rows = [[None if isinstance(r, Exception) else r for r in replies[i * width : (i + 1) * width]] for i in range(len(names))]
        # Age of the oldest waiting job: the enqueued_at of each queue's head.
        heads = [(i, row[2]) for i, row in enumerate(rows) if row[2]]
        enqueued: list[Any] = [None] * len(names)
        if heads:
            with self.client.pipeline(transaction=False) as pipe:
                for _, job_id in heads:
                    pipe.hget(self.keys.job(job_id.decode("utf-8", "replace")), "enqueued_at")
                for (i, _), value in zip(heads, pipe.execute(raise_on_error=False)):
                    enqueued[i] = value
        now = datetime.now(timezone.utc)
        stats = []
        for name, row, enqueued_at in zip(names, rows, enqueued):
            depth, intermediate, _, *counts = row
            reg = dict(zip(REGISTRIES, counts))
            when = None if isinstance(enqueued_at, Exception) else parse_time(enqueued_at)
            in_progress = _sum(reg["wip"], reg["started"], intermediate)
            stats.append(
                QueueStats(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    depth=depth,
                    in_progress=in_progress,
                    scheduled=_sum(reg["scheduled"], reg["deferred"], reg["ready"]),
                    failed=reg["failed"],
                    workers=sum(1 for w in workers if w.alive and name in w.queues),
                    oldest_age_seconds=max(0.0, (now - when).total_seconds()) if when else None,
                    details=(
                        ("scheduled", reg["scheduled"]),
                        ("deferred", reg["deferred"]),
                        *((("ready to enqueue", reg["ready"]),) if reg["ready"] else ()),
                        ("finished", reg["finished"]),
                        ("canceled", reg["canceled"]),
                    ),
                )
            )
        return stats

    def _read_workers(self, keys: list[bytes]) -> list[Worker]:
        if not keys:
            return []
        names = [key.decode("utf-8", "replace").removeprefix(self.keys.worker_prefix) for key in keys]
        with self.client.pipeline(transaction=False) as pipe:
            for key, name in zip(keys, names):
                pipe.hgetall(key)
                # rq 3.0 writes no current_job: the runs are in the worker's executions set.
                pipe.srandmember(self.keys.worker_executions(name))
            replies = pipe.execute(raise_on_error=False)
        workers = []
        for name, fields, running in zip(names, replies[0::2], replies[1::2]):
            if isinstance(fields, Exception):
                fields = {}
            # A worker that died without cleaning up lingers in rq:workers after
            # its hash expired; one that shut down cleanly left a "death" field.
            alive = bool(fields) and b"death" not in fields
            queues = tuple(q for q in (text_of(fields.get(b"queues")) or "").split(",") if q)
            workers.append(
                Worker(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    hostname=text_of(fields.get(b"hostname")),
                    pid=int_of(fields.get(b"pid")),
                    queues=queues,
                    state=(text_of(fields.get(b"state")) or "unknown") if alive else "dead",
                    alive=alive,
                    last_heartbeat=parse_time(fields.get(b"last_heartbeat")),
                    current_job=text_of(fields.get(b"current_job")) or _running(running),
                    started_at=parse_time(fields.get(b"birth")),
                    # RQ writes a counter at its first increment: a live worker without one has done 0.
                    successful_jobs=int_of(fields.get(b"successful_job_count", b"0" if fields else None)),
                    failed_jobs=int_of(fields.get(b"failed_job_count", b"0" if fields else None)),
                    version=text_of(fields.get(b"version")),
                )
            )
        return workers

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        offset = _offset(cursor)
        key = self.keys.registry("failed", queue)
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1, withscores=True)
                total, scored = pipe.execute()
            ids = [i.decode("utf-8", "replace") for i, _ in scored]
            rows = self._rows.read(ids, results=3)
        # The registry's score is when RQ will drop the job (-1: never).
        jobs = [
            replace(failed_row(job_id, fields, results), expires_at=_expiry(score))
            for job_id, (fields, results), (_, score) in zip(ids, rows, scored)
        ]
        # RQ scores the registry in whole seconds; order ties by the failure time it also keeps.
        jobs.sort(key=lambda j: j.failed_at or EPOCH, reverse=True)
        next_offset = offset + len(ids)
        return Page(
            items=tuple(jobs),
            total=total,
            next_cursor=str(next_offset) if next_offset < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def failed_ids(self, queue: str, limit: int, cursor: str | None = None) -> Page[str]:
        """Ids only: one ZREVRANGE, the cursors of ``failed``."""
        offset = _offset(cursor)
        key = self.keys.registry("failed", queue)
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1)
                total, ids = pipe.execute()
        next_offset = offset + len(ids)
        return Page(
            items=tuple(i.decode("utf-8", "replace") for i in ids),
            total=total,
            next_cursor=str(next_offset) if next_offset < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def job(self, queue: str, job_id: str) -> JobDetail:
        """One job in any state, with its history and the runs going on now (``detail``)."""
        with redis_errors():
            return read_detail(self.client, self.keys, queue, job_id)

    # -- jobs in every state -------------------------------------------------

    def job_states(self, queue: str) -> dict[str, str | None]:
        """RQ keeps a list of every state."""
        return dict.fromkeys(STATES)

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        """One page of ``state`` (``states``): waiting and scheduled next to run first, in
        progress by start, finished, failed and canceled newest first."""
        if state not in STATES:
            raise NotFound(f"no state {state!r}: RQ's are {', '.join(STATES)}")
        with redis_errors():
            return self._states.page(queue, state, max(1, limit), _offset(cursor))  # type: ignore[return-value]

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """The queue and state of a job id, from its hash: one HMGET, no SCAN."""
        with redis_errors():
            return self._states.find(job_id)

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Delete waiting or scheduled (scheduled, deferred, ready) jobs as rq's Job.delete
        leaves them (``delete_jobs.lua``); one that is running, finished or gone is not found."""
        return self._live_move("delete_jobs", queue, ids)

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Move scheduled or deferred jobs to the front of the queue, the first id at its head,
        as rq's scheduler enqueues a job whose time has come (``enqueue_now.lua``)."""
        return self._live_move("enqueue_now", queue, ids)

    def _live_move(self, script: str, queue: str, ids: Sequence[str]) -> ActionResult:
        keys = [self.keys.queue(queue), self.keys.registry("scheduled", queue), self.keys.registry("deferred", queue),
                self.keys.registry("ready", queue)]  # fmt: skip
        head = [self.keys.root, queue, format_time(datetime.now(timezone.utc))]
        if script == "enqueue_now":
            keys.append(self.keys.queues)
            head.append(self.keys.queue(queue))
        tally = Tally()
        with tally.reporting(), redis_errors():
            parts = list(chunks(unique(ids), LIVE_CHUNK[script]))
            if script == "enqueue_now":
                parts.reverse()  # each goes to the front: the last chunk first, so the first id ends at the head
            for chunk in parts:
                done, gone = self._scripts[script](keys=keys, args=[*head, *chunk])
                tally.add(done, (_text(m) for m in gone))
        return tally.result()

    # -- rq 2.12 / 3.0: cron and groups ------------------------------------

    def cron(self) -> CronSchedules:
        """Every cron scheduler (``rq cron``) and cron job, with its last and next run and its
        latest jobs; bounded (``periodic``)."""
        with redis_errors():
            return read_cron(self.client, self.keys)

    def periodic(self) -> list[Periodic]:
        """RQ's cron jobs as periodic work (the schedule its scheduler registered, the last run and
        its outcome, the next run) and rq-scheduler's repeating jobs (interval or cron_string)."""
        found = []
        if self.client.exists(self.keys.cron_jobs, self.keys.cron_schedulers):  # no cron here: one command per sample
            found += [cron_periodic(self.backend, self.system, job) for job in self.cron().jobs]
        found += read_rq_scheduler(self.client, self.keys, self.backend, self.system)  # rq-scheduler's repeating jobs
        return found

    def groups(self, limit: int = GROUPS_PAGE, jobs_per_group: int = GROUP_JOBS) -> Groups:
        """Job groups by name, each with up to ``jobs_per_group`` jobs and where they are."""
        with redis_errors():
            return read_groups(self.client, self.keys, min(limit, GROUPS_PAGE), min(jobs_per_group, GROUP_JOBS))

    def group(self, name: str, jobs_per_group: int = GROUP_JOBS) -> Groups:
        """One job group (a page of one, or none)."""
        with redis_errors():
            return read_groups(self.client, self.keys, 1, min(jobs_per_group, GROUP_JOBS), only=name)

    # -- moves -------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        keys = [self.keys.registry("failed", queue), self.keys.queue(queue), self.keys.queues]
        head = [self.keys.root, format_time(datetime.now(timezone.utc)), self.keys.queue(queue)]
        return self._move(self._scripts["requeue"], keys, head, queue, ids)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        keys = [self.keys.registry("failed", queue)]
        head = [self.keys.root, format_time(datetime.now(timezone.utc))]
        return self._move(self._scripts["delete"], keys, head, queue, ids)

    def _move(self, script: Any, keys: list[Any], head: list[Any], queue: str, ids: Selection) -> ActionResult:
        """Run a requeue/delete script over ids, or over the whole registry, in chunks."""
        tally = Tally()
        with tally.reporting(), redis_errors():
            if ids is ALL:
                top = self.client.zrevrange(keys[0], 0, 0, withscores=True)
                if not top:
                    return ActionResult(0)
                max_score = repr(top[0][1])
                offset = 0  # jobs skipped because their hash is gone stay at the front
                while True:
                    done, gone, examined = script(keys=keys, args=[*head, "range", f"{max_score} {offset} {CHUNK}"])
                    tally.add(done, (_text(m) for m in gone))
                    offset += len(gone)
                    if examined == 0:
                        break
            else:
                for chunk in chunks(unique(ids), CHUNK):
                    done, gone, _ = script(keys=keys, args=[*head, "ids", "", *chunk])
                    tally.add(done, (_text(m) for m in gone))
        return tally.result()

    def purge(self, queue: str) -> ActionResult:
        key = self.keys.queue(queue)
        tally = Tally()
        with tally.reporting(), redis_errors():
            remaining = self.client.llen(key)  # jobs enqueued during the purge are kept
            while remaining > 0:
                removed = self._scripts["purge"](keys=[key], args=[self.keys.job_prefix, min(CHUNK, remaining)])
                if removed == 0:
                    break
                tally.add(removed)
                remaining -= removed
        return tally.result()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _running(member: Any) -> str | None:
    """The job id of a ``jobid:execid`` member of a worker's executions set (rq 3.0)."""
    return split_member(member)[0] if isinstance(member, bytes) and member else None


def _expiry(score: float) -> datetime | None:
    """The registry score as a time; None for "never" (-1, inf) and for scores no date can hold."""
    if score < 0:
        return None
    try:
        return datetime.fromtimestamp(score, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _sum(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _offset(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    try:
        offset = int(cursor)
    except ValueError:
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out") from None
    if offset < 0:
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
    return offset
