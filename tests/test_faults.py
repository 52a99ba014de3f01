"""A backend that fails the way networks fail makes nothing else fail.

A real `queuewatch serve` (gunicorn, sampler, poll 1 s) watches a healthy Redis
and a RabbitMQ or a second Redis reached through a loopback proxy that can
stall (connections open, nothing moves), cut (reset) and slow them. While one
backend stalls: every page answers, quickly; that backend is shown down with
why; the sampler keeps its lease and records the healthy backend's history
every interval; and when the network heals, the backend comes back by itself.
"""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import REDIS_PORT, get_json, samples_taken, serve_queuewatch, wait_for
from faults import FaultProxy
from test_amqp_adapter import AMQPJobs, new_vhost

pytestmark = pytest.mark.redis_db(4)


def timed_get(url: str, timeout: float = 30) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def backend(base: str, name: str) -> dict:
    return next(b for b in get_json(base + "/api/v1/backends")["backends"] if b["name"] == name)  # type: ignore[index]


@pytest.fixture
def rq_queue(r):
    queue = rq.Queue("healthy", connection=r)
    for n in range(3):
        queue.enqueue(rq_tasks.add, n, n)
    return queue


def watch_while_stalled(base: str, stalled: str, healthy_queue: str) -> None:
    """The checks every stall must pass, for ~6 poll intervals."""
    wait_for(lambda: backend(base, stalled)["status"] == "down", 10, what=f"{stalled} shown down")
    assert "not answering" in backend(base, stalled)["error"] or "unreachable" in backend(base, stalled)["error"]
    start_samples = samples_taken(base, healthy_queue)
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < 6:
        for path in ("/", "/workers", "/api/v1/queues", "/api/v1/backends", "/metrics", f"/queues/{healthy_queue}"):
            status, took = timed_get(base + path)
            assert status == 200, path
            slowest = max(slowest, took)
        assert get_json(base + "/api/v1/sampler")["this_process"] is True  # type: ignore[index]
        time.sleep(0.2)
    assert slowest < 2.0  # a bound, not a benchmark: the stalled backend is never waited on
    # The healthy backend's history went on being recorded, one sample per interval.
    assert samples_taken(base, healthy_queue) >= start_samples + 4
    assert backend(base, "redis")["status"] == "up"


def test_a_stalled_rabbitmq_stops_no_page_and_no_sampling_of_the_other_backends(tmp_path, redis_url, rq_queue) -> None:
    with new_vhost("stall") as vhost:
        AMQPJobs(vhost, "orders").failed(2)
        with FaultProxy(5672) as proxy:
            stalled_url = vhost.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
            with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", stalled_url, "--poll", "1") as base:
                wait_for(lambda: backend(base, "rabbitmq")["status"] == "up", 10, what="RabbitMQ up")
                proxy.stall()
                watch_while_stalled(base, "rabbitmq", "redis/rq/healthy")
                status, took = timed_get(f"{base}/queues/rabbitmq/amqp/orders")
                assert status in (200, 503) and took < 12  # its own page waits a bounded time, then says why
                proxy.heal()
                wait_for(lambda: backend(base, "rabbitmq")["status"] == "up", 40, what="RabbitMQ back up after the stall")


def test_a_stalled_redis_is_shown_down_while_the_other_redis_is_sampled(tmp_path, redis_url, rq_queue, r) -> None:
    other = rq.Queue("elsewhere", connection=r)
    other.enqueue(rq_tasks.add, 1, 1)
    with FaultProxy(REDIS_PORT) as proxy:
        stalled_url = f"redis://127.0.0.1:{proxy.port}/{r.connection_pool.connection_kwargs['db']}"
        with serve_queuewatch(tmp_path, "--redis", f"redis={redis_url}", "--redis", f"far={stalled_url}",
                              "--rabbitmq", "none", "--poll", "1") as base:  # fmt: skip
            wait_for(lambda: backend(base, "far")["status"] == "up", 10, what="the far Redis up")
            proxy.stall()
            watch_while_stalled(base, "far", "redis/rq/healthy")
            status, took = timed_get(f"{base}/queues/far/rq/{quote('elsewhere')}")
            assert status in (200, 503) and took < 12
            proxy.heal()
            wait_for(lambda: backend(base, "far")["status"] == "up", 30, what="the far Redis back up")


def test_a_cut_connection_is_shown_down_at_once_and_recovers(tmp_path, redis_url, rq_queue, r) -> None:
    with FaultProxy(REDIS_PORT) as proxy:
        cut_url = f"redis://127.0.0.1:{proxy.port}/{r.connection_pool.connection_kwargs['db']}"
        with serve_queuewatch(tmp_path, "--redis", f"redis={redis_url}", "--redis", f"far={cut_url}",
                              "--rabbitmq", "none", "--poll", "1") as base:  # fmt: skip
            wait_for(lambda: backend(base, "far")["status"] == "up", 10, what="the far Redis up")
            proxy.cut()
            wait_for(lambda: backend(base, "far")["status"] == "down", 10, what="the far Redis down")
            assert timed_get(base + "/")[0] == 200 and backend(base, "redis")["status"] == "up"
            proxy.heal()
            wait_for(lambda: backend(base, "far")["status"] == "up", 20, what="the far Redis back up")
