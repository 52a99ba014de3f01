"""The adapter contract: what every job system looks like to the app.

An adapter reads one job system's storage on one backend (a Redis database or a
RabbitMQ vhost) and answers with the frozen values below, never with raw Redis
replies or broker dicts. It raises only the errors in ``adapters.errors``.

Reads never write. Moves (requeue, delete, purge) are atomic per chunk or
at-least-once, never lossy. Counts cost O(1) per queue; lists cost O(page).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, ClassVar, Generic, TypeVar, Union

from .errors import BackendUnavailable, Interrupted, NotFound, Unsupported

T = TypeVar("T")


class _All:
    """The selection "every failed job of the queue" (as opposed to a list of ids)."""

    _instance: ClassVar[_All | None] = None

    def __new__(cls) -> _All:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL"


ALL = _All()
Selection = Union[Sequence[str], _All]


def unique(ids: Iterable[str]) -> list[str]:
    """The ids of a selection once each, in their order (a double click sends one twice)."""
    return list(dict.fromkeys(ids))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``: one atomic call each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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

    @classmethod
    def of(cls, row: FailedJob, **more: Any) -> JobDetail:
        """The detail of a failed-list row: its fields, plus (or overridden by) ``more``."""
        return cls(**({f.name: getattr(row, f.name) for f in fields(FailedJob)} | more))


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a list. ``next_cursor`` is opaque; ``None`` on the last page."""

    items: tuple[T, ...]
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None = None  # None on the first page
    offset: int = 0  # rank of the first item, where the list has ranks


class Inspection:
    """What one inspection of a queue read: on RabbitMQ its first messages, taken
    unacknowledged and given back in place, which raises their delivery counts.
    Pages and job details are cut from what it holds, without reading again, so
    a page that shows an inspection can refresh as often as it likes."""

    def __init__(self, queue: str, rows: Sequence[FailedJob], total: int | None, detail: Callable[[str], JobDetail], *,
                 truncated: bool = False, notes: Sequence[str] = ()) -> None:  # fmt: skip
        self.queue = queue
        self.taken_at = datetime.now(timezone.utc)
        self.rows = tuple(rows)  # newest first
        self.total = total  # in the queue when it was read; None: unknown (a shared DLQ read in part)
        self.truncated = truncated  # more messages than were read
        self.notes = tuple(notes)
        self._detail = detail

    def page(self, cursor: str | None, limit: int) -> Page[FailedJob]:
        """One page of the rows read, newest first; cursors are offsets. Raises NotFound for a bad cursor."""
        if cursor in (None, ""):
            offset = 0
        elif cursor.isdigit():  # type: ignore[union-attr]
            offset = int(cursor)  # type: ignore[arg-type]
        else:
            raise NotFound(f"cursor {cursor!r} is not one this inspection gave out")
        end = offset + limit
        return Page(self.rows[offset:end], self.total if self.total is not None else None,
                    str(end) if end < len(self.rows) else None, str(max(0, offset - limit)) if offset > 0 else None,
                    offset)  # fmt: skip

    def detail(self, job_id: str) -> JobDetail:
        """One message read, in full. Raises NotFound."""
        return self._detail(job_id)


@dataclass(frozen=True)
class ActionResult:
    """What a requeue, delete or purge did."""

    affected: int
    not_found: tuple[str, ...] = ()


class Tally:
    """What a move of many steps (chunks, messages) has done so far. Inside ``reporting()``, a
    backend that stops answering after some steps raises ``Interrupted`` with the count."""

    def __init__(self) -> None:
        self.affected = 0
        self.missing: list[str] = []

    def add(self, affected: int, missing: Iterable[str] = ()) -> None:
        self.affected += affected
        self.missing += missing

    def result(self) -> ActionResult:
        return ActionResult(self.affected, tuple(self.missing))

    @contextlib.contextmanager
    def reporting(self) -> Iterator[Tally]:
        try:
            yield self
        except Interrupted:
            raise
        except BackendUnavailable as exc:
            if not self.affected and not self.missing:
                raise
            raise Interrupted(f"{exc} — after {self.affected:,} were done; the step in flight then may or may not "
                              "have been (its answer was lost)", self.result()) from exc  # fmt: skip


class Adapter(abc.ABC):
    """One job system on one backend.

    Subclasses set ``system`` and ``label`` and implement every method; the
    contract tests in ``tests/contract.py`` run against each of them.
    Constructors are keyword-only and take the backend's name and an injected
    client, so one connection pool serves every system on a backend.
    """

    system: ClassVar[str]  # "rq" | "celery" | "dramatiq" | "arq" | "amqp"
    label: ClassVar[str]  # how the UI names the system: "RQ"
    # What the failed list is called in this system ("Failed", "Dead letters").
    failed_label: ClassVar[str] = "Failed"
    # One and many of what that list holds, for sentences: "3 failed jobs", "1 dead letter".
    failed_noun: ClassVar[tuple[str, str]] = ("failed job", "failed jobs")
    # Whether purging a queue's waiting jobs leaves its failed list alone (a
    # RabbitMQ dead-letter queue's waiting messages ARE its dead letters).
    purge_keeps_failed: ClassVar[bool] = True
    # Rows per ``failed`` call when the whole failed list is walked (triage,
    # bulk counting): large where every page re-reads a window anyway.
    walk_page: ClassVar[int] = 500
    # Settings the constructor takes from the configuration (app/config.py reads them from here).
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, *, backend: str) -> None:
        self.backend = backend

    @abc.abstractmethod
    def queues(self) -> list[QueueStats]:
        """Every queue of this system, found without being told, with its counts."""

    @abc.abstractmethod
    def workers(self) -> list[Worker]:
        """Every worker the system has registered, alive or recently dead."""

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        """Queues and workers together: what one snapshot needs. Override to share reads."""
        return self.queues(), self.workers()

    @abc.abstractmethod
    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        """Failed jobs of ``queue``, newest first, one page from ``cursor``."""

    def inspects(self, queue: str) -> bool:
        """Whether reading ``queue``'s failed list (or a job in it) is an inspection: it takes
        messages from a RabbitMQ queue and gives them back, which RabbitMQ counts as a delivery
        (a quorum queue may drop a message read too often). The views then read it only when
        the operator asks, with a POST (``inspect``), never on a page view or a refresh."""
        return False

    def inspection_warning(self, queue: str) -> str | None:
        """What the operator must read before inspecting ``queue`` (a quorum queue's delivery
        limit), or None. A cheap read: no message is taken."""
        return None

    def inspect(self, queue: str) -> Inspection:
        """Read ``queue``'s failed list once, for the operator who asked. Raises Unsupported
        where reading it is no inspection (``failed`` is read on every page view instead)."""
        raise Unsupported(f"{self.label} queue {queue!r} is read without an inspection")

    def failed_ids(self, queue: str, limit: int, cursor: str | None = None) -> Page[str]:
        """The ids of a page of ``failed``, same order and cursors: what a bulk action counts.

        Override where ids cost less to read than whole rows.
        """
        page = self.failed(queue, limit, cursor)
        return Page(tuple(job.id for job in page.items), page.total, page.next_cursor, page.prev_cursor, page.offset)

    @abc.abstractmethod
    def job(self, queue: str, job_id: str) -> JobDetail:
        """One job in full. Raises NotFound if it is gone."""

    @abc.abstractmethod
    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        """Move failed jobs back to their queue so a worker runs them again."""

    @abc.abstractmethod
    def delete(self, queue: str, ids: Selection) -> ActionResult:
        """Remove failed jobs and their data."""

    @abc.abstractmethod
    def purge(self, queue: str) -> ActionResult:
        """Remove the waiting jobs of ``queue`` (never its failed jobs)."""

    @classmethod
    def recognizes(cls, key: bytes) -> bool:
        """Whether a key met by the backend's survey SCAN belongs to this system.

        ``detect()`` must stay O(1) (EXISTS on well-known keys): it runs on every
        snapshot. Systems whose keys have no fixed name (custom queue names) are
        also found by one shared, slow SCAN of the keyspace (RedisBackend) that
        asks each system about the keys it meets. Default: recognizes nothing.
        """
        return False

    def maintain(self, budget_seconds: float) -> None:
        """Background upkeep the sampler runs once per poll interval, within a time
        budget: incremental scans, indexes, listeners. Never called on a page view.
        Default: nothing to do."""

    def close(self) -> None:
        """Stop listeners and release resources. Default: nothing."""

    def notes(self) -> tuple[str, ...]:
        """Sentences about the system on this backend the operator should read ("N queues not
        shown"), set by its last read. Default: none."""
        return ()

    def dump_memory(self) -> dict[str, Any] | None:
        """What this adapter learned that the backend cannot tell again after a
        restart (JSON-safe), or None. The app saves it in its state store."""
        return None

    def load_memory(self, data: dict[str, Any]) -> None:
        """Restore what ``dump_memory`` returned (at start-up). Default: nothing."""

    @property
    def memory_version(self) -> object | None:
        """Changes whenever ``dump_memory`` would answer differently; None: compare the dumps."""
        return None

    def queue(self, name: str) -> QueueStats:
        """One queue's counts. Raises NotFound. Adapters may do this cheaper."""
        for stats in self.queues():
            if stats.name == name:
                return stats
        raise NotFound(f"no {self.label} queue named {name!r}")

