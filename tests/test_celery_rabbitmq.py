"""The Celery adapter on a RabbitMQ broker (a fresh vhost ``qw-test-celery-*`` per test)
with Redis results (database 15), against tasks run by real Celery workers."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from celery_app import (
    RESULTS, producer, ran_successfully, result_records, run_worker_until, start_worker, stop, terminal_count, wait_for,
)  # fmt: skip
from conftest import REDIS_HOST, REDIS_PORT, redis_digest
from contract import AdapterContract, JobFactory, MaintainedAdapterContract
from test_amqp_adapter import _AUTH, MANAGEMENT, channel, new_vhost, rabbit_digest, ready

from queuewatch.adapters.backends import RabbitBackend
from queuewatch.adapters.celery.on_rabbitmq import CeleryRabbitAdapter
from queuewatch.adapters.errors import NotFound


@pytest.fixture
def vhost():
    with new_vhost("celery") as url:
        yield url


@pytest.fixture
def results():
    """The result backend: database 15, emptied before and after."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def backend(vhost):
    backend = RabbitBackend(name="rabbitmq", url=vhost)
    yield backend
    backend.close()


@pytest.fixture
def adapter(backend, results):
    adapter = CeleryRabbitAdapter(backend="rabbitmq", rabbit=backend, results_client=results)
    yield adapter
    adapter.close()


def send(url: str, queue: str, name: str, args: tuple, kwargs: dict | None = None, **options) -> str:
    with producer(url, **{k: options.pop(k) for k in ("dead_letters",) if k in options}) as app:
        return app.send_task(name, args, kwargs or {}, queue=queue, **options).id


class CeleryRabbitJobs(JobFactory):
    def __init__(self, adapter: CeleryRabbitAdapter, url: str, results: redis.Redis, queue: str, flag: Path) -> None:
        self.adapter, self.url, self.results, self.queue, self.flag = adapter, url, results, queue, flag

    def failed(self, n: int) -> list[str]:
        ids = [send(self.url, self.queue, "celery_app.fail_unless_exists", (str(self.flag), i), {"note": f"job {i}"})
               for i in range(n)]  # fmt: skip
        self.run_worker()
        assert all(result_records(self.results)[i]["status"] == "FAILURE" for i in ids)
        assert self.adapter.settle()
        return ids

    def waiting(self, n: int) -> list[str]:
        return [send(self.url, self.queue, "celery_app.add", (i, i)) for i in range(n)]

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        expected = terminal_count(self.results) + ready(self.url, self.queue)
        run_worker_until(self.url, [self.queue], lambda: terminal_count(self.results) >= expected)
        self.adapter.rabbit.directory.changed()

    def succeeded(self, job_id: str) -> bool:
        return ran_successfully(self.results, job_id)

    def digest(self) -> object:
        # The queue's messages, in order, and the result backend. The listener's own
        # exclusive queue (celeryev.queuewatch-*) is the one thing maintain() declares.
        return rabbit_digest(self.url, [self.queue]), redis_digest(self.results)


class TestCeleryRabbitContract(AdapterContract, MaintainedAdapterContract):
    """The whole contract; ``succeeded`` follows parent_id to the task a requeue made."""

    @pytest.fixture
    def jobs(self, adapter, vhost, results, tmp_path) -> CeleryRabbitJobs:
        return CeleryRabbitJobs(adapter, vhost, results, "contract <q>/1", tmp_path / "flag")


def test_counts_equal_what_rabbitmq_holds_and_workers_are_followed(vhost, backend, adapter) -> None:
    for priority in (0, 5, 9, 9):
        send(vhost, "emails.high", "celery_app.add", (priority, 1), priority=priority)
    send(vhost, "reports:nightly", "celery_app.add", (1, 1))
    adapter.maintain(0.2)
    started = time.monotonic()
    worker = start_worker(vhost, ["celery", "slow"], "rabbit")
    try:
        wait_for(lambda: any(w.alive for w in adapter.workers()), 5, what="the worker alive")
        assert time.monotonic() - started < 5
        wait_for(lambda: adapter.maintain(0.5) or adapter.workers()[0].queues, 5, what="its queues", step=0.2)
        [seen] = adapter.workers()
        assert (seen.name, seen.pid, seen.queues) == ("rabbit@qw-test", worker.pid, ("celery", "slow"))
        backend.directory.changed()
        stats = {q.name: q for q in adapter.queues()}
        assert {"emails.high", "reports:nightly", "celery", "slow"} <= set(stats)
        assert (stats["emails.high"].depth, stats["reports:nightly"].depth) == (4, 1)
        assert stats["emails.high"].depth == ready(vhost, "emails.high")
        assert (stats["celery"].workers, stats["slow"].workers, stats["emails.high"].workers) == (1, 1, 0)
        plain = [q.name for q in backend.adapter("amqp").queues()] if "amqp" in [a.system for a in backend.probe()] else []
        assert not {"emails.high", "celery", "slow"} & set(plain)  # Celery's queues are not shown as plain ones
    finally:
        stop(worker, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not any(w.alive for w in adapter.workers()), 10, what="the worker dead")
    assert time.monotonic() - killed < 10 and adapter.workers()[0].state == "dead"


def test_a_failed_task_is_requeued_with_confirms_and_a_real_worker_runs_it(vhost, adapter, results, tmp_path) -> None:
    note = "y" * 2000
    task_id = send(vhost, "team/jobs", "celery_app.fail_unless_exists", (str(tmp_path / "flag"), 1), {"note": note})
    run_worker_until(vhost, ["team/jobs"], lambda: terminal_count(results) >= 1)
    assert adapter.settle()
    assert adapter.queue("team/jobs").failed == 1
    assert adapter.requeue("team/jobs", [task_id]).affected == 1
    assert adapter.requeue("team/jobs", [task_id]).not_found == (task_id,)
    with channel(vhost) as ch:
        method, props, body = ch.basic_get("team/jobs", auto_ack=False)
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert json.loads(body)[:2] == [[str(tmp_path / "flag"), 1], {"note": note}]
    assert (props.headers["parent_id"], props.headers["retries"], props.delivery_mode) == (task_id, 0, 2)
    assert props.content_type == "application/json" and props.headers["id"] != task_id
    (tmp_path / "flag").touch()
    run_worker_until(vhost, ["team/jobs"], lambda: ran_successfully(results, task_id))


def test_a_queue_with_a_dead_letter_exchange_gets_the_dead_letter_view_and_redrive(vhost, backend, adapter, results) -> None:
    with channel(vhost) as ch:
        ch.queue_declare("work.dlq", durable=True)
    ids = [send(vhost, "work", "celery_app.reject", (i,), dead_letters="work=work.dlq") for i in range(2)]
    run_worker_until(vhost, ["work"], lambda: ready(vhost, "work.dlq") == 2, dead_letters="work=work.dlq")
    backend.directory.changed()
    stats = {q.name: q for q in adapter.queues()}
    assert stats["work"].links == (("dead letters", "work.dlq"),) and dict(stats["work"].details)["dead-lettered"] == 2
    dlq = stats["work.dlq"]
    assert (dlq.failed, dlq.links) == (2, (("original queue", "work"),))
    page = adapter.failed("work.dlq", 10)
    assert sorted(j.id for j in page.items) == sorted(ids)
    assert {(j.function, j.error_type) for j in page.items} == {("celery_app.reject", "rejected")}
    detail = adapter.job("work.dlq", ids[0])
    assert detail.args == (0,) and detail.status == "dead-lettered"
    with pytest.raises(NotFound):
        adapter.job("work.dlq", "no-such-task")
    assert adapter.requeue("work.dlq", [ids[0]]).affected == 1
    assert (ready(vhost, "work"), ready(vhost, "work.dlq")) == (1, 1)
    with channel(vhost) as ch:
        method, props, _ = ch.basic_get("work", auto_ack=True)
    assert props.headers["id"] == ids[0]  # redriven as it was, x-death and all
    assert adapter.delete("work.dlq", [ids[1]]).affected == 1
    assert ready(vhost, "work.dlq") == 0
    plain = [q.name for q in backend.adapter("amqp").queues()] if "amqp" in [a.system for a in backend.probe()] else []
    assert "work" not in plain and "work.dlq" not in plain


def test_the_listener_reconnects_after_rabbitmq_closes_its_connection(vhost, adapter) -> None:
    adapter.maintain(0.2)
    worker = start_worker(vhost, ["celery"], "first")
    try:
        wait_for(lambda: adapter.listener.connected and any(w.alive for w in adapter.workers()), 10, what="events")
    finally:
        stop(worker, signal.SIGKILL)
    wait_for(lambda: connections_consuming(vhost, adapter.listener.queue), 15, what="management stats")
    for name in connections_consuming(vhost, adapter.listener.queue):
        request = urllib.request.Request(f"{MANAGEMENT}connections/{quote(name, safe='')}", method="DELETE",
                                         headers={"Authorization": _AUTH})  # fmt: skip
        urllib.request.urlopen(request, timeout=10).read()
    wait_for(lambda: not adapter.listener.connected, 5, what="the listener to notice")
    worker = start_worker(vhost, ["celery"], "second")
    try:
        wait_for(lambda: any(w.alive and w.name == "second@qw-test" for w in adapter.workers()), 10, what="reconnect")
    finally:
        stop(worker, signal.SIGKILL)


def connections_consuming(vhost: str, queue: str) -> list[str]:
    name = vhost.rsplit("/", 1)[1]
    request = urllib.request.Request(f"{MANAGEMENT}consumers/{name}", headers={"Authorization": _AUTH})
    with urllib.request.urlopen(request, timeout=10) as answer:
        consumers = json.load(answer)
    # The management API answers "channel_details": [] until its stats of the channel are in.
    return [c["channel_details"]["connection_name"] for c in consumers
            if c["queue"]["name"] == queue and isinstance(c.get("channel_details"), dict) and c["channel_details"]]  # fmt: skip


def test_without_a_linked_result_backend_it_is_found_from_the_workers(backend, vhost, results) -> None:
    adapter = CeleryRabbitAdapter(backend="rabbitmq", rabbit=backend)
    try:
        assert adapter.results is None and "No result backend" in " ".join(adapter._failure_notes(False))
        adapter.maintain(0.2)
        task_id = send(vhost, "found", "celery_app.fail_unless_exists", ("/no/such/flag", 1))
        worker = start_worker(vhost, ["found"], "informant")
        try:
            wait_for(lambda: terminal_count(results) == 1, 10, what="the task run")
            wait_for(lambda: adapter.maintain(0.5) or adapter.worker_conf, 8, what="its configuration", step=0.2)
        finally:
            stop(worker)
        assert adapter.results is not None and adapter.results.label.startswith(RESULTS)
        assert adapter.settle()
        assert [j.id for j in adapter.failed("found", 10).items] == [task_id]
    finally:
        adapter.close()
