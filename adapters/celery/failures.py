"""Failed Celery tasks as the pages and the API show them: rows, details, cursors,
and the sentences an operator reads before acting."""

from __future__ import annotations

from queuewatch.adapters.base import FailedJob, JobDetail
from queuewatch.adapters.decoding.tracebacks import clip

from .events import utc
from .index import CeleryFailure
from .results import FailureRecord

TRACEBACK_LIMIT = 64_000
UNKNOWN_NOTE = ("These failed tasks' result records do not name their queue: the workers ran without "
                "result_extended=True (which also stores the arguments a requeue needs), and no task-sent "
                "event named it. They cannot be requeued from here.")  # fmt: skip
NO_RESULTS_NOTE = ("No result backend is linked: failed tasks are known only from task-failed events (workers "
                   "started with -E) while the dashboard runs, and cannot be requeued. Link the Redis result "
                   "backend (--celery-results) to list and requeue them.")  # fmt: skip
REQUEUE_NOTE = ("Requeue publishes a new task (new id, parent_id = this id, retries 0) with the stored arguments, "
                "then deletes this failure record.")  # fmt: skip


def job_detail(queue: str, job_id: str, record: FailureRecord | None, entry: CeleryFailure | None,
               results: str | None) -> JobDetail:  # fmt: skip
    """A failed task in full, from its record and (or) what events said of it."""
    refusal = record.refusal if record else (entry.refusal if entry else None)
    notes = [f"Requeue is refused: {refusal}"] if refusal else [REQUEUE_NOTE]
    details: list[tuple[str, str]] = []
    if record is not None:
        details += [(k, v) for k, v in (("exception module", record.exc_module), ("parent id", record.parent_id),
                                        ("group id", record.group_id)) if v]  # fmt: skip
        details.append(("result record", f"{record.size:,} bytes, {record.encoding}"))
        if results is not None:
            details.append(("result backend", results))
    if entry is not None and entry.root_id:
        details.append(("root id", entry.root_id))
    if record is None and entry is not None:
        details.append(("arguments (repr from the task-received event)", entry.args_preview or "—"))
        notes.append("Known from a task-failed event only: no result record was found.")
    retries = record.retries if record else (entry.retries if entry else None)
    return JobDetail(
        id=job_id, function=(record.name if record else None) or (entry.function if entry else None),
        args_preview=(entry.args_preview if entry else ""),
        error_type=(record.error_type if record else None) or (entry.error_type if entry else None),
        error_message=(record.error_message if record else None) or (entry.error_message if entry else None),
        failed_at=(record.date_done if record else None) or (utc(entry.failed_at) if entry else None),
        attempts=None if retries is None else retries + 1, queue=queue,
        args=(record.args or ()) if record else (), kwargs=(record.kwargs or {}) if record else {},
        traceback=clip(record.traceback, TRACEBACK_LIMIT) if record else None,
        payload_encoding=record.encoding if record else "none", payload_error=record.error if record else None,
        status="FAILURE", worker=(record.worker if record else None) or (entry.worker if entry else None),
        details=tuple(details) + ((("retries", str(retries)),) if retries is not None else ()), notes=tuple(notes),
    )  # fmt: skip


def failed_job(entry: CeleryFailure) -> FailedJob:
    return FailedJob(id=entry.id, function=entry.function, args_preview=entry.args_preview,
                     error_type=entry.error_type, error_message=entry.error_message,
                     failed_at=utc(entry.failed_at),
                     attempts=None if entry.retries is None else entry.retries + 1)  # fmt: skip
