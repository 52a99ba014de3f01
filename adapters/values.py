"""The values adapters answer with: frozen dataclasses, never raw Redis replies or broker dicts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """A setting an adapter or a backend takes from the configuration: the flag
    ``--setting-name`` / variable ``QUEUEWATCH_SETTING``, each value
    ``[BACKEND=]VALUE`` (no name: every backend that takes it), handed to the
    constructor as ``keyword`` (a list when ``many``)."""

    setting: str  # "DRAMATIQ_NAMESPACE"
    keyword: str  # "namespace"
    many: bool = False
    schemes: tuple[str, ...] = ()  # a URL: the schemes it may have


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue; ``None`` where the system cannot know."""

    backend: str
    system: str
    name: str
    depth: int | None  # waiting, ready to run
    in_progress: int | None
    scheduled: int | None  # scheduled, deferred or delayed: waiting for a time or a dependency
    failed: int | None  # failed registry or dead letters
    workers: int | None  # live workers listening to this queue
    oldest_age_seconds: float | None  # age of the oldest waiting job
    # More counts the system keeps, shown on the queue page: (label, value) pairs.
    details: tuple[tuple[str, int | None], ...] = ()
    # Related queues of the same backend and system, e.g. ("dead letters", "orders.dlq").
    links: tuple[tuple[str, str], ...] = ()
    # Sentences the operator should read with these numbers ("depth excludes ...").
    notes: tuple[str, ...] = ()
    # Cumulative jobs of this queue completed (succeeded or failed) and failed,
    # where the system keeps a per-queue counter (RabbitMQ's management API
    # does); the history turns their change between snapshots into exact rates.
    # A counter may restart from zero. None where there is no such counter: RQ
    # has none, and its rates come from worker counters and failed-list growth.
    processed_total: int | None = None
    failed_total: int | None = None
    # The counts are still being learned (a first background scan after a start has not
    # finished): they say how many there are so far, not how many are new. Alerts on new
    # failures and rates from failed-count growth wait until it is over.
    partial: bool = False
    # Why ``workers`` is None where the system usually knows (an Arq report too old to be
    # evidence): alerts on min_workers show it as a warning, not as fine.
    workers_unknown: str | None = None
    # A dead-letter queue: the queues whose dead letters it holds. Its messages are dead
    # letters, not work waiting: totals count them once, as dead letters, and never as waiting.
    dead_letters_of: tuple[str, ...] = ()
    # ``failed`` counts the messages of this dead-letter queue (shown on its own row too).
    failed_in: str | None = None
    # The most intervals any periodic task of this queue has gone without a run (set by the
    # sampler from Adapter.periodic; alerts compare it with max_periodic_lateness).
    periodic_lateness: float | None = None
    # Workers have been told to stop taking this queue's jobs (jobs keep arriving and wait);
    # None where the system cannot pause one queue.
    paused: bool | None = None


@dataclass(frozen=True)
class Worker:
    """One worker process as its system registers it."""

    backend: str
    system: str
    name: str
    hostname: str | None
    pid: int | None
    queues: tuple[str, ...]
    state: str  # the system's own word: busy, idle, suspended, ... or "dead"
    alive: bool
    last_heartbeat: datetime | None
    current_job: str | None
    started_at: datetime | None = None
    # Cumulative since the worker started; the history derives per-queue rates
    # from their change (jobs done = successful + failed).
    successful_jobs: int | None = None
    failed_jobs: int | None = None
    version: str | None = None
    # What else the system reports about the worker (load average, active tasks...): (label, text).
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FailedJob:
    """One row of a failed-jobs (or dead-letter) list."""

    id: str
    function: str | None
    args_preview: str
    error_type: str | None
    error_message: str | None
    failed_at: datetime | None
    attempts: int | None
    started_at: datetime | None = None  # when its last attempt started
    expires_at: datetime | None = None  # when the system will drop the record by itself


@dataclass(frozen=True)
class JobDetail(FailedJob):
    """Everything known about one job; args and kwargs are safe display values."""

    queue: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    payload_encoding: str = "unknown"
    payload_error: str | None = None  # why the payload could not be decoded, with its size
    status: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    worker: str | None = None
    # Further fields the system keeps (timeouts, ttl, retries left, headers...): (label, text).
    details: tuple[tuple[str, str], ...] = ()
    # Sentences the operator should read before acting ("requeue needs result_extended").
    notes: tuple[str, ...] = ()
    # Where it is now, in the words every system shares (STATES); None where unknown.
    state: str | None = None
    ended_at: datetime | None = None
    scheduled_for: datetime | None = None
    # Where it ran before (RQ 3 executions, retries): (label, text) rows, oldest first.
    history: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, row: FailedJob, **more: Any) -> JobDetail:
        """The detail of a failed-list row: its fields, plus (or overridden by) ``more``."""
        return cls(**({f.name: getattr(row, f.name) for f in fields(FailedJob)} | more))


# The states of a job, the same words for every system (DESIGN.md, "Jobs in every state"):
# waiting (ready, in the order the system hands them out), scheduled (for a time or a
# dependency), in_progress (with its worker), finished (succeeded, where kept), failed,
# canceled (where the system has it).
STATES = ("waiting", "scheduled", "in_progress", "finished", "failed", "canceled")


@dataclass(frozen=True)
class Job(FailedJob):
    """A row of a list of jobs in one state: a failed row's fields (error fields None unless
    failed) and the times and worker that state has."""

    state: str = "waiting"
    enqueued_at: datetime | None = None
    ended_at: datetime | None = None
    scheduled_for: datetime | None = None
    worker: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a list. ``next_cursor`` is opaque; ``None`` on the last page."""

    items: tuple[T, ...]
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None = None  # None on the first page
    offset: int = 0  # rank of the first item, where the list has ranks


@dataclass(frozen=True)
class ActionResult:
    """What a requeue, delete or purge did."""

    affected: int
    not_found: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timing:
    """One job that ended, as its system recorded it: what per-function metrics are made of
    (``Adapter.timings``). Seconds; None where the system does not say."""

    queue: str
    function: str
    ended_at: float  # unix time the job ended (succeeded or failed)
    failed: bool
    runtime_seconds: float | None  # start -> end
    wait_seconds: float | None  # enqueue (or, for Celery, receipt by a worker) -> start
