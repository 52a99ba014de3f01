"""Dramatiq on RabbitMQ: the adapter and the dashboard against real Dramatiq data,
made by the real dramatiq library and run by its real workers, each test in its
own vhost (``qw-test-*``)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract import AdapterContract, JobFactory
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq_tasks import recorded, run_worker
from pages import counts, number, table_rows
from conftest import inspect_queue
from test_amqp_adapter import channel, closed_management, messages, new_vhost, q_path, rabbit_app, rabbit_digest, ready, wait_for
from test_dramatiq_redis import dashboard, post_in_background

from queuewatch.adapters.backends import RabbitBackend
from queuewatch.adapters.dramatiq.messages import NO_TRACEBACK
from queuewatch.adapters.dramatiq.on_rabbitmq import DramatiqRabbitAdapter


class DramatiqRabbitJobs(JobFactory):
    """Messages sent with Dramatiq's own RabbitmqBroker; failures made by a real worker."""

    def __init__(self, url: str, queue: str, tmp_path: Path, *, max_retries: int = 1) -> None:
        self.url, self.queue, self.xq = url, queue, f"{queue}.XQ"
        self.flag, self.record = tmp_path / "flag", tmp_path / "ran"
        self.max_retries = max_retries
        self.broker = RabbitmqBroker(url=url, confirm_delivery=True)
        self.broker.declare_queue(queue, ensure=True)

    def send(self, actor: str, *args, options: dict | None = None, delay: int | None = None, **kwargs) -> str:
        message = Message(queue_name=self.queue, actor_name=actor, args=args, kwargs=kwargs, options=options or {})
        return self.broker.enqueue(message, delay=delay).message_id

    def failed(self, n: int) -> list[str]:
        before = ready(self.url, self.xq)
        options = {"max_retries": self.max_retries, "min_backoff": 10, "max_backoff": 50}
        ids = [self.send("fail_unless_exists", str(self.flag), i, note=f"job {i}", options=options) for i in range(n)]
        run_worker("rabbitmq", self.url, [self.queue], self.record, lambda: ready(self.url, self.xq) >= before + n)
        return ids

    def waiting(self, n: int) -> list[str]:
        return [self.send("add", i, i) for i in range(n)]

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        """Until each message waiting now has an outcome: run (recorded) or dead-lettered.
        (AMQP cannot see what a consumer holds, so the outcomes are counted.)"""
        outcomes = lambda: len(recorded(self.record)) + ready(self.url, self.xq)  # noqa: E731
        target = outcomes() + ready(self.url, self.queue) + ready(self.url, f"{self.queue}.DQ")
        run_worker("rabbitmq", self.url, [self.queue], self.record, lambda: outcomes() >= target)

    def succeeded(self, job_id: str) -> bool:
        return job_id in recorded(self.record)

    def digest(self) -> object:
        return rabbit_digest(self.url, [self.queue, f"{self.queue}.DQ", self.xq])


@pytest.fixture
def vhost() -> Iterator[str]:
    with new_vhost("dramatiq") as url:
        yield url


@pytest.fixture
def adapter(vhost: str) -> DramatiqRabbitAdapter:
    return DramatiqRabbitAdapter(backend="rabbitmq", rabbit=RabbitBackend(name="rabbitmq", url=vhost))


@pytest.fixture
def make_jobs(vhost, tmp_path):
    made = []

    def make(queue: str, **kwargs) -> DramatiqRabbitJobs:
        made.append(DramatiqRabbitJobs(vhost, queue, tmp_path, **kwargs))
        return made[-1]

    yield make
    for jobs in made:
        jobs.broker.close()


class TestDramatiqRabbitContract(AdapterContract):
    @pytest.fixture
    def jobs(self, make_jobs) -> DramatiqRabbitJobs:
        return make_jobs("contract.q-1_x")


def test_actors_that_fail_with_max_retries_0_land_in_the_dead_letters(vhost, adapter, make_jobs) -> None:
    jobs = make_jobs("once", max_retries=0)
    ids = jobs.failed(3)
    assert ready(vhost, "once.XQ") == adapter.queue("once").failed == 3
    page = adapter.failed("once", limit=10)
    assert [j.id for j in page.items] == ids[::-1]
    assert {(j.function, j.attempts, j.error_message) for j in page.items} == {("fail_unless_exists", 1, NO_TRACEBACK)}
    detail = dict(adapter.job("once", ids[0]).details)
    assert (detail["x-death reason"], detail["x-death queue"], detail["x-death count"]) == ("rejected", "once", "1")


def test_counts_equal_what_the_broker_holds(vhost, adapter, make_jobs) -> None:
    jobs = make_jobs("mixed.q", max_retries=0)
    jobs.failed(2)
    jobs.waiting(4)
    jobs.send("add", 1, 2, delay=3_600_000)
    with channel(vhost) as ch:
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume("mixed.q", lambda *a: None)  # a consumer holding one message: a worker
        ch.connection.process_data_events(time_limit=0.2)
        stats = adapter.queue("mixed.q")
        main = ch.queue_declare("mixed.q", passive=True).method
        assert (stats.depth, stats.workers) == (main.message_count, main.consumer_count) == (3, 1)
    assert (stats.scheduled, stats.failed) == (ready(vhost, "mixed.q.DQ"), ready(vhost, "mixed.q.XQ")) == (1, 2)
    assert any("7 days" in n for n in stats.notes)
    # The worker declared its actors' queue too ("default"): Dramatiq declares Q, Q.DQ and Q.XQ for each.
    assert [q.name for q in adapter.queues()] == ["default", "mixed.q"]


def test_a_requeue_republishes_with_retries_reset_and_keeps_the_message_id(vhost, adapter, make_jobs) -> None:
    [job_id] = make_jobs("fresh").failed(1)
    assert adapter.requeue("fresh", [job_id]).affected == 1
    [(body, _, headers)] = messages(vhost, "fresh")
    message = json.loads(body)
    assert (message["message_id"], message["options"]["retries"], message["queue_name"]) == (job_id, 0, "fresh")
    assert "eta" not in message["options"] and "'reason': 'rejected'" in headers
    assert ready(vhost, "fresh.XQ") == 0


def test_purge_removes_waiting_messages_only_never_delayed_or_dead_letters(vhost, adapter, make_jobs) -> None:
    jobs = make_jobs("purged", max_retries=0)
    jobs.failed(2)
    jobs.waiting(3)
    jobs.send("add", 1, 1, delay=3_600_000)
    assert adapter.purge("purged").affected == 3
    assert (ready(vhost, "purged"), ready(vhost, "purged.DQ"), ready(vhost, "purged.XQ")) == (0, 1, 2)


def test_dramatiq_queues_are_one_queue_not_three_plain_ones(vhost, adapter, make_jobs) -> None:
    make_jobs("orders").waiting(1)
    with channel(vhost) as ch:
        ch.queue_declare("plain", durable=True)
    backend = adapter.rabbit
    assert [a.system for a in backend.probe()] == ["dramatiq", "amqp"]
    assert [q.name for q in backend.adapter("amqp").queues()] == ["plain"]
    assert [q.name for q in backend.adapter("dramatiq").queues()] == ["orders"]


def test_without_the_management_api_configured_queues_are_found_and_counted(vhost, make_jobs) -> None:
    jobs = make_jobs("orders", max_retries=0)
    [job_id, other] = jobs.failed(2)
    backend = RabbitBackend(name="rabbitmq", url=vhost, management_url=closed_management(), queues=["orders"])
    adapter = DramatiqRabbitAdapter(backend="rabbitmq", rabbit=backend)
    assert DramatiqRabbitAdapter.detect(backend)
    [stats] = adapter.queues()
    assert (stats.name, stats.failed, stats.in_progress) == ("orders", 2, None)
    assert any("Without the management API" in n for n in stats.notes)
    assert adapter.workers() == [] and "working from AMQP alone" in backend.notes()[0]
    assert adapter.requeue("orders", [job_id]).affected == 1 and ready(vhost, "orders") == 1
    # Nothing configured, nothing to list: the dashboard cannot discover queues without the API.
    bare = RabbitBackend(name="rabbitmq", url=vhost, management_url=closed_management())
    assert not DramatiqRabbitAdapter.detect(bare) and other


def test_workers_are_the_connections_consuming_its_queues(vhost, adapter, make_jobs) -> None:
    jobs = make_jobs("watched")
    jobs.send("nap", 0.1)
    seen: list = []

    def consuming() -> bool:
        seen[:] = [w for w in adapter.workers() if "watched" in w.queues]
        return bool(seen)

    run_worker("rabbitmq", vhost, ["watched"], jobs.record, consuming, timeout=30)
    assert all(w.alive and w.hostname == "127.0.0.1" and w.state == "consuming" for w in seen)


# --- the dashboard ------------------------------------------------------------------


@pytest.fixture
def rabbit_client(vhost, tmp_path):
    app = rabbit_app(vhost, tmp_path)
    yield app.test_client()
    app.extensions["queuewatch.monitor"].close()


def test_counts_on_the_page_and_in_the_api_equal_the_brokers(vhost, rabbit_client, make_jobs) -> None:
    for name, dead in {"emails": 3, "reports.nightly": 1}.items():
        jobs = make_jobs(name, max_retries=0)
        jobs.failed(dead)
        jobs.waiting(dead + 1)
        jobs.send("add", 0, 0, delay=3_600_000)
    api = {q["name"]: q for q in rabbit_client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "dramatiq"}
    rows = table_rows(rabbit_client.get("/").get_data(as_text=True))
    for name in ("emails", "reports.nightly"):
        expected = {"depth": ready(vhost, name), "failed": ready(vhost, f"{name}.XQ"), "scheduled": ready(vhost, f"{name}.DQ")}
        assert {k: api[name][k] for k in expected} == expected
        assert {k: number(rows[f"rabbitmq/dramatiq/{name}"][k]) for k in expected} == expected
        page = rabbit_client.get(f"/queues/{q_path(name, 'dramatiq')}").get_data(as_text=True)
        assert {k: number(v) for k, v in counts(page).items() if k in expected} == expected
    listed = {(q["system"], q["name"]) for q in rabbit_client.get("/api/v1/queues").get_json()["queues"]}
    assert listed == {("dramatiq", "emails"), ("dramatiq", "reports.nightly"), ("dramatiq", "default")}  # none as plain queues


def test_a_message_requeued_through_the_api_is_run_by_a_real_worker(vhost, rabbit_client, make_jobs) -> None:
    jobs = make_jobs("ui")
    first, second = jobs.failed(2)
    jobs.allow()
    answer = rabbit_client.post(f"/api/v1/queues/{q_path('ui', 'dramatiq')}/failed/requeue", json={"ids": [first, "nope"]})
    assert answer.get_json() == {"requeued": 1, "not_found": ["nope"]}
    jobs.run_worker()
    assert jobs.succeeded(first) and not jobs.succeeded(second)
    seen = inspect_queue(rabbit_client, q_path("ui", "dramatiq"))
    detail = rabbit_client.get(f"/queues/{q_path('ui', 'dramatiq')}/jobs/{second}?inspection={seen}").get_data(as_text=True)
    assert "FileNotFoundError" in detail and "x-death reason" in detail


def test_reads_never_write_a_crawl_of_every_page_and_api_route(vhost, rabbit_client, make_jobs) -> None:
    jobs = make_jobs("crawl")
    ids = jobs.failed(3)
    jobs.waiting(2)
    before = jobs.digest()
    qp = q_path("crawl", "dramatiq")
    urls = ["/", "/workers", f"/queues/{qp}", f"/queues/{qp}?fragment=failed", "/api/v1/queues", f"/api/v1/queues/{qp}",
            "/api/v1/workers", f"/api/v1/queues/{qp}/failed?limit=1&cursor=1", "/metrics", f"/queues/{qp}/jobs/missing"]  # fmt: skip
    urls += [f"/queues/{qp}/jobs/{i}" for i in ids] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]
    for url in urls:
        assert rabbit_client.get(url).status_code < 500, url
    assert jobs.digest() == before


# --- the fault test -------------------------------------------------------------------


def test_sigkill_in_the_middle_of_a_requeue_all_of_5000_loses_nothing(tmp_path) -> None:
    with new_vhost("dramatiq-fault") as url:
        broker = RabbitmqBroker(url=url, confirm_delivery=True)
        ids = [broker.enqueue(Message(queue_name="bulk", actor_name="add", args=(i, i), kwargs={}, options={})).message_id
               for i in range(5000)]  # fmt: skip
        broker.close()
        with channel(url) as ch:  # dead-letter them as Dramatiq's consumer does: basic_nack, requeue=False
            ch.basic_qos(prefetch_count=500)
            for method, _, _ in ch.consume("bulk", inactivity_timeout=2):
                if method is None:
                    break
                ch.basic_nack(method.delivery_tag, requeue=False)
            ch.cancel()
        wait_for(lambda: ready(url, "bulk.XQ") == 5000)
        with dashboard(tmp_path, "--rabbitmq", url, "--redis", "none") as (base, proc):
            poster = post_in_background(f"{base}/api/v1/queues/rabbitmq/dramatiq/bulk/failed/requeue", {"all": True})
            deadline = time.monotonic() + 60
            while ready(url, "bulk") < 500:
                assert time.monotonic() < deadline, (tmp_path / "queuewatch.log").read_text()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            poster.join(10)

        def settled() -> bool:  # the broker has noticed the dead connection and requeued what it held
            with channel(url) as ch:
                return ch.queue_declare("bulk.XQ", passive=True).method.consumer_count == 0

        wait_for(settled)
        moved, left = ready(url, "bulk"), ready(url, "bulk.XQ")
        found = [json.loads(body)["message_id"] for q in ("bulk", "bulk.XQ") for body, _, _ in messages(url, q, take=True)]
        seen = Counter(found)
        lost, duplicated = set(ids) - set(seen), sum(n - 1 for n in seen.values())
        print(f"\nRabbitMQ SIGKILL during requeue-all of 5000: {moved} in the queue, {left} still dead letters, "
              f"{len(lost)} lost, {duplicated} duplicated")
        assert 0 < moved < 5000, "the kill must land in the middle of the requeue"
        assert len(lost) == 0
        # Republished and confirmed, not yet acked when the process died: in both
        # queues. The move acks each message right after its confirm, so at most one.
        assert duplicated <= 1 and moved + left == 5000 + duplicated
