"""The JSON shapes of API v1 (DESIGN.md), made from the adapters' frozen values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from queuewatch.adapters import payload
from queuewatch.adapters.base import FailedJob, JobDetail, QueueStats, Worker

from .filters import isotime
from .monitor import BackendStatus


def _time(moment: datetime | None) -> str | None:
    return isotime(moment) or None


def backend_json(status: BackendStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "url": status.url,
        "status": status.status,
        "error": status.error,
        "systems": list(status.systems),
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
        "oldest_age_seconds": None if stats.oldest_age_seconds is None else round(stats.oldest_age_seconds, 3),
        "details": dict(stats.details),
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
        "enqueued_at": _time(job.enqueued_at),
        "started_at": _time(job.started_at),
        "worker": job.worker,
        "details": dict(job.details),
    }
