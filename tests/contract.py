"""The adapter contract as tests: every adapter's test class inherits these.

A subclass provides two fixtures: ``adapter`` (the adapter under test, on a
real backend) and ``jobs`` (a ``JobFactory`` that makes real jobs with the
system's own library and runs its real workers). Queue names are awkward on
purpose.
"""

from __future__ import annotations

from pathlib import Path

import abc
import inspect
from datetime import timedelta

import pytest

from queuewatch.adapters.base import ALL, Adapter, FailedJob, JobDetail, QueueStats
from queuewatch.adapters.errors import NotFound


class JobFactory(abc.ABC):
    """Makes jobs in ``queue`` with the real library and runs its real worker."""

    queue: str

    @abc.abstractmethod
    def failed(self, n: int) -> list[str]:
        """``n`` jobs that a real worker ran and failed; they succeed once ``allow()`` was called."""

    @abc.abstractmethod
    def waiting(self, n: int) -> list[str]:
        """``n`` jobs waiting in the queue."""

    @abc.abstractmethod
    def allow(self) -> None:
        """From now on the failing jobs succeed when run."""

    @abc.abstractmethod
    def run_worker(self) -> None:
        """Run a real worker until the queue is empty."""

    @abc.abstractmethod
    def succeeded(self, job_id: str) -> bool:
        """Whether the system records ``job_id`` as having run successfully."""

    @abc.abstractmethod
    def digest(self) -> object:
        """A value that changes if anything in the backend changes."""


class AdapterContract:
    def stats(self, adapter: Adapter, queue: str) -> QueueStats:
        return adapter.queue(queue)

    def test_implements_the_whole_interface(self, adapter: Adapter) -> None:
        assert isinstance(adapter, Adapter)
        assert adapter.system and adapter.label
        missing = [name for name in Adapter.__abstractmethods__ if getattr(type(adapter), name) is getattr(Adapter, name)]
        assert missing == []
        assert inspect.ismethod(getattr(type(adapter), "detect", None)), "adapters say whether their system is present"

    def test_failed_jobs_are_counted_and_listed(self, adapter: Adapter, jobs: JobFactory) -> None:
        ids = jobs.failed(3)
        stats = self.stats(adapter, jobs.queue)
        assert stats.failed == 3
        assert stats.name == jobs.queue and stats.system == adapter.system
        assert jobs.queue in [q.name for q in adapter.queues()]
        page = adapter.failed(jobs.queue, limit=10)
        assert sorted(j.id for j in page.items) == sorted(ids)
        assert page.total == 3 and page.next_cursor is None
        assert all(isinstance(j, FailedJob) and j.error_type and j.failed_at for j in page.items)

    def test_failed_pages_cover_every_job_once_newest_first(self, adapter: Adapter, jobs: JobFactory) -> None:
        ids = jobs.failed(5)
        seen, cursor, pages = [], None, 0
        while True:
            page = adapter.failed(jobs.queue, limit=2, cursor=cursor)
            seen += page.items
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == 3
        assert sorted(j.id for j in seen) == sorted(ids)
        # Newest first, to the precision the system keeps: RQ scores its
        # failed registry in whole seconds, so jobs of the same second tie.
        times = [j.failed_at for j in seen]
        assert all(later <= earlier + timedelta(seconds=1) for earlier, later in zip(times, times[1:]))

    def test_failed_ids_page_like_failed_rows(self, adapter: Adapter, jobs: JobFactory) -> None:
        """What a bulk action counts (ids) is what the failed pages show, page for page."""
        ids = jobs.failed(5)
        cursor, pages = None, []
        while True:
            rows, id_page = adapter.failed(jobs.queue, limit=2, cursor=cursor), adapter.failed_ids(jobs.queue, limit=2, cursor=cursor)
            assert sorted(id_page.items) == sorted(j.id for j in rows.items)
            assert (id_page.total, id_page.next_cursor) == (rows.total, rows.next_cursor)
            pages.append(id_page.items)
            cursor = id_page.next_cursor
            if cursor is None:
                break
        assert sorted(i for page in pages for i in page) == sorted(ids)
        assert 1 <= type(adapter).walk_page <= 10_000

    def test_job_detail_has_args_and_traceback(self, adapter: Adapter, jobs: JobFactory) -> None:
        [job_id] = jobs.failed(1)
        detail = adapter.job(jobs.queue, job_id)
        assert isinstance(detail, JobDetail)
        assert detail.id == job_id and detail.queue == jobs.queue
        assert detail.args or detail.kwargs
        assert detail.traceback and detail.error_type in detail.traceback

    def test_a_job_that_does_not_exist_is_not_found(self, adapter: Adapter, jobs: JobFactory) -> None:
        jobs.failed(1)
        with pytest.raises(NotFound):
            adapter.job(jobs.queue, "no-such-job-id")

    def test_requeued_job_is_run_by_a_real_worker(self, adapter: Adapter, jobs: JobFactory) -> None:
        [job_id] = jobs.failed(1)
        jobs.allow()
        result = adapter.requeue(jobs.queue, [job_id])
        assert (result.affected, result.not_found) == (1, ())
        assert self.stats(adapter, jobs.queue).failed == 0
        jobs.run_worker()
        assert jobs.succeeded(job_id)

    def test_a_background_operation_counts_then_requeues_every_failed_job_and_they_run(
        self, adapter: Adapter, jobs: JobFactory, tmp_path: Path
    ) -> None:
        """The bulk path the browser takes ("Requeue all…"), through this adapter, in chunks of two."""
        from queuewatch.failures.operations import Operations
        from queuewatch.failures.runner import Runner
        from queuewatch.adapters.store.sqlite_store import SQLiteStateStore
        from queuewatch.failures.triage import Filter

        class ThisAdapter:  # the monitor, as far as operations need one
            def adapter(self, backend: str, system: str) -> Adapter:
                return adapter

            def changed(self) -> None:
                pass

        ids = jobs.failed(3)
        jobs.allow()
        ops = Operations(SQLiteStateStore(tmp_path / "ops.sqlite3"), ThisAdapter(), chunk=2)  # type: ignore[arg-type]
        runner = Runner(ops)
        op = ops.create("requeue", [(adapter.backend, adapter.system, jobs.queue)], Filter(), "tester")
        while runner.step():
            pass
        counted = ops.get(op.id)
        assert (counted.state, counted.total, counted.chunks) == ("ready", 3, 2)
        assert self.stats(adapter, jobs.queue).failed == 3  # counting moved nothing
        ops.confirm(op.id, 3, "tester")
        while runner.step():
            pass
        done = ops.get(op.id)
        assert (done.state, done.affected, done.skipped) == ("done", 3, 0)
        assert self.stats(adapter, jobs.queue).failed == 0
        jobs.run_worker()
        assert all(jobs.succeeded(i) for i in ids)

    def test_requeue_twice_does_not_enqueue_twice(self, adapter: Adapter, jobs: JobFactory) -> None:
        [job_id] = jobs.failed(1)
        adapter.requeue(jobs.queue, [job_id])
        again = adapter.requeue(jobs.queue, [job_id])
        assert (again.affected, again.not_found) == (0, (job_id,))
        assert self.stats(adapter, jobs.queue).depth == 1

    def test_requeue_all_moves_every_failed_job(self, adapter: Adapter, jobs: JobFactory) -> None:
        jobs.failed(7)
        result = adapter.requeue(jobs.queue, ALL)
        assert result.affected == 7
        stats = self.stats(adapter, jobs.queue)
        assert (stats.failed, stats.depth) == (0, 7)

    def test_delete_removes_only_the_selected_jobs(self, adapter: Adapter, jobs: JobFactory) -> None:
        first, *rest = jobs.failed(3)
        result = adapter.delete(jobs.queue, [first, "no-such-job-id"])
        assert (result.affected, result.not_found) == (1, ("no-such-job-id",))
        with pytest.raises(NotFound):
            adapter.job(jobs.queue, first)
        assert sorted(j.id for j in adapter.failed(jobs.queue, limit=10).items) == sorted(rest)

    def test_delete_all_empties_the_failed_list_and_nothing_else(self, adapter: Adapter, jobs: JobFactory) -> None:
        jobs.failed(4)
        jobs.waiting(2)
        assert adapter.delete(jobs.queue, ALL).affected == 4
        stats = self.stats(adapter, jobs.queue)
        assert (stats.failed, stats.depth) == (0, 2)

    def test_purge_removes_waiting_jobs_and_keeps_failed_ones(self, adapter: Adapter, jobs: JobFactory) -> None:
        jobs.failed(2)
        jobs.waiting(3)
        before = self.stats(adapter, jobs.queue)
        purged = adapter.purge(jobs.queue)
        assert purged.affected == 3, (purged, before, self.stats(adapter, jobs.queue))  # what it saw, if it ever differs
        stats = self.stats(adapter, jobs.queue)
        assert (stats.depth, stats.failed) == (0, 2)

    def test_reads_never_write(self, adapter: Adapter, jobs: JobFactory) -> None:
        ids = jobs.failed(3)
        jobs.waiting(2)
        before = jobs.digest()
        adapter.queues()
        adapter.workers()
        adapter.overview()
        adapter.queue(jobs.queue)
        adapter.failed(jobs.queue, limit=2)
        adapter.failed(jobs.queue, limit=2, cursor=adapter.failed(jobs.queue, limit=2).next_cursor)
        for job_id in ids:
            adapter.job(jobs.queue, job_id)
        with pytest.raises(NotFound):
            adapter.job(jobs.queue, "no-such-job-id")
        assert jobs.digest() == before


class MaintainedAdapterContract:
    """Mixed in by adapters whose failed list is an index kept up by ``maintain()``."""

    def test_maintain_within_its_budget_changes_nothing_in_the_backend(self, adapter: Adapter, jobs: JobFactory) -> None:
        jobs.failed(2)
        before = jobs.digest()
        adapter.maintain(budget_seconds=1.0)
        assert jobs.digest() == before
