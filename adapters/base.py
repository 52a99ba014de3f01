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

from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar, Union

from .errors import BackendUnavailable, Interrupted, NotFound, Unsupported
from .periodic import Periodic
from .values import STATES, ActionResult, FailedJob, Job, JobDetail, Option, Page, QueueStats, Worker
from .values import Timing  # per-function timings (issue 18): see the block at the end of Adapter

__all__ = ["ALL", "STATES", "ActionResult", "Adapter", "FailedJob", "Inspection", "Job", "JobDetail", "Option", "Page", "Periodic",
           "QueueStats", "Selection", "Tally", "Worker", "chunks", "unique"]

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

    system: ClassVar[str]  # "rq" | "celery" | "dramatiq" | "arq" | "huey" | "amqp"
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

    # -- jobs in every state (DESIGN.md); a system answers what it can know --------------

    def job_states(self, queue: str) -> dict[str, str | None]:
        """Every state of STATES: None where ``jobs`` can list it, else why not (shown to the
        operator; the UI hides the state). Default: only the failed list."""
        return {s: None if s == "failed" else f"{self.label} keeps no list of {s.replace('_', ' ')} jobs"
                for s in STATES}  # fmt: skip

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        """Jobs of ``queue`` in ``state``, one page (O(page)): waiting and scheduled next to run
        first, in progress by start, finished and failed newest first. Raises Unsupported
        (the reason of ``job_states``) for a state it cannot list."""
        reason = self.job_states(queue).get(state, f"no state {state!r}")
        raise Unsupported(reason or f"{self.label} lists {state} jobs elsewhere")

    def inspects_jobs(self, queue: str, state: str) -> bool:
        """Whether listing ``state`` is an inspection (RabbitMQ's waiting messages): then only
        ``inspect_jobs``, on the operator's request, reads it."""
        return False

    def inspect_jobs(self, queue: str, state: str) -> Inspection:
        """Read a list that is an inspection, once. Raises Unsupported elsewhere."""
        raise Unsupported(f"{self.label} lists {state} jobs of {queue!r} without an inspection")

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """Where a job id is now: (queue, state) pairs, by O(1) lookups (no SCAN). Default: nowhere."""
        return []

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Remove waiting or scheduled jobs so they never run (as the system's own cancel/delete
        leaves them). Ids not waiting or scheduled there are ``not_found``."""
        raise Unsupported(f"{self.label} cannot delete waiting jobs here")

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Move scheduled jobs to the front of waiting, now."""
        raise Unsupported(f"{self.label} cannot enqueue scheduled jobs now")

    def revoke(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Mark jobs by id so workers skip them when they reach them (Huey's ``revoke_by_id``):
        they stay where they are, listed as canceled, until ``restore``."""
        raise Unsupported(f"{self.label} cannot revoke jobs by id")

    def periodic(self) -> list[Periodic]:
        """Every periodic schedule this system's storage reveals (adapters/periodic.py), bounded;
        read by the sampler for the lateness alerts and by the periodic page. Default: none."""
        return []

    def restore(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Undo ``revoke``: the jobs run again when reached. Ids not revoked are ``not_found``."""
        raise Unsupported(f"{self.label} keeps no revoked jobs to restore")

    # -- control of live work (DESIGN.md) -------------------------------------------------

    def stop(self, queue: str, job_id: str) -> str | None:
        """Ask the system to stop a running job by its own mechanism; the worker asked (or None).
        Raises Unsupported where it has none, NotFound when the job is not running."""
        raise Unsupported(f"{self.label} has no way to stop a running job")

    def pause(self, queue: str, paused: bool) -> bool:
        """Stop (or resume) workers taking ``queue``'s jobs; jobs keep arriving. Returns the state."""
        raise Unsupported(f"{self.label} cannot pause one queue")

    def paused(self, queue: str) -> bool | None:
        """Whether ``queue`` is paused; None where the system cannot pause."""
        return None

    def control_worker(self, name: str, action: str, n: int = 1) -> None:
        """Worker control where the system has it: "shutdown", "pool_grow", "pool_shrink"."""
        raise Unsupported(f"{self.label} workers take no {action.replace('_', ' ')} command")

    def queue(self, name: str) -> QueueStats:
        """One queue's counts. Raises NotFound. Adapters may do this cheaper."""
        for stats in self.queues():
            if stats.name == name:
                return stats
        raise NotFound(f"no {self.label} queue named {name!r}")

    # -- per-function timings (issue 18) --------------------------------------------------
    # Read by the sampler that holds the lease, once per interval, never on a page view.
    # What ``timings`` measures, of "processed", "failed", "runtime" and "wait": the API
    # answers null for the rest. ``timings_note`` says what is not measurable, for the page.
    timings_measure: ClassVar[frozenset[str]] = frozenset()
    timings_note: ClassVar[str | None] = None

    def timings(self, since: dict | None, budget_seconds: float) -> tuple[list[Timing], dict]:
        """The jobs that ended since the cursor ``since`` (None: the first read ever), read within
        about ``budget_seconds``, and the cursor to continue from (JSON-safe; the app keeps it in
        its state store, so a restart continues where it stopped). What the budget left unread
        is read next time. Default: Unsupported, with the reason."""
        raise Unsupported(self.timings_note or f"{self.label} keeps no record of when its jobs ran")
