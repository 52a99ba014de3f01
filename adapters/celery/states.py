"""Celery tasks in every state, on either broker (DESIGN.md "Jobs in every state").

- **waiting**: the broker's (``redis_states``: the priority lists; ``rabbit_states``:
  an inspection, on request only).
- **scheduled**: tasks held by a worker for an ETA or a countdown; **in_progress**:
  tasks a worker runs (``active``), then those it has prefetched and not started
  (``reserved``). Both from what the live workers last answered the sampler
  (``workers.WorkerQuestions``, every 5 s; ``inspect scheduled / active /
  reserved``): a page view never asks workers itself. A worker that did not answer
  (a solo pool answers only between tasks) adds the task its last
  ``task-started`` event named.
- **finished** / **canceled**: SUCCESS / REVOKED result records that name their
  queue (``result_extended``), learned by the failure index's scan (``finished``).
- **failed**: the failed list (``base``).

``find`` costs O(1) reads: the result record (one GETRANGE + STRLEN, then one GET
when small), the workers' last answers (in memory), and on Redis the waiting
messages this dashboard has shown.

Revoke is Celery's ``revoke`` without terminate, broadcast on the workers' mailbox as
``app.control.revoke`` sends it: every live worker adds the ids to its revoked set
(in memory: 50,000 ids for 3 hours by default, ``CELERY_WORKER_REVOKES_MAX`` /
``CELERY_WORKER_REVOKE_EXPIRES``; on disk only with ``--statedb``; a worker that
starts later learns them only from the others through mingle) and marks them
REVOKED in the result backend; a worker that reaches a revoked message discards it.
Celery has no command that removes an id from that set: ``restore`` is unsupported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from queuewatch.adapters.base import STATES, ActionResult, FailedJob, Job, JobDetail, Page
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview, render
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.failure_index import failed_page
from queuewatch.adapters.rabbitmq.dead_letters import parse_offset
from queuewatch.adapters.redis_errors import redis_errors

from .events import utc
from .finished import STATE_OF_STATUS, CeleryDone
from .index import UNKNOWN
from .results import HEAD_BYTES, parse_time, status_from_head
from .workers import HeldTask

KINDS = {"scheduled": ("scheduled",), "in_progress": ("active", "reserved")}
STATE_OF_KIND = {"scheduled": "scheduled", "active": "in_progress", "reserved": "in_progress"}
STATUS_OF_KIND = {"scheduled": "held by the worker for its ETA or countdown", "active": "running",
                  "reserved": "prefetched by the worker, not started"}  # fmt: skip
# Result statuses that say where a task is (PENDING is never stored).
STATE_OF_RESULT = {"FAILURE": "failed", "STARTED": "in_progress", "RETRY": "scheduled", **STATE_OF_STATUS}
FIND_READ_BYTES = 1024 * 1024
REVOKE_NOTE = ("Workers keep revoked ids in memory only (50,000 for 3 hours by default; on disk only with --statedb): "
               "a worker restarted without --statedb, or started later without mingle, runs them.")  # fmt: skip
NO_RESTORE = ("Celery cannot undo a revoke: its workers take no command that removes an id from their revoked set. "
              "The ids stay revoked until they expire there (3 hours by default) or the workers restart without "
              "--statedb; then requeue the task (a new task with the same arguments) if it must run.")  # fmt: skip
NO_ENQUEUE_NOW = ("A Celery task with an ETA or a countdown is held by the worker that received it, unacknowledged, "
                  "in that worker's timer: no control command makes a worker run it now, and publishing a copy "
                  "would run it twice (once now, once at its ETA). Revoke it and send it again without an ETA.")  # fmt: skip
HELD_NOTE = ("Known from what the worker last answered (inspect {kind}, every 5 s by the sampler): it may have moved "
             "on since.")  # fmt: skip


def held_row(task: HeldTask, state: str) -> Job:
    preview = args_preview(task.args, task.kwargs or {}) if task.args is not None else ""
    return Job(task.id, task.name, preview, None, None, None, None, started_at=utc(task.started), state=state,
               scheduled_for=parse_time(task.eta), worker=task.worker)  # fmt: skip


def done_row(entry: CeleryDone, state: str) -> Job:
    return Job(entry.id, entry.function, entry.args_preview, None, None, None,
               None if entry.retries is None else entry.retries + 1, expires_at=utc(entry.expires_at), state=state,
               ended_at=utc(entry.ended_at), worker=entry.worker)  # fmt: skip


def as_job(row: FailedJob, state: str) -> Job:
    return Job(**{f.name: getattr(row, f.name) for f in fields(FailedJob)}, state=state)


class CeleryJobStates:
    """The job-state methods both broker adapters share (a mixin of ``CeleryAdapterBase``)."""

    label: str
    results: Any
    questions: Any
    events: Any
    index: Any
    worker_conf: dict[str, Any]

    # -- what the broker adapter says -------------------------------------------------

    def _waiting_reason(self, queue: str) -> str | None:
        return None

    def _waiting(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        raise Unsupported(f"Listing the waiting tasks of {queue!r} is an inspection: ask for one (inspect_jobs).")

    def _find_waiting(self, job_id: str) -> list[tuple[str, str]]:
        return []

    def _waiting_detail(self, queue: str, job_id: str) -> JobDetail | None:
        return None

    # -- states -------------------------------------------------------------------------

    def _done_reason(self, state: str) -> str | None:
        word = "finished" if state == "finished" else "revoked"
        if self.results is None:
            return f"No result backend is linked: {word} tasks are known only from their result records."
        if self.worker_conf.get("result_extended") is False:
            return (f"Worker {self.worker_conf.get('worker')} runs without result_extended=True: its result records "
                    f"do not name their queue, so {word} tasks cannot be listed per queue.")  # fmt: skip
        status = next(s for s, st in STATE_OF_STATUS.items() if st == state)
        index = self.index.done[status]
        if index.unnamed and index.passes_completed and not index.failing_queues():
            return (f"The {index.unnamed:,} {status} result records of the last scan name no queue: the workers run "
                    f"without result_extended=True, so {word} tasks cannot be listed per queue.")  # fmt: skip
        return None

    def job_states(self, queue: str) -> dict[str, str | None]:
        if queue == UNKNOWN:
            why = "These are failed tasks whose records name no queue: nothing else is known of them."
            return {s: None if s == "failed" else why for s in STATES}
        return {"waiting": self._waiting_reason(queue), "scheduled": None, "in_progress": None,
                "finished": self._done_reason("finished"), "failed": None, "canceled": self._done_reason("canceled")}  # fmt: skip

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        if state not in STATES:
            raise Unsupported(f"no state {state!r}")
        reason = self.job_states(queue)[state]
        if reason:
            raise Unsupported(reason)
        if state == "failed":
            page = self.failed(queue, limit, cursor)  # type: ignore[attr-defined]
            return Page(tuple(as_job(j, "failed") for j in page.items), page.total, page.next_cursor, page.prev_cursor,
                        page.offset)  # fmt: skip
        if state == "waiting":
            with redis_errors():
                return self._waiting(queue, limit, cursor)
        if state in KINDS:
            return self._held_page(queue, state, limit, cursor)
        return self._done_page(queue, state, limit, cursor)

    def _alive(self, queue: str | None = None) -> list[Any]:
        """The live workers (WorkerSeen) consuming ``queue`` (any, when None or not yet known)."""
        return [s for s, alive in self.events.workers() if alive and (queue is None or not s.queues or queue in s.queues)]

    def held_tasks(self, queue: str | None, state: str) -> list[HeldTask]:
        """What live workers last said they hold of ``queue`` in ``state``, next to run first
        (scheduled: by ETA) or by start (in progress: running, then prefetched)."""
        alive = self._alive(queue)
        if self.questions is None:
            return []
        tasks, missing = self.questions.tasks([s.hostname for s in alive], KINDS[state])
        tasks = [t for t in tasks if queue is None or t.queue == queue]
        if state == "scheduled":
            return sorted(tasks, key=lambda t: (t.eta or "", t.id))
        known = {t.id for t in tasks}
        for seen in alive:  # busy and silent: the task its last task-started event named
            if seen.hostname in missing and seen.current and seen.current not in known:
                tasks.append(HeldTask(seen.current, "active", seen.hostname, queue, None, None, None, None, None, None, None))
        return sorted(tasks, key=lambda t: (t.kind != "active", t.started or 0.0, t.id))

    def _held_page(self, queue: str, state: str, limit: int, cursor: str | None) -> Page[Job]:
        offset = parse_offset(cursor)
        tasks = self.held_tasks(queue, state)
        end = offset + limit
        return Page(tuple(held_row(t, state) for t in tasks[offset:end]), len(tasks), str(end) if end < len(tasks) else None,
                    str(max(0, offset - limit)) if offset else None, offset)  # fmt: skip

    def _done_page(self, queue: str, state: str, limit: int, cursor: str | None) -> Page[Job]:
        status = next(s for s, st in STATE_OF_STATUS.items() if st == state)
        index = self.index.done[status]

        def recheck(entries: list[CeleryDone]) -> list[CeleryDone]:
            with redis_errors(), self.results.client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    pipe.exists(self.results.key(entry.id))
                found = pipe.execute()
            index.forget([e.id for e, there in zip(entries, found) if not there])
            return [e for e, there in zip(entries, found) if there]

        return failed_page(index, queue, limit, cursor, recheck, lambda e: done_row(e, state))  # type: ignore[arg-type,return-value]

    # -- finding --------------------------------------------------------------------------

    def _result_meta(self, job_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """(status, the record as a dict when it is small enough to read) of ``job_id``'s result."""
        if self.results is None:
            return None, None
        key = self.results.key(job_id)
        with redis_errors(), self.results.client.pipeline(transaction=False) as pipe:
            pipe.getrange(key, 0, HEAD_BYTES - 1)
            pipe.strlen(key)
            head, size = pipe.execute()
        status = status_from_head(head) if head else None
        if not head or size > FIND_READ_BYTES:
            return status, None
        with redis_errors():
            data = self.results.client.get(key)
        decoded = payload.decode(data, max_bytes=FIND_READ_BYTES) if data else None
        meta = decoded.value if decoded is not None and decoded.error is None and isinstance(decoded.value, dict) else None
        return (meta.get("status") if meta and isinstance(meta.get("status"), str) else status), meta

    def find(self, job_id: str) -> list[tuple[str, str]]:
        matches: list[tuple[str, str]] = []
        status, meta = self._result_meta(job_id)
        if status in STATE_OF_RESULT:
            queue = meta.get("queue") if meta else None
            if status == "FAILURE":
                entry = self.index.entry(job_id)
                queue = queue or (entry.queue if entry else None) or UNKNOWN
            if isinstance(queue, str) and queue:
                matches.append((queue, STATE_OF_RESULT[status]))
        elif (entry := self.index.entry(job_id)) is not None:  # a failure known from its event only
            matches.append((entry.queue, "failed"))
        held = [t for h in (self.questions.held.values() if self.questions else ()) for t in h.tasks if t.id == job_id]
        matches += [(t.queue, STATE_OF_KIND[t.kind]) for t in held if t.queue]
        for seen in self._alive():
            if seen.current == job_id and not held and len(seen.queues) == 1:
                matches.append((seen.queues[0], "in_progress"))
        matches += self._find_waiting(job_id)
        return list(dict.fromkeys(matches))

    # -- one job in any state -------------------------------------------------------------

    def job(self, queue: str, job_id: str) -> JobDetail:
        try:
            return self.failed_job(queue, job_id)  # type: ignore[attr-defined]
        except NotFound as exc:
            missing = exc
        for state in ("in_progress", "scheduled"):
            for task in self.held_tasks(queue, state):
                if task.id == job_id:
                    return self._held_detail(queue, task, state)
        status, meta = self._result_meta(job_id)
        if status in STATE_OF_STATUS and meta is not None and meta.get("queue") == queue:
            return self._done_detail(queue, job_id, status, meta)
        waiting = self._waiting_detail(queue, job_id)
        if waiting is not None:
            return waiting
        raise NotFound(f"Celery task {job_id!r} is not waiting, held, running, finished or failed in {queue!r} "
                       f"as far as can be seen ({missing})")  # fmt: skip

    def _held_detail(self, queue: str, task: HeldTask, state: str) -> JobDetail:
        details = [("worker", task.worker)]
        if task.pid is not None:
            details.append(("pool process", str(task.pid)))
        if task.priority is not None:
            details.append(("priority", str(task.priority)))
        notes = [HELD_NOTE.format(kind=task.kind)]
        if state == "scheduled":
            notes.append(NO_ENQUEUE_NOW)
        return JobDetail(
            id=task.id, function=task.name, args_preview=held_row(task, state).args_preview, error_type=None,
            error_message=None, failed_at=None, attempts=None, queue=queue, args=task.args or (), kwargs=task.kwargs or {},
            payload_encoding="json (the worker's answer)" if task.args is not None else "none",
            status=STATUS_OF_KIND[task.kind], started_at=utc(task.started), worker=task.worker, details=tuple(details),
            notes=tuple(notes), state=state, scheduled_for=parse_time(task.eta),
        )  # fmt: skip

    def _done_detail(self, queue: str, job_id: str, status: str, meta: dict[str, Any]) -> JobDetail:
        args, kwargs, retries = meta.get("args"), meta.get("kwargs"), meta.get("retries")
        args = tuple(args) if isinstance(args, list) else ()
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        details = [("result", render(meta.get("result"), limit=2_000))]
        if self.results is not None:
            details.append(("result backend", self.results.label))
        retries = retries if isinstance(retries, int) and not isinstance(retries, bool) else None
        return JobDetail(
            id=job_id, function=meta.get("name") if isinstance(meta.get("name"), str) else None,
            args_preview=args_preview(args, kwargs), error_type=None, error_message=None, failed_at=None,
            attempts=None if retries is None else retries + 1, queue=queue, args=args, kwargs=kwargs,
            payload_encoding="json", status=status, worker=meta.get("worker") if isinstance(meta.get("worker"), str) else None,
            details=tuple(details), state=STATE_OF_STATUS[status], ended_at=parse_time(meta.get("date_done")),
        )  # fmt: skip

    # -- moves -----------------------------------------------------------------------------

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        raise Unsupported(NO_ENQUEUE_NOW)

    def restore(self, queue: str, ids: Sequence[str]) -> ActionResult:
        raise Unsupported(NO_RESTORE)
