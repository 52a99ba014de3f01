"""RQ's cron schedulers and job groups (2.12 and 3.0), read within bounds, never written.

Cron (``rq cron CONFIG`` / ``CronScheduler``): ``rq:cron_schedulers`` (zset: scheduler
name → last heartbeat), ``rq:cron_scheduler:NAME`` (hash with TTL 120 s, refreshed by
the heartbeat: hostname, pid, created_at, config_file, and ``cron_jobs``, a JSON list of
its jobs with ``latest_enqueue_time``/``next_enqueue_time``, rewritten whenever it
enqueues), ``rq:cron_jobs`` (zset: cron job name → last enqueue) and
``rq:cron_job:NAME:jobs`` (zset: the ids it enqueued → when, the last 1,000 for a year).
2.6 writes the scheduler hash without ``cron_jobs``.

Groups (``Group.create(...).enqueue_many``): ``rq:groups`` (set of names) and
``rq:group:NAME`` (set of job ids; each job hash has ``group_id``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import redis

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.decoding.tracebacks import clip

from .jobs import STATE_OF_STATUS, int_of, parse_time, text_of, unix_time
from .keys import Keys
from queuewatch.adapters.periodic import Periodic, every

from .values import CronJob, CronRun, CronScheduler, CronSchedules, GroupJob, Groups, JobGroup

MAX_SCHEDULERS = 100
MAX_CRON_JOBS = 500
RECENT_RUNS = 5
CRON_JOBS_FIELD_LIMIT = 1024 * 1024  # bytes of a scheduler's cron_jobs JSON read at most
MAX_GROUP_NAMES = 10_000  # names read to sort them; beyond, a bounded SSCAN
SCHEDULER_FIELDS = (b"hostname", b"pid", b"name", b"created_at", b"config_file")


def read_cron(client: redis.Redis, keys: Keys, recent: int = RECENT_RUNS) -> CronSchedules:
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.cron_schedulers)
        pipe.zrevrange(keys.cron_schedulers, 0, MAX_SCHEDULERS - 1, withscores=True)
        pipe.zcard(keys.cron_jobs)
        pipe.zrevrange(keys.cron_jobs, 0, MAX_CRON_JOBS - 1, withscores=True)
        scheduler_count, beats, job_count, registered = pipe.execute()
    names = [_text(n) for n, _ in beats]
    job_names = [_text(n) for n, _ in registered]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(keys.cron_scheduler(name), SCHEDULER_FIELDS)
            pipe.hstrlen(keys.cron_scheduler(name), b"cron_jobs")
        for name in job_names:
            pipe.zcard(keys.cron_job_history(name))
            pipe.zrevrange(keys.cron_job_history(name), 0, recent - 1, withscores=True)
        replies = pipe.execute(raise_on_error=False)
    hashes, sizes = replies[0 : 2 * len(names) : 2], replies[1 : 2 * len(names) : 2]
    counts, histories = replies[2 * len(names) :: 2], replies[2 * len(names) + 1 :: 2]
    histories = [h if isinstance(h, list) else [] for h in histories]
    readable = [i for i, size in enumerate(sizes) if isinstance(size, int) and 0 < size <= CRON_JOBS_FIELD_LIMIT]
    run_ids = [_text(job_id) for history in histories for job_id, _ in history]
    with client.pipeline(transaction=False) as pipe:
        for i in readable:
            pipe.hget(keys.cron_scheduler(names[i]), b"cron_jobs")
        for job_id in run_ids:
            pipe.hget(keys.job(job_id), b"status")
        replies = pipe.execute(raise_on_error=False)
    definitions = dict(zip(readable, replies[: len(readable)]))
    statuses = dict(zip(run_ids, replies[len(readable) :]))
    notes: list[str] = []

    schedulers, defined = [], []
    for i, ((name, beat), fields) in enumerate(zip(beats, hashes)):
        values = dict(zip(SCHEDULER_FIELDS, fields)) if isinstance(fields, list) else {}
        alive = any(v is not None for v in values.values())
        jobs = _definitions(definitions.get(i), notes, names[i]) if alive else []
        if isinstance(sizes[i], int) and sizes[i] > CRON_JOBS_FIELD_LIMIT:
            notes.append(f"Cron scheduler {names[i]} registered {sizes[i]:,} bytes of cron jobs: too many to read here.")
        defined += [(names[i], job) for job in jobs]
        schedulers.append(CronScheduler(
            name=names[i], hostname=text_of(values.get(b"hostname")), pid=int_of(values.get(b"pid")),
            created_at=parse_time(values.get(b"created_at")), last_heartbeat=unix_time(beat), alive=alive,
            config_file=text_of(values.get(b"config_file")),
            jobs=tuple(str(job.get("name") or job.get("func_name") or "?") for job in jobs),
        ))  # fmt: skip

    last_runs = {name: unix_time(score) for name, (_, score) in zip(job_names, registered)}
    runs = {name: (count if isinstance(count, int) else 0, history) for name, count, history in zip(job_names, counts, histories)}
    cron_jobs = []
    for scheduler, job in defined:
        name = str(job.get("name") or job.get("func_name") or "?")
        count, history = runs.get(name, (0, []))
        latest = parse_time(_str(job.get("latest_enqueue_time")))
        registered_at = last_runs.get(name)  # the enqueued_at of its newest job, a moment after rq's own time
        if registered_at and (latest is None or registered_at > latest + timedelta(seconds=1)):
            latest = registered_at  # another scheduler sharing the name ran it later
        cron_jobs.append(CronJob(
            name=name, function=_str(job.get("func_name")), queue=_str(job.get("queue_name")),
            args_preview=_preview(job.get("args"), job.get("kwargs")),
            interval_seconds=job.get("interval") if isinstance(job.get("interval"), int) else None,
            cron=_str(job.get("cron")), last_run_at=latest, next_run_at=parse_time(_str(job.get("next_enqueue_time"))),
            scheduler=scheduler, runs=count, recent=_runs(history, statuses),
        ))  # fmt: skip
    scheduled = {job.name for job in cron_jobs}
    for name in job_names:
        if name not in scheduled:  # known from its runs only: no scheduler runs it now
            count, history = runs[name]
            cron_jobs.append(CronJob(name=name, function=None, queue=None, args_preview="", interval_seconds=None, cron=None,
                                     last_run_at=last_runs.get(name), next_run_at=None, scheduler=None, runs=count,
                                     recent=_runs(history, statuses)))  # fmt: skip
    truncated = scheduler_count > len(names) or job_count > len(job_names)
    if truncated:
        notes.append(f"RQ lists {scheduler_count:,} cron schedulers and {job_count:,} cron jobs: the first "
                     f"{len(names):,} and {len(job_names):,} are shown.")  # fmt: skip
    return CronSchedules(tuple(schedulers), tuple(cron_jobs), truncated, tuple(notes))


def _definitions(raw: Any, notes: list[str], scheduler: str) -> list[dict[str, Any]]:
    if not isinstance(raw, bytes):
        return []
    try:
        jobs = json.loads(raw)
    except ValueError:
        notes.append(f"Cron scheduler {scheduler}'s list of cron jobs is not JSON.")
        return []
    return [job for job in jobs if isinstance(job, dict)][:MAX_CRON_JOBS] if isinstance(jobs, list) else []


def _preview(args: Any, kwargs: Any) -> str:
    """rq stores a cron job's args and kwargs as JSON text (or a placeholder when they are not JSON)."""
    try:
        loaded_args = json.loads(args) if isinstance(args, str) else args or []
        loaded_kwargs = json.loads(kwargs) if isinstance(kwargs, str) else kwargs or {}
    except ValueError:
        return clip(f"{args or ''} {kwargs or ''}".strip(), 160) or ""
    if not isinstance(loaded_args, list) or not isinstance(loaded_kwargs, dict):
        return clip(f"{args or ''} {kwargs or ''}".strip(), 160) or ""
    return args_preview(loaded_args, {str(k): v for k, v in loaded_kwargs.items()})


def _runs(history: list[Any], statuses: dict[str, Any]) -> tuple[CronRun, ...]:
    runs = []
    for job_id, score in history:
        status = statuses.get(_text(job_id))
        runs.append(CronRun(_text(job_id), unix_time(score), text_of(status) if isinstance(status, bytes) else None))
    return tuple(runs)


def read_groups(client: redis.Redis, keys: Keys, limit: int, jobs_per_group: int, only: str | None = None) -> Groups:
    """Groups by name (``only``: that one), each with up to ``jobs_per_group`` of its jobs."""
    if only is not None:
        total, names = (1, [only]) if client.sismember(keys.groups, only) or client.exists(keys.group(only)) else (0, [])
    else:
        total = client.scard(keys.groups)
        if total <= MAX_GROUP_NAMES:
            members = client.smembers(keys.groups)
        else:
            members, cursor = set(), 0
            while len(members) < MAX_GROUP_NAMES:
                cursor, found = client.sscan(keys.groups, cursor, count=1000)
                members.update(found)
                if int(cursor) == 0:
                    break
        names = sorted(_text(m) for m in members)[:limit]
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.scard(keys.group(name))
            pipe.sscan(keys.group(name), 0, count=jobs_per_group)
        replies = pipe.execute(raise_on_error=False)
    sizes = [s if isinstance(s, int) else 0 for s in replies[0::2]]
    members = [sorted(_text(m) for m in r[1])[:jobs_per_group] if isinstance(r, (list, tuple)) else [] for r in replies[1::2]]
    with client.pipeline(transaction=False) as pipe:
        for ids in members:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), [b"origin", b"status"])
        answers = iter(pipe.execute(raise_on_error=False))
    groups = []
    for name, size, ids in zip(names, sizes, members):
        jobs, tally = [], {}
        for job_id in ids:
            answer = next(answers)
            origin, status = (text_of(answer[0]), text_of(answer[1])) if isinstance(answer, list) else (None, None)
            word = status or ("expired" if origin is None else "unknown")
            tally[word] = tally.get(word, 0) + 1
            jobs.append(GroupJob(job_id, origin, status, STATE_OF_STATUS.get(status or "")))
        groups.append(JobGroup(name, size, tuple(sorted(tally.items())), tuple(jobs), truncated=size > len(ids)))
    return Groups(tuple(groups), total, truncated=total > len(names))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


OUTCOME_OF_STATUS = {"finished": "succeeded", "failed": "failed", "stopped": "failed", "canceled": "failed",
                     "started": "running", "queued": "waiting", "scheduled": "waiting", "deferred": "waiting"}  # fmt: skip


def cron_periodic(backend: str, system: str, job: CronJob) -> Periodic:
    """One cron job as the periodic page and the lateness alerts see it."""
    interval: float | None = job.interval_seconds
    learned = False
    if interval is None and job.cron and job.last_run_at and job.next_run_at and job.next_run_at > job.last_run_at:
        interval, learned = (job.next_run_at - job.last_run_at).total_seconds(), True  # a cron expression's gap now
    schedule = f"cron {job.cron}" if job.cron else every(interval) if interval else "unknown schedule"
    latest = job.recent[0] if job.recent else None
    outcome = OUTCOME_OF_STATUS.get(_str(latest.status) or "") if latest else None
    notes = []
    if job.scheduler is None:
        notes.append("No live cron scheduler runs it now: known from its past runs only.")
    if learned:
        notes.append("Interval taken from its last and next run.")
    return Periodic(backend=backend, system=system, queue=job.queue, name=job.name, function=job.function, schedule=schedule,
                    interval_seconds=interval, last_run=job.last_run_at, last_outcome=outcome, next_run=job.next_run_at,
                    runner=f"rq cron scheduler {job.scheduler}" if job.scheduler else None,
                    source="rq:cron_jobs and its scheduler's registration", runs=job.runs, notes=tuple(notes))  # fmt: skip


# rq-scheduler (the rq-scheduler package): one sorted set of job ids -> next run (Unix seconds),
# the job hash rq:job:ID re-enqueued at each run, its schedule in the pickled ``meta``
# (``interval`` seconds or ``cron_string``, and ``repeat`` left). One-off scheduled jobs carry
# neither and are not periodic work.
RQ_SCHEDULER_KEY = b"rq:scheduler:scheduled_jobs"
MAX_SCHEDULED = 500
META_LIMIT = 64 * 1024
RQ_SCHEDULER_FIELDS = (b"meta", b"description", b"origin", b"enqueued_at", b"ended_at", b"status")


def read_rq_scheduler(client: redis.Redis, keys: Keys, backend: str, system: str) -> list[Periodic]:
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(RQ_SCHEDULER_KEY)
        pipe.zrange(RQ_SCHEDULER_KEY, 0, MAX_SCHEDULED - 1, withscores=True)
        count, entries = pipe.execute()
    if not entries:
        return []
    with client.pipeline(transaction=False) as pipe:
        for job_id, _ in entries:
            pipe.hstrlen(keys.job(_text(job_id)), b"meta")
            pipe.hmget(keys.job(_text(job_id)), RQ_SCHEDULER_FIELDS)
        replies = pipe.execute(raise_on_error=False)
    found = []
    more = (f"rq-scheduler holds {count:,} scheduled jobs: the first {MAX_SCHEDULED:,} by next run are read.",) \
        if count > MAX_SCHEDULED else ()  # fmt: skip
    for n, (job_id, score) in enumerate(entries):
        size, fields = replies[2 * n], replies[2 * n + 1]
        if not isinstance(fields, list) or not isinstance(size, int) or size > META_LIMIT:
            continue
        values = dict(zip(RQ_SCHEDULER_FIELDS, fields))
        meta = payload.decode(values[b"meta"], max_bytes=META_LIMIT).value
        if not isinstance(meta, dict):
            continue
        interval, cron = meta.get("interval"), meta.get("cron_string")
        if not isinstance(interval, int) and not isinstance(cron, str):
            continue  # a one-off scheduled job: listed under the queue's scheduled jobs, not here
        nxt = unix_time(score)
        last = parse_time(values[b"enqueued_at"])
        status = text_of(values[b"status"])
        repeat = meta.get("repeat")
        notes = list(more)
        if isinstance(repeat, int):
            notes.append(f"{repeat:,} more run{'s' if repeat != 1 else ''} (repeat).")
        learned = False
        every_s: float | None = float(interval) if isinstance(interval, int) else None
        if every_s is None and last and nxt and nxt > last:
            every_s, learned = (nxt - last).total_seconds(), True
        if learned:
            notes.append("Interval taken from its last and next run.")
        description = text_of(values[b"description"]) or ""
        found.append(Periodic(
            backend=backend, system=system, queue=text_of(values[b"origin"]), name=_text(job_id),
            function=description.split("(", 1)[0] or None, schedule=f"cron {cron}" if isinstance(cron, str) else every(every_s),
            interval_seconds=every_s, last_run=last if status is not None else None,
            last_outcome=OUTCOME_OF_STATUS.get(status or "") if last else None, next_run=nxt, runner="rq-scheduler",
            source="rq:scheduler:scheduled_jobs and the job's meta (interval, cron_string, repeat)",
            notes=tuple(notes),
        ))  # fmt: skip
    return found
