"""Control of live Celery work (issue 17, Celery part) with real workers on a Redis broker
(database 14) and a RabbitMQ broker (a fresh vhost): stop a running task (prefork: it ends
REVOKED and the worker lives on; solo/threads: refused), pause and resume a queue (also
for a worker started during the pause), grow and shrink a pool, shut a worker down."""

from __future__ import annotations

import json
import signal
import time

import pytest
from celery_app import producer, result_records, start_worker, stop, wait_for
from test_celery_jobs import Q, celery_on, inspect, results, seen, send, succeeded  # noqa: F401 - fixtures

from queuewatch.adapters.celery.control import Pauses
from queuewatch.adapters.errors import NotFound, Unsupported

pytestmark = pytest.mark.redis_db(14)


@pytest.fixture(params=["redis", "rabbitmq"])
def celery(request, r, results):  # noqa: F811
    with celery_on(request.param, r, results) as pair:
        yield (request.param, *pair)


def stats(broker: str, worker: str) -> dict:
    with producer(broker) as app:
        return (app.control.inspect(timeout=2, destination=[worker]).stats() or {}).get(worker) or {}


def depth(kind: str, broker: str, r) -> int:
    if kind == "redis":
        return sum(r.llen(k) for k in (Q, f"{Q}\x06\x163", f"{Q}\x06\x166", f"{Q}\x06\x169"))
    from test_amqp_adapter import channel

    with channel(broker) as ch:
        return ch.queue_declare(Q, passive=True).method.message_count


def test_stop_terminates_a_prefork_task_which_ends_revoked_and_the_worker_lives_on(celery, results) -> None:  # noqa: F811
    kind, broker, adapter = celery
    proc = start_worker(broker, [Q], "forked", pool="prefork")
    try:
        seen(adapter)
        long = send(broker, "celery_app.sleep", (120,))
        wait_for(lambda: [t["id"] for t in inspect(broker, "active")] == [long], 30, what="the task to run")
        with pytest.raises(NotFound):
            adapter.stop(Q, "not-running")
        assert adapter.stop(Q, long) == "forked@qw-test"
        wait_for(lambda: result_records(results).get(long, {}).get("status") == "REVOKED", 15, what="REVOKED")
        assert inspect(broker, "active") == [] and proc.poll() is None
        after = send(broker, "celery_app.add", (2, 3))
        wait_for(lambda: after in succeeded(results), 30, what="the worker to run the next task")
    finally:
        stop(proc, signal.SIGKILL)


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_stop_on_a_solo_or_threads_worker_says_it_cannot(r, results, pool) -> None:  # noqa: F811
    with celery_on("redis", r, results) as (broker, adapter):
        proc = start_worker(broker, [Q], f"no-terminate-{pool}", pool=pool)
        try:
            seen(adapter)  # the sampler asks its stats while it is idle
            long = send(broker, "celery_app.sleep", (20,))
            wait_for(lambda: not r.llen(Q), 20, what="the worker to take the task")
            time.sleep(1.0)  # it starts it at once (threads: inspect active names it; solo: it answers nothing)
            # threads: the worker answers that it runs it; solo: it cannot answer while it runs.
            with pytest.raises(Unsupported, match="runs a threads pool" if pool == "threads" else "solo pool"):
                adapter.stop(Q, long)
            assert result_records(results).get(long, {}).get("status") != "REVOKED"
        finally:
            stop(proc, signal.SIGKILL)


def test_a_paused_queue_waits_also_for_a_worker_started_during_the_pause_until_resume(celery, r, results, tmp_path) -> None:  # noqa: F811
    kind, broker, adapter = celery

    class Store(dict):  # the dashboard's state store: get/put of settings
        def get(self, key):  # type: ignore[override]
            return super().get(key)

        def put(self, key, value):
            self[key] = value

    store = Store()
    adapter.use_store(store)
    first = start_worker(broker, [Q], "first")
    second = None
    try:
        seen(adapter)
        assert adapter.paused(Q) is False
        assert adapter.pause(Q, True) is True and adapter.paused(Q) is True
        assert json.loads(store["celery.paused:" + adapter.backend])[Q]["workers"].keys() == {"first@qw-test"}
        wait_for(lambda: Q not in [q["name"] for w in (producer_queues(broker)).values() for q in w], 10,
                 what="the worker to stop consuming")  # fmt: skip
        # Started while paused (with nothing waiting: a worker takes what it prefetches in the second before
        # it says which queues it consumes, which is when the pause can be re-applied to it).
        second = start_worker(broker, [Q], "second")
        wait_for(lambda: adapter.maintain(0.5) or "second@qw-test" in json.loads(store["celery.paused:" + adapter.backend])[Q]["workers"],
                 20, what="the pause to be re-applied to the new worker", step=0.2)  # fmt: skip
        waiting = [send(broker, "celery_app.add", (i, i)) for i in range(3)]
        time.sleep(2)
        assert depth(kind, broker, r) == 3 and not succeeded(results)
        more = [send(broker, "celery_app.add", (i, 10)) for i in range(3)]
        time.sleep(2)
        adapter.maintain(0.5)  # the sampler's upkeep does not resume it either
        assert depth(kind, broker, r) == 6 and not succeeded(results)  # jobs keep arriving and waiting
        assert not [q for w in producer_queues(broker).values() for q in w if q["name"] == Q]
        # A dashboard restarted meanwhile knows the pause: from the store, or from the adapter's saved memory.
        restarted = Pauses(adapter.pauses.key)
        restarted.store = store
        assert restarted.get(Q) is not None
        remembered = Pauses("elsewhere")
        remembered.load(adapter.dump_memory()["paused"])
        assert set(remembered.all()) == {Q}
        assert adapter.pause(Q, False) is False and adapter.paused(Q) is False
        wait_for(lambda: set(succeeded(results)) == set(waiting + more), 30, what="the 6 tasks to run after resume")
        workers = {rec["worker"] for rec in succeeded(results).values()}
        assert workers <= {"first@qw-test", "second@qw-test"}
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second, signal.SIGKILL)


def producer_queues(broker: str) -> dict:
    with producer(broker) as app:
        return app.control.inspect(timeout=2).active_queues() or {}


def test_pool_grow_shrink_and_shutdown(celery, results) -> None:  # noqa: F811
    kind, broker, adapter = celery
    proc = start_worker(broker, [Q], "pooled", pool="prefork")
    name = "pooled@qw-test"
    try:
        seen(adapter)
        assert stats(broker, name)["pool"]["max-concurrency"] == 2
        assert "ok" in adapter.control_worker(name, "pool_grow", 2)
        wait_for(lambda: len(stats(broker, name)["pool"]["processes"]) == 4, 15, what="4 pool processes")
        adapter.control_worker(name, "pool_shrink", 1)
        wait_for(lambda: len(stats(broker, name)["pool"]["processes"]) == 3, 15, what="3 pool processes")
        with pytest.raises(Unsupported, match="n must be"):
            adapter.control_worker(name, "pool_grow", 0)
        with pytest.raises(Unsupported):
            adapter.control_worker(name, "explode")
        with pytest.raises(NotFound):
            adapter.control_worker("nobody@nowhere", "shutdown")
        adapter.control_worker(name, "shutdown")
        proc.wait(30)
        assert proc.returncode == 0
    finally:
        stop(proc, signal.SIGKILL)
