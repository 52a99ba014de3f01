"""Celery tasks in every state (issue 16, Celery part), on a Redis broker (database 14) and a
RabbitMQ broker (a fresh vhost), results in Redis database 15, with real Celery workers:
each list equals what the workers (``celery inspect``) or the broker report, in the order
they run; find by id; a deleted waiting task never runs; a revoked one is skipped."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest
import redis
from celery_app import BROKER, producer, result_records, start_worker, stop, wait_for
from conftest import REDIS_HOST, REDIS_PORT

from queuewatch.adapters.backends import RabbitBackend
from queuewatch.adapters.celery.on_rabbitmq import CeleryRabbitAdapter
from queuewatch.adapters.celery.on_redis import CeleryRedisAdapter
from queuewatch.adapters.errors import NotFound, Unsupported

pytestmark = pytest.mark.redis_db(14)
Q = "jobs.states"


@pytest.fixture
def results(redis_db):
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@contextlib.contextmanager
def celery_on(kind: str, r: redis.Redis, results: redis.Redis) -> Iterator[tuple[str, object]]:
    """(broker URL, adapter) for a Redis or a RabbitMQ broker."""
    if kind == "redis":
        adapter = CeleryRedisAdapter(backend="redis", client=r, results_client=results)
        try:
            yield BROKER, adapter
        finally:
            adapter.close()
        return
    from test_amqp_adapter import new_vhost

    with new_vhost("celery-jobs") as url:
        backend = RabbitBackend(name="rabbitmq", url=url)
        adapter = CeleryRabbitAdapter(backend="rabbitmq", rabbit=backend, results_client=results)
        try:
            yield url, adapter
        finally:
            adapter.close()
            backend.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def celery(request, r, results):
    with celery_on(request.param, r, results) as pair:
        yield (request.param, *pair)


def send(broker: str, name: str, args: tuple, **options) -> str:
    with producer(broker) as app:
        return app.send_task(name, args, queue=options.pop("queue", Q), **options).id


def inspect(broker: str, kind: str) -> list[dict]:
    """What ``celery inspect KIND`` reports, every worker's list joined."""
    with producer(broker) as app:
        answer = getattr(app.control.inspect(timeout=2), kind)() or {}
    return [task for tasks in answer.values() for task in tasks]


def seen(adapter, n: int = 1, timeout: float = 20) -> None:
    """Run the sampler's upkeep until ``n`` live workers have said which queues they consume."""
    wait_for(lambda: adapter.maintain(0.5) or sum(1 for w in adapter.workers() if w.alive and w.queues) >= n, timeout,
             what=f"{n} worker(s) seen with their queues", step=0.2)  # fmt: skip


def refresh_held(adapter) -> None:
    """What the sampler asks every 5 s (``inspect active / scheduled / reserved``), now."""
    adapter.questions.ask_held(adapter.events, 2.0, every=0)


def ids(page) -> list[str]:
    return [j.id for j in page.items]


def succeeded(results: redis.Redis) -> dict[str, dict]:
    return {i: r for i, r in result_records(results).items() if r["status"] == "SUCCESS"}


def test_waiting_tasks_on_redis_are_listed_in_the_order_a_worker_runs_them(r, results) -> None:
    """Priorities 0..9 go to kombu's four lists; a solo worker (one task at a time) runs them in
    the order the list shows: step 0 first, then 3, 6, 9, each oldest first."""
    with celery_on("redis", r, results) as (broker, adapter):
        sent = [send(broker, "celery_app.add", (i, p), priority=p) for i, p in enumerate((9, 0, 4, 0, 7, 3, 9, 1))]
        page = adapter.jobs(Q, "waiting", 3)
        rest = adapter.jobs(Q, "waiting", 10, page.next_cursor)
        listed = ids(page) + ids(rest)
        assert page.total == rest.total == 8 and rest.next_cursor is None and rest.offset == 3
        assert sorted(listed) == sorted(sent)
        assert [j.function for j in page.items] == ["celery_app.add"] * 3 and page.items[0].args_preview == "1, 0"
        proc = start_worker(broker, [Q], "order")
        try:
            wait_for(lambda: len(succeeded(results)) == 8, 30, what="the 8 tasks to run")
        finally:
            stop(proc)
        ran = sorted(succeeded(results).values(), key=lambda rec: rec["date_done"])
        assert [rec["task_id"] for rec in ran] == listed
        assert adapter.jobs(Q, "waiting", 10).total == 0


def test_scheduled_and_in_progress_equal_what_celery_inspect_reports(celery, results) -> None:
    kind, broker, adapter = celery
    proc = start_worker(broker, [Q], "holder", pool="threads")
    try:
        seen(adapter)
        later = [send(broker, "celery_app.add", (i, i), countdown=600 + i) for i in range(3)]
        running = send(broker, "celery_app.sleep", (60,))
        wait_for(lambda: len(inspect(broker, "scheduled")) == 3 and len(inspect(broker, "active")) == 1, 30,
                 what="3 held for a countdown, 1 running")  # fmt: skip
        refresh_held(adapter)
        scheduled = adapter.jobs(Q, "scheduled", 2)
        more = adapter.jobs(Q, "scheduled", 2, scheduled.next_cursor)
        assert ids(scheduled) + ids(more) == later  # by ETA: the soonest first
        assert {t["request"]["id"] for t in inspect(broker, "scheduled")} == set(later)
        assert scheduled.total == 3 and all(j.scheduled_for and j.worker == "holder@qw-test" for j in scheduled.items)
        in_progress = adapter.jobs(Q, "in_progress", 10)
        assert ids(in_progress) == [t["id"] for t in inspect(broker, "active")] == [running]
        assert in_progress.items[0].worker == "holder@qw-test" and in_progress.items[0].started_at is not None
        assert adapter.find(running) == [(Q, "in_progress")] and adapter.find(later[0]) == [(Q, "scheduled")]
        detail = adapter.job(Q, later[1])
        assert (detail.state, detail.args, detail.worker) == ("scheduled", (1, 1), "holder@qw-test")
        assert adapter.job(Q, running).state == "in_progress"
        with pytest.raises(Unsupported, match="ETA or a countdown"):
            adapter.enqueue_now(Q, later[:1])
        if kind == "redis":
            with pytest.raises(Unsupported, match="held by a worker"):
                adapter.delete_jobs(Q, later[:1])
    finally:
        stop(proc, signal.SIGKILL)


def test_finished_tasks_are_their_success_records_newest_first_and_found_by_id(celery, results) -> None:
    kind, broker, adapter = celery
    done = [send(broker, "celery_app.add", (i, 1)) for i in range(3)]
    failed = send(broker, "celery_app.fail_with", ("boom",))
    proc = start_worker(broker, [Q], "finisher")
    try:
        wait_for(lambda: len(result_records(results)) == 4, 30, what="4 results")
    finally:
        stop(proc)
    assert adapter.settle()
    records = succeeded(results)
    newest_first = [i for i, _ in sorted(records.items(), key=lambda kv: kv[1]["date_done"], reverse=True)]
    page = adapter.jobs(Q, "finished", 2)
    assert ids(page) + ids(adapter.jobs(Q, "finished", 2, page.next_cursor)) == newest_first
    assert sorted(newest_first) == sorted(done) and page.total == 3
    assert page.items[0].ended_at is not None and page.items[0].worker == "finisher@qw-test"
    assert adapter.find(done[0]) == [(Q, "finished")] and adapter.find(failed) == [(Q, "failed")]
    assert adapter.find("no-such-task") == []
    detail = adapter.job(Q, done[1])
    assert (detail.state, detail.args, dict(detail.details)["result"]) == ("finished", (1, 1), "2")
    assert adapter.job(Q, failed).state != "finished"
    results.delete(f"celery-task-meta-{done[0]}")  # expired: gone from the list at once
    assert done[0] not in ids(adapter.jobs(Q, "finished", 10))
    with pytest.raises(NotFound):
        adapter.job(Q, done[0])


def test_without_result_extended_the_finished_list_says_why(r, results) -> None:
    """Found from the records (they name no queue), and from the worker's configuration when asked."""
    with celery_on("redis", r, results) as (broker, adapter):
        assert adapter.job_states(Q)["finished"] is None
        send(broker, "celery_app.add", (1, 2))
        proc = start_worker(broker, [Q], "plain", extended=False)
        try:
            wait_for(lambda: len(succeeded(results)) == 1, 30, what="the task to run")
            assert adapter.settle()
            assert "1 SUCCESS result records of the last scan name no queue" in (adapter.job_states(Q)["finished"] or "")
            with pytest.raises(Unsupported, match="result_extended"):
                adapter.jobs(Q, "finished", 10)
            discovering = CeleryRedisAdapter(backend="redis", client=r)  # no results configured: asks the worker
            try:
                wait_for(lambda: discovering.maintain(0.5) or discovering.worker_conf, 15, what="its configuration", step=0.2)
                assert "runs without result_extended" in (discovering.job_states(Q)["finished"] or "")
            finally:
                discovering.close()
        finally:
            stop(proc)


def test_a_waiting_task_deleted_on_redis_never_runs(r, results) -> None:
    with celery_on("redis", r, results) as (broker, adapter):
        sent = [send(broker, "celery_app.add", (i, i), priority=p) for i, p in enumerate((0, 5, 0, 9))]
        listed = ids(adapter.jobs(Q, "waiting", 2))  # remembered from the page; the others are searched for
        assert adapter.find(listed[0]) == [(Q, "waiting")]
        assert adapter.job(Q, listed[0]).state == "waiting"
        doomed = [listed[1], sent[3]]  # one shown, one not
        result = adapter.delete_jobs(Q, [*doomed, doomed[0], "no-such-task"])
        assert (result.affected, result.not_found) == (2, ("no-such-task",))
        assert adapter.delete_jobs(Q, doomed).affected == 0  # a second click: nothing more
        assert adapter.jobs(Q, "waiting", 10).total == 2
        proc = start_worker(broker, [Q], "after-delete")
        try:
            wait_for(lambda: len(succeeded(results)) == 2, 30, what="the 2 kept tasks to run")
            wait_for(lambda: adapter.maintain(0.3) or adapter.workers(), 5, what="events", step=0.2)
        finally:
            stop(proc)
        assert set(succeeded(results)) == set(sent) - set(doomed)
        assert not any(d in result_records(results) for d in doomed)


def test_waiting_on_rabbitmq_is_an_inspection_in_queue_order(r, results) -> None:
    with celery_on("rabbitmq", r, results) as (broker, adapter):
        sent = [send(broker, "celery_app.add", (i, i)) for i in range(4)]
        assert adapter.inspects_jobs(Q, "waiting") and not adapter.inspects_jobs(Q, "scheduled")
        with pytest.raises(Unsupported, match="inspection"):
            adapter.jobs(Q, "waiting", 10)
        inspection = adapter.inspect_jobs(Q, "waiting")
        assert [j.id for j in inspection.rows] == sent and inspection.total == 4
        assert inspection.detail(sent[2]).args == (2, 2)
        with pytest.raises(Unsupported):
            adapter.delete_jobs(Q, sent[:1])
        proc = start_worker(broker, [Q], "rabbit-order")
        try:
            wait_for(lambda: len(succeeded(results)) == 4, 30, what="the 4 tasks")
        finally:
            stop(proc)
        ran = sorted(succeeded(results).values(), key=lambda rec: rec["date_done"])
        assert [rec["task_id"] for rec in ran] == sent


def test_a_revoked_task_is_skipped_and_cannot_be_restored(celery, results) -> None:
    kind, broker, adapter = celery
    with pytest.raises(Unsupported, match="No live Celery worker"):
        adapter.revoke(Q, ["x"])
    proc = start_worker(broker, [Q], "revoker", pool="threads")
    try:
        seen(adapter)
        skipped = send(broker, "celery_app.add", (1, 1), countdown=4)
        kept = send(broker, "celery_app.add", (2, 2), countdown=4)
        wait_for(lambda: len(inspect(broker, "scheduled")) == 2, 20, what="both held for their countdown")
        assert adapter.revoke(Q, [skipped, skipped]).affected == 1
        wait_for(lambda: skipped in (inspect(broker, "revoked") or []), 10, what="the worker to list it revoked")
        wait_for(lambda: kept in succeeded(results), 30, what="the other task to run")
        wait_for(lambda: result_records(results).get(skipped, {}).get("status") == "REVOKED", 10, what="REVOKED")
        assert skipped not in succeeded(results)
        with pytest.raises(Unsupported, match="cannot undo a revoke"):
            adapter.restore(Q, [skipped])
        assert adapter.settle()
        assert adapter.find(skipped) in ([(Q, "canceled")], [])  # REVOKED names its queue only when a worker met it
    finally:
        stop(proc, signal.SIGKILL)
