"""The JSON shapes of API v1 (DESIGN.md), made from the adapters' frozen values."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import Any

from queuewatch.adapters.base import FailedJob, JobDetail, QueueStats, Worker
from queuewatch.adapters.decoding import payload
from queuewatch.snapshots.history import Bucket, RateSource
from queuewatch.snapshots.monitor import BackendStatus

from .jinja import isotime


def _time(moment: datetime | None) -> str | None:
    return isotime(moment) or None


time_json = _time  # for the other views' JSON


def backend_json(status: BackendStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "url": status.url,
        "status": status.status,
        "error": status.error,
        "systems": list(status.systems),
        "notes": list(status.notes),
    }


def queue_json(stats: QueueStats) -> dict[str, Any]:
    return {
        "backend": stats.backend,
        "system": stats.system,
        "name": stats.name,
        "depth": stats.depth,
        "in_progress": stats.in_progress,
        "scheduled": stats.scheduled,
        "failed": stats.failed,
        "workers": stats.workers,
        "workers_unknown": stats.workers_unknown,
        "dead_letters_of": list(stats.dead_letters_of),
        "failed_in": stats.failed_in,
        "oldest_age_seconds": None if stats.oldest_age_seconds is None else round(stats.oldest_age_seconds, 3),
        "details": dict(stats.details),
        "links": [{"label": label, "queue": name} for label, name in stats.links],
        "notes": list(stats.notes),
        "processed_total": stats.processed_total,
        "failed_total": stats.failed_total,
        "paused": stats.paused,
    }


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "backend": worker.backend,
        "system": worker.system,
        "name": worker.name,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "state": worker.state,
        "alive": worker.alive,
        "last_heartbeat": _time(worker.last_heartbeat),
        "current_job": worker.current_job,
        "started_at": _time(worker.started_at),
        "successful_jobs": worker.successful_jobs,
        "failed_jobs": worker.failed_jobs,
        "version": worker.version,
        "details": dict(worker.details),
    }


def failed_json(job: FailedJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "function": job.function,
        "args_preview": job.args_preview,
        "error_type": job.error_type,
        "error_message": job.error_message,
        "failed_at": _time(job.failed_at),
        "attempts": job.attempts,
        "started_at": _time(job.started_at),
        "expires_at": _time(job.expires_at),
    }


def job_json(job: JobDetail) -> dict[str, Any]:
    return failed_json(job) | {
        "queue": job.queue,
        "args": payload.to_jsonable(list(job.args)),
        "kwargs": payload.to_jsonable(job.kwargs),
        "traceback": job.traceback,
        "payload_encoding": job.payload_encoding,
        "payload_error": job.payload_error,
        "status": job.status,
        "state": job.state,
        "enqueued_at": _time(job.enqueued_at),
        "ended_at": _time(job.ended_at),
        "scheduled_for": _time(job.scheduled_for),
        "history": [list(step) for step in job.history],
        "worker": job.worker,
        "details": dict(job.details),
        "notes": list(job.notes),
    }


@functools.lru_cache(maxsize=8192)  # every queue's points share the sample times
def ms_time(t: int) -> str:
    """A history time (ms since the epoch) in ISO 8601 UTC; milliseconds only when there are some."""
    moment = datetime.fromtimestamp(t / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds" if t % 1000 == 0 else "milliseconds").replace("+00:00", "Z")


def point_json(bucket: Bucket, metrics: Sequence[str], fields: Collection[str] | None = None, ranges: bool = True) -> dict[str, Any]:
    """One history point; a downsampled one also says how many samples it holds and their min and max."""
    shown = [(i, m) for i, m in enumerate(metrics) if fields is None or m in fields]
    point: dict[str, Any] = {"t": ms_time(bucket.t)}
    point.update((m, _rounded(bucket.value(i))) for i, m in shown)
    if ranges and bucket.n > 1:
        point["samples"] = bucket.n
        point["min"] = {m: _rounded(bucket.stats[i].min) for i, m in shown if bucket.stats[i] is not None}
        point["max"] = {m: _rounded(bucket.stats[i].max) for i, m in shown if bucket.stats[i] is not None}
    return point


def _rounded(value: float | None) -> float | None:
    """Fractions as stored (32-bit floats) carry noise past the third decimal."""
    return round(value, 3) if isinstance(value, float) else value


def rates_json(flags: int) -> dict[str, Any]:
    """Where the newest point's rates came from, and whether they are estimates."""
    processed, failed = RateSource.split(flags)
    return {
        name: {"source": RateSource.CODE[code], "description": RateSource.TEXT[code], "estimate": code in RateSource.ESTIMATES}
        for name, code in (("processed", processed), ("failed", failed))
    }
