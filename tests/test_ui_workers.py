"""Readable workers (issue 15, item 15): RQ's current job links to the job; Dramatiq
on RabbitMQ is one row per worker process where its connections are named (else
one per host, saying what the connections are), never a row per connection;
Dramatiq on Redis says what its broker records (a random id, no host or pid) and
what each worker holds. Real RQ and Dramatiq workers."""

from __future__ import annotations

import contextlib
import html
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import TESTS, rq_bin, wait_for
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from rq.job import Job
from test_amqp_adapter import new_vhost, rabbit_app

from queuewatch.adapters.backends import RabbitBackend
from queuewatch.adapters.dramatiq.on_rabbitmq import DramatiqRabbitAdapter

pytestmark = pytest.mark.redis_db(9)


@contextlib.contextmanager
def dramatiq_worker(kind: str, url: str, queue: str, tmp_path: Path, tag: str) -> Iterator[subprocess.Popen]:
    """A real ``dramatiq`` worker (1 process, 1 thread) until the block ends."""
    env = dict(os.environ, QW_DRAMATIQ_BROKER=kind, QW_DRAMATIQ_URL=url, QW_DRAMATIQ_QUEUES=queue, PYTHONPATH=str(TESTS))
    command = [str(Path(sys.executable).with_name("dramatiq")), "dramatiq_tasks", "--processes", "1", "--threads", "1"]
    with open(tmp_path / f"dramatiq-{tag}.log", "wb") as log:
        worker = subprocess.Popen(command, cwd=TESTS, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def rows(page: str) -> dict[str, str]:
    """The workers table: worker name → its row's HTML."""
    return {
        html.unescape(m.group(1)): m.group(2)
        for m in re.finditer(r'<tr class="worker-\w+" data-worker="([^"]*)">(.*?)</tr>', page, re.S)
    }


def connections(worker) -> int:
    """How many AMQP connections a Dramatiq worker row stands for."""
    return int(dict(worker.details)["connections"].split()[0])


def test_an_rq_workers_current_job_links_to_the_job(client, r, redis_url, tmp_path) -> None:
    flag = tmp_path / "release"
    job = rq.Queue("slow", connection=r).enqueue(rq_tasks.block_until, str(flag), 60)
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [rq_bin(), "worker", "--burst", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker", "--name", "w-1", "slow"]
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Job.fetch(job.id, connection=r).get_status() == "started", what="the job to start")
        row = wait_for(lambda: job.id in rows(client.get("/workers").get_data(as_text=True)).get("w-1", "") and
                       rows(client.get("/workers").get_data(as_text=True))["w-1"])  # fmt: skip
        link = re.search(r'<a href="([^"]+)" data-current-job>' + re.escape(job.id) + "</a>", row)
        assert link, row
        found = client.get(html.unescape(link.group(1)))
        assert found.status_code == 200 and 'data-job-state="in_progress"' in found.get_data(as_text=True)
    finally:
        flag.touch()
        worker.wait(30)


def test_dramatiq_on_rabbitmq_is_one_row_per_named_process_not_per_connection(tmp_path) -> None:
    with new_vhost("ui-workers") as url:
        broker = RabbitmqBroker(url=url, confirm_delivery=True)
        broker.declare_queue("watched", ensure=True)
        broker.enqueue(Message(queue_name="watched", actor_name="nap", args=(0.1,), kwargs={}, options={}))
        adapter = DramatiqRabbitAdapter(backend="rabbitmq", rabbit=RabbitBackend(name="rabbitmq", url=url))
        named = url + "?client_properties=" + quote(repr({"connection_name": "{name}"}))
        with dramatiq_worker("rabbitmq", named.replace("%7Bname%7D", "billing-1"), "watched", tmp_path, "a"), \
                dramatiq_worker("rabbitmq", named.replace("%7Bname%7D", "billing-2"), "watched", tmp_path, "b"):  # fmt: skip
            # Each process opens a connection per consumer thread (a queue and its .DQ, for each queue it declared).
            def both() -> list:
                found = adapter.workers()
                return found if len(found) == 2 and all(connections(w) >= 2 for w in found) else []

            workers = wait_for(both, timeout=30, what="both workers, each with its connections")
            assert sorted(w.name for w in workers) == ["billing-1", "billing-2"]
            assert all(w.hostname == "127.0.0.1" and "watched" in w.queues and w.started_at for w in workers)
        with dramatiq_worker("rabbitmq", url, "watched", tmp_path, "plain"):
            # Its connections as one row, once the management API lists them (its statistics lag a few seconds).
            [worker] = wait_for(lambda: [w for w in adapter.workers() if connections(w) >= 2], timeout=30,
                                what="the worker's connections as one row")  # fmt: skip
            assert worker.name == f"127.0.0.1 ({connections(worker)} connections)" and "watched" in worker.queues
            assert any(label == "note" and "Dramatiq names no AMQP connection" in text for label, text in worker.details)
            app = rabbit_app(url, tmp_path)
            try:
                page = html.unescape(app.test_client().get("/workers").get_data(as_text=True))
                assert [n for n in rows(page) if re.fullmatch(r"127\.0\.0\.1 \(\d+ connections\)", n)] and " -> " not in page
                assert page.count("Dramatiq names no AMQP connection") == 1  # said once, under the table
            finally:
                app.extensions["queuewatch.monitor"].close()
        broker.close()


def test_dramatiq_on_redis_says_what_its_broker_records_and_what_each_worker_holds(client, r, redis_url, tmp_path) -> None:
    broker = RedisBroker(url=redis_url)
    broker.declare_queue("naps")
    for _ in range(2):
        broker.enqueue(Message(queue_name="naps", actor_name="nap", args=(3,), kwargs={}, options={}))
    with dramatiq_worker("redis", redis_url, "naps", tmp_path, "redis"):

        def holding() -> str:
            page = html.unescape(client.get("/workers").get_data(as_text=True))
            return page if re.search(r"holding [12] messages?, running or prefetched", page) else ""

        page = wait_for(holding, timeout=30, what="the worker to hold the naps")
    assert page.count("Dramatiq's Redis broker records a random id per worker process: no host or pid.") == 1
    broker.close()
