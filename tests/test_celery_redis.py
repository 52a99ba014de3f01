"""The Celery adapter on a Redis broker (database 14) with Redis results (database 15),
against tasks run by real Celery workers."""

from __future__ import annotations

import base64
import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from celery_app import (
    BROKER, RESULTS, producer, ran_successfully, result_records, run_worker_until, start_worker, stop, terminal_count,
    wait_for,
)  # fmt: skip
from conftest import REDIS_HOST, REDIS_PORT, CommandCounter, redis_digest
from contract import AdapterContract, JobFactory, MaintainedAdapterContract

from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.celery.on_redis import CeleryRedisAdapter
from queuewatch.adapters.celery.index import UNKNOWN
from queuewatch.adapters.celery.messages import SEP, list_key
from queuewatch.adapters.errors import NotFound, Unsupported

pytestmark = pytest.mark.redis_db(14)


def queue_depth(r: redis.Redis, queue: str, prefix: str = "") -> int:
    return sum(r.llen(list_key(queue, p, prefix)) for p in (0, 3, 6, 9))


class CeleryRedisJobs(JobFactory):
    def __init__(self, adapter: CeleryRedisAdapter, r: redis.Redis, results: redis.Redis, queue: str, flag: Path,
                 broker: str = BROKER) -> None:  # fmt: skip
        self.adapter, self.r, self.results, self.queue, self.flag, self.broker = adapter, r, results, queue, flag, broker

    def send(self, name: str, args: tuple, kwargs: dict | None = None, **options) -> str:
        with producer(self.broker) as app:
            return app.send_task(name, args, kwargs or {}, queue=self.queue, **options).id

    def failed(self, n: int) -> list[str]:
        ids = [self.send("celery_app.fail_unless_exists", (str(self.flag), i), {"note": f"job {i}"}) for i in range(n)]
        self.run_worker()
        records = result_records(self.results)
        assert all(records[i]["status"] == "FAILURE" for i in ids)
        assert self.adapter.settle()
        return ids

    def waiting(self, n: int) -> list[str]:
        return [self.send("celery_app.add", (i, i)) for i in range(n)]

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        expected = terminal_count(self.results) + queue_depth(self.r, self.queue)
        run_worker_until(self.broker, [self.queue], lambda: terminal_count(self.results) >= expected)

    def succeeded(self, job_id: str) -> bool:
        return ran_successfully(self.results, job_id)

    def digest(self) -> object:
        return redis_digest(self.r), redis_digest(self.results)


@pytest.fixture
def results(redis_db: int):
    """The result backend: database 15, emptied before and after."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def adapter(r, results):
    adapter = CeleryRedisAdapter(backend="redis", client=r, results_client=results)
    yield adapter
    adapter.close()


class TestCeleryRedisContract(AdapterContract, MaintainedAdapterContract):
    """The whole contract. Requeue publishes a NEW task (new id, parent_id = the
    failed id): ``succeeded`` follows parent_id to it, as Celery users would."""

    @pytest.fixture
    def jobs(self, adapter, r, results, tmp_path) -> CeleryRedisJobs:
        return CeleryRedisJobs(adapter, r, results, "contract <q>/1", tmp_path / "flag")


def send(queue: str, name: str, args: tuple, kwargs: dict | None = None, *, broker: str = BROKER, **options) -> str:
    with producer(broker, **{k: options.pop(k) for k in ("keyprefix", "extended") if k in options}) as app:
        return app.send_task(name, args, kwargs or {}, queue=queue, **options).id


def fail(queue: str, results: redis.Redis, n: int = 1, **options) -> list[str]:
    """``n`` tasks of ``queue`` that a real worker ran and failed."""
    ids = [send(queue, "celery_app.fail_unless_exists", ("/no/such/flag", i), {"note": f"job {i}"},
                **{k: v for k, v in options.items() if k == "keyprefix"}) for i in range(n)]  # fmt: skip
    run_worker_until(options.pop("broker", BROKER), [queue], lambda: terminal_count(results) >= len(ids), **options)
    return ids


def test_counts_equal_what_the_broker_holds_across_priorities_and_reserved_tasks(r, results, adapter) -> None:
    for priority, n in ((0, 2), (4, 1), (7, 1), (9, 3)):
        for i in range(n):
            send("emails.high", "celery_app.add", (i, priority), priority=priority)
    send("reports:nightly", "celery_app.add", (1, 1))
    send("reports:nightly", "celery_app.add", (2, 2))
    send("celery", "celery_app.add", (3, 3))
    for seconds in (30, 30, 30):
        send("slow", "celery_app.sleep", (seconds,))
    worker = start_worker(BROKER, ["slow"], "slowpoke")
    try:
        wait_for(lambda: r.hlen("unacked") >= 1 and queue_depth(r, "slow") < 3, 20, what="a reserved task")
        assert adapter.settle()
        reserved, waiting = r.hlen("unacked"), queue_depth(r, "slow")
        stats = {q.name: q for q in adapter.queues()}
        assert set(stats) == {"emails.high", "reports:nightly", "celery", "slow"}
        assert (stats["slow"].depth, stats["slow"].in_progress) == (waiting, reserved)
        assert reserved + waiting == 3
    finally:
        stop(worker, signal.SIGKILL)
    high = stats["emails.high"]
    assert high.depth == queue_depth(r, "emails.high") == 7
    assert dict(high.details)["priority 0-2"] == r.llen("emails.high") == 2
    assert dict(high.details)["priority 3-5"] == r.llen(f"emails.high{SEP}3") == 1
    assert dict(high.details)["priority 6-8"] == r.llen(f"emails.high{SEP}6") == 1
    assert dict(high.details)["priority 9"] == r.llen(f"emails.high{SEP}9") == 3
    assert (high.in_progress, stats["reports:nightly"].depth, stats["celery"].depth) == (0, 2, 1)
    assert adapter.purge("emails.high").affected == 7
    assert queue_depth(r, "emails.high") == 0 and adapter.queue("reports:nightly").depth == 2


def test_a_worker_is_alive_within_5s_of_starting_and_dead_within_10s_of_kill_9(adapter) -> None:
    adapter.maintain(0.2)
    started = time.monotonic()
    worker = start_worker(BROKER, ["celery", "emails"], "doomed")
    try:
        wait_for(lambda: any(w.alive for w in adapter.workers()), 5, what="the worker alive")
        assert time.monotonic() - started < 5
        wait_for(lambda: adapter.maintain(0.5) or adapter.workers()[0].queues, 5, what="its queues", step=0.2)
        [seen] = adapter.workers()
        assert (seen.name, seen.pid, seen.version, seen.state) == ("doomed@qw-test", worker.pid, celery_version(), "idle")
        assert seen.queues == ("celery", "emails") and seen.last_heartbeat is not None
        details = dict(seen.details)
        assert details["heartbeat every"] == "2 s" and len(details["load average"].split()) == 3
        assert {q.name: q.workers for q in adapter.queues()} == {"celery": 1, "emails": 1}
    finally:
        stop(worker, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not any(w.alive for w in adapter.workers()), 10, what="the worker dead")
    assert time.monotonic() - killed < 10
    [dead] = adapter.workers()
    assert (dead.state, dead.alive) == ("dead", False)
    assert {q.name: q.workers for q in adapter.queues()} == {"celery": 0, "emails": 0}


def test_a_worker_that_says_goodbye_is_offline_at_once(adapter) -> None:
    adapter.maintain(0.2)
    worker = start_worker(BROKER, ["celery"], "polite")
    wait_for(lambda: any(w.alive for w in adapter.workers()), 5, what="the worker alive")
    stop(worker)
    wait_for(lambda: [w.state for w in adapter.workers()] == ["offline"], 2, what="worker-offline")


def celery_version() -> str:
    import celery

    return celery.__version__


def test_the_result_backend_is_found_from_the_workers_configuration(r, results) -> None:
    adapter = CeleryRedisAdapter(backend="redis", client=r)  # results in another database than the broker
    try:
        [task_id] = fail("found", results)
        adapter.maintain(0.2)
        assert adapter.results.label == "the broker's database 14" and adapter.failed("found", 10).total == 0
        worker = start_worker(BROKER, ["found"], "informant")
        try:
            wait_for(lambda: adapter.maintain(0.5) or adapter.worker_conf, 8, what="its configuration", step=0.2)
        finally:
            stop(worker)
        assert adapter.results.label == f"{RESULTS} (from worker informant@qw-test's configuration)"
        assert adapter.settle()
        assert [j.id for j in adapter.failed("found", 10).items] == [task_id]
    finally:
        adapter.close()


def test_requeue_republishes_the_exact_arguments_as_a_new_task_on_its_priority_list(r, results, adapter, tmp_path) -> None:
    flag, note = tmp_path / "flag", "x" * 3000
    [task_id] = [send("mail", "celery_app.fail_unless_exists", (str(flag), 7), {"note": note}, priority=6)]
    run_worker_until(BROKER, ["mail"], lambda: terminal_count(results) >= 1)
    stored = result_records(results)[task_id]
    assert len(stored["args"][0]) < 1000 and stored["kwargs"]["note"] == note  # not argsrepr's cut text
    assert adapter.settle()
    detail = adapter.job("mail", task_id)
    assert detail.kwargs == {"note": note} and detail.args == (str(flag), 7)
    assert adapter.requeue("mail", [task_id]).affected == 1
    [raw] = r.lrange("mail", 0, -1)  # priority 0 when the record does not say: the queue's first list
    envelope = json.loads(raw)
    headers, props = envelope["headers"], envelope["properties"]
    args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs, embed["chain"]) == ([str(flag), 7], {"note": note}, None)
    assert headers["task"] == "celery_app.fail_unless_exists" and headers["id"] != task_id
    assert (headers["parent_id"], headers["root_id"], headers["retries"]) == (task_id, task_id, 0)
    assert props["delivery_info"] == {"exchange": "", "routing_key": "mail"} and props["priority"] == 0
    assert props["body_encoding"] == "base64" and props["delivery_tag"]
    assert task_id not in result_records(results)  # the failure record went with the requeue
    flag.touch()
    run_worker_until(BROKER, ["mail"], lambda: ran_successfully(results, task_id))
    new = result_records(results)[headers["id"]]
    assert (new["status"], new["parent_id"], new["kwargs"]) == ("SUCCESS", task_id, {"note": note})


def test_requeue_with_results_in_the_broker_database_is_one_atomic_step(r, results, tmp_path) -> None:
    adapter = CeleryRedisAdapter(backend="redis", client=r)  # results default to the broker's database
    try:
        send("same", "celery_app.fail_unless_exists", (str(tmp_path / "flag"), 1))
        run_worker_until(BROKER, ["same"], lambda: terminal_count(r) >= 1, results=BROKER)
        assert adapter.settle()
        [row] = adapter.failed("same", 10).items
        assert adapter.requeue("same", [row.id]).affected == 1
        assert adapter.requeue("same", [row.id]).not_found == (row.id,)
        assert (r.llen("same"), r.exists(f"celery-task-meta-{row.id}")) == (1, 0)
        (tmp_path / "flag").touch()
        run_worker_until(BROKER, ["same"], lambda: ran_successfully(r, row.id), results=BROKER)
    finally:
        adapter.close()


def test_failures_without_result_extended_are_under_queue_unknown_and_cannot_be_requeued(r, results, adapter) -> None:
    [task_id] = fail("plain", results, extended=False)
    assert adapter.settle()
    assert adapter.failed("plain", 10).total == 0
    unknown = adapter.queue(UNKNOWN)
    assert unknown.failed == 1 and "result_extended" in unknown.notes[0]
    assert [j.id for j in adapter.failed(UNKNOWN, 10).items] == [task_id]
    detail = adapter.job(UNKNOWN, task_id)
    assert detail.notes[0].startswith("Requeue is refused:") and "result_extended" in detail.notes[0]
    assert detail.error_type == "FileNotFoundError" and detail.traceback
    with pytest.raises(Unsupported, match="result_extended"):
        adapter.requeue(UNKNOWN, [task_id])
    with pytest.raises(Unsupported):
        adapter.purge(UNKNOWN)
    assert adapter.delete(UNKNOWN, [task_id]).affected == 1
    assert not results.exists(f"celery-task-meta-{task_id}")
    with pytest.raises(NotFound):
        adapter.queue(UNKNOWN)


def test_task_failed_events_show_a_failure_before_its_record_is_read(r, results, tmp_path) -> None:
    adapter = CeleryRedisAdapter(backend="redis", client=r, results_client=r)  # no results in database 14
    try:
        adapter.maintain(0.2)
        [task_id] = fail("evented", results)
        wait_for(lambda: adapter.index.entry(task_id) is not None, 5, what="the task-failed event")
        [row] = adapter.failed(UNKNOWN, 10).items
        assert (row.id, row.function, row.error_type) == (task_id, "celery_app.fail_unless_exists", "FileNotFoundError")
        assert "Requeue is refused" in adapter.job(UNKNOWN, task_id).notes[0]
        adapter.link_results(client=results)
        assert adapter.settle()
        assert adapter.failed(UNKNOWN, 10).total == 0 and [j.id for j in adapter.failed("evented", 10).items] == [task_id]
    finally:
        adapter.close()


def test_a_global_keyprefix_is_followed_for_queues_events_and_requeue(r, results, tmp_path) -> None:
    adapter = CeleryRedisAdapter(backend="redis", client=r, results_client=results, keyprefix="qw:")
    try:
        adapter.maintain(0.2)
        send("pre", "celery_app.add", (1, 2), keyprefix="qw:")
        assert r.exists("qw:pre") and not r.exists("pre")
        # Prefixed keys have no fixed name: the backend's survey finds them.
        assert "celery" in [a.system for a in RedisBackend(name="redis", url="redis://unused", client=r).probe()]
        [task_id] = fail("pre", results, keyprefix="qw:")
        # Under load the worker's record can land after fail() saw its result: scan until it is in.
        wait_for(lambda: adapter.settle() and adapter.queue("pre").failed == 1, 15, what="the prefixed failure indexed")
        assert {q.name for q in adapter.queues()} == {"pre"}
        assert adapter.workers() and adapter.workers()[0].name == "runner@qw-test"
        assert adapter.requeue("pre", [task_id]).affected == 1
        assert r.llen("qw:pre") == 1 and adapter.queue("pre").depth == 1
        (tmp_path / "flag").touch()
    finally:
        adapter.close()


def test_state_survives_a_restart_and_corrects_itself(r, results) -> None:
    first = CeleryRedisAdapter(backend="redis", client=r, results_client=results)
    first.maintain(0.2)
    ids = fail("kept", results, n=2)
    wait_for(lambda: len(first.workers()) == 1, 5, what="the worker seen")
    assert first.settle()
    state = json.loads(json.dumps(first.dump_memory()))
    first.close()
    second = CeleryRedisAdapter(backend="redis", client=r, results_client=results)
    try:
        second.load_memory(state)
        [worker] = second.workers()
        assert worker.name == "runner@qw-test" and worker.pid
        assert sorted(j.id for j in second.failed("kept", 10).items) == sorted(ids)  # before any scan
        results.delete(f"celery-task-meta-{ids[0]}")
        assert second.settle()
        assert [j.id for j in second.failed("kept", 10).items] == [ids[1]]
    finally:
        second.close()


def test_a_pickled_result_is_shown_never_unpickled_and_not_requeued(r, results, adapter, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    record = {"status": "FAILURE", "result": Evil(), "traceback": "Traceback (most recent call last):\nKeyError: 'x'",
              "date_done": "2026-01-01T00:00:00+00:00", "name": "app.evil", "args": [Evil()], "kwargs": {},
              "queue": "pickled", "task_id": "evil"}  # fmt: skip
    results.set("celery-task-meta-evil", pickle.dumps(record))
    assert adapter.settle()
    [row] = adapter.failed("pickled", 10).items
    detail = adapter.job("pickled", "evil")
    assert "system" in str(detail.args[0]) and detail.payload_encoding == "pickle"
    assert "not JSON" in detail.notes[0]
    with pytest.raises(Unsupported, match="not JSON"):
        adapter.requeue("pickled", ["evil"])
    assert not marker.exists() and row.function == "app.evil"


def test_the_listener_reconnects_after_its_connection_is_killed(r, adapter) -> None:
    adapter.maintain(0.2)
    wait_for(lambda: adapter.listener.connected, 5, what="the listener")
    listening = [c["id"] for c in r.client_list() if c.get("db") == "14" and c.get("psub") not in (None, "0")]
    assert listening and all(r.client_kill_filter(_id=i) for i in listening)
    # redis-py 5 raises and the listener reconnects; redis-py 8 resubscribes by itself: either way a new
    # subscription, and events again.
    wait_for(lambda: [c for c in r.client_list() if c.get("psub") not in (None, "0") and c["id"] not in listening],
             10, what="a new subscription")  # fmt: skip
    worker = start_worker(BROKER, ["celery"], "after-outage")
    try:
        wait_for(lambda: any(w.alive for w in adapter.workers()), 8, what="events after the reconnect")
    finally:
        stop(worker, signal.SIGKILL)


def test_the_backend_finds_celery_by_itself(r, redis_url) -> None:
    backend = RedisBackend(name="redis", url=redis_url)
    try:
        assert "celery" not in [a.system for a in backend.probe()]
        send("discovered", "celery_app.add", (1, 2))
        assert "celery" in [a.system for a in backend.probe()]
    finally:
        backend.close()


def failure_record(task_id: str, queue: str, n: int) -> bytes:
    """A FAILURE result as a worker with result_extended writes it."""
    return json.dumps({
        "status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": [f"bad {n}"], "exc_module": "builtins"},
        "traceback": f"Traceback (most recent call last):\nValueError: bad {n}\n", "children": [],
        "date_done": f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}+00:00", "name": "app.task", "args": [n],
        "kwargs": {}, "worker": "w@h", "retries": 0, "queue": queue, "task_id": task_id,
    }).encode()  # fmt: skip


def test_the_index_is_built_in_budgeted_steps_and_page_views_never_scan(r, results, adapter) -> None:
    with results.pipeline() as pipe:
        for n in range(1_200):
            pipe.set(f"celery-task-meta-t{n:04d}", failure_record(f"t{n:04d}", "bulk", n), ex=3600)
        for n in range(300):
            pipe.set(f"celery-task-meta-ok{n}", json.dumps({"status": "SUCCESS", "result": n}), ex=3600)
        pipe.execute()
    adapter.maintain(0.0)  # one SCAN step of COUNT 500: about a third of the keys
    assert not adapter.index.complete and any("partial" in n for n in adapter.queue("bulk").notes)
    for _ in range(20):
        adapter.maintain(0.0)
        if adapter.index.complete:
            break
    assert adapter.index.complete and adapter.queue("bulk").failed == 1_200
    first = adapter.failed("bulk", 50)
    assert [j.id for j in first.items][:2] == ["t1199", "t1198"] and first.total == 1_200
    second = adapter.failed("bulk", 50, first.next_cursor)
    assert second.items[0].id == "t1149" and second.prev_cursor == "0"
    with CommandCounter(15) as counter:
        adapter.failed("bulk", 50, second.next_cursor)
        adapter.job("bulk", "t0500")
        adapter.queue("bulk")
    assert not [c for c in counter.commands if c.split()[0].strip('"').upper() in ("SCAN", "KEYS")]
    assert counter.count <= 50 + 5  # O(page): one EXISTS a row, one GET for the detail


def test_memory_is_bounded_and_counts_beyond_the_cap_are_estimated(r, results, adapter, monkeypatch) -> None:
    monkeypatch.setattr(adapter.index, "max_per_queue", 10)
    with results.pipeline() as pipe:
        for n in range(30):
            pipe.set(f"celery-task-meta-c{n:02d}", failure_record(f"c{n:02d}", "capped", n), ex=3600)
        pipe.execute()
    assert adapter.settle() and adapter.settle()  # the second pass counts what the first could not keep
    stats = adapter.queue("capped")
    assert stats.failed == 30 and any("estimated" in n for n in stats.notes)
    page = adapter.failed("capped", 50)
    assert len(page.items) <= 11 and page.items[0].id == "c29"


def test_no_job_library_is_imported_by_the_celery_adapters() -> None:
    code = ("import sys, queuewatch.adapters.celery.on_redis, queuewatch.adapters.celery.on_rabbitmq, queuewatch.adapters.backends; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu', 'billiard')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
