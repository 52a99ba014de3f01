"""Dramatiq on Redis: the adapter and the dashboard against real Dramatiq data, made
by the real dramatiq library and run by its real workers. Redis database 12 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import REDIS_PORT, csrf_token, redis_digest, start_queuewatch, wait_for
from contract import AdapterContract, JobFactory, MaintainedAdapterContract
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq_tasks import recorded, run_worker
from pages import counts, number, table_rows

from queuewatch import create_app
from queuewatch.adapters.dramatiq import on_redis as dramatiq_redis
from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.base import ALL
from queuewatch.adapters.dramatiq.messages import NO_TRACEBACK
from queuewatch.adapters.dramatiq.on_redis import DramatiqRedisAdapter
from queuewatch.adapters.errors import NotFound, Unsupported

pytestmark = pytest.mark.redis_db(12)


class DramatiqRedisJobs(JobFactory):
    """Messages sent with Dramatiq's own RedisBroker; failures made by a real worker."""

    def __init__(self, r: redis.Redis, url: str, queue: str, tmp_path: Path, *, max_retries: int = 1,
                 namespace: str = "dramatiq") -> None:  # fmt: skip
        self.r, self.url, self.queue, self.namespace = r, url, queue, namespace
        self.flag, self.record = tmp_path / "flag", tmp_path / "ran"
        self.max_retries = max_retries
        self.broker = RedisBroker(client=r, namespace=namespace)

    def key(self, suffix: str = "") -> str:
        return f"{self.namespace}:{self.queue}{suffix}"

    def send(self, actor: str, *args, options: dict | None = None, delay: int | None = None, **kwargs) -> str:
        message = Message(queue_name=self.queue, actor_name=actor, args=args, kwargs=kwargs, options=options or {})
        return self.broker.enqueue(message, delay=delay).message_id

    def failed(self, n: int) -> list[str]:
        before = self.r.zcard(self.key(".XQ"))
        # One retry (after ~10 ms) when max_retries is 1, so Dramatiq stores a traceback.
        options = {"max_retries": self.max_retries, "min_backoff": 10, "max_backoff": 50}
        ids = [self.send("fail_unless_exists", str(self.flag), i, note=f"job {i}", options=options) for i in range(n)]
        run_worker("redis", self.url, [self.queue], self.record, lambda: self.r.zcard(self.key(".XQ")) >= before + n)
        return ids

    def waiting(self, n: int) -> list[str]:
        return [self.send("add", i, i) for i in range(n)]

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        """Until nothing is waiting, held or delayed: every message acked or dead-lettered."""
        idle = lambda: not self.r.hlen(self.key(".msgs")) and not self.r.hlen(self.key(".DQ.msgs"))  # noqa: E731
        run_worker("redis", self.url, [self.queue], self.record, idle)

    def succeeded(self, job_id: str) -> bool:
        return job_id in recorded(self.record)

    def digest(self) -> object:
        return redis_digest(self.r)


@pytest.fixture
def adapter(r: redis.Redis) -> DramatiqRedisAdapter:
    return DramatiqRedisAdapter(backend="redis", client=r)


class TestDramatiqRedisContract(AdapterContract, MaintainedAdapterContract):
    @pytest.fixture
    def jobs(self, r, redis_url, tmp_path) -> DramatiqRedisJobs:
        return DramatiqRedisJobs(r, redis_url, "contract.q-1_x", tmp_path)


def make_dead_letters(broker: RedisBroker, queue: str, n: int) -> list[str]:
    """``n`` dead letters made by Dramatiq's own enqueue, fetch and nack commands (no worker: fast)."""
    ids = [broker.enqueue(Message(queue_name=queue, actor_name="add", args=(i, i), kwargs={}, options={})).message_id
           for i in range(n)]  # fmt: skip
    consumer = broker.consume(queue, prefetch=500, timeout=100)
    dead = 0
    while dead < n:
        message = next(consumer)
        if message is not None:
            message.fail()
            consumer.nack(message)
            dead += 1
    consumer.close()
    return ids


def message_ids(r: redis.Redis, key: str) -> list[str]:
    return [json.loads(body)["message_id"] for body in r.hvals(key)]


def test_actors_that_fail_with_max_retries_0_land_in_the_dead_letters(r, redis_url, adapter, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "once", tmp_path, max_retries=0)
    ids = jobs.failed(3)
    assert r.zcard("dramatiq:once.XQ") == adapter.queue("once").failed == 3
    page = adapter.failed("once", limit=10)
    assert [j.id for j in page.items] == ids[::-1]  # newest first
    assert {(j.function, j.attempts, j.error_type, j.error_message) for j in page.items} == {
        ("fail_unless_exists", 1, None, NO_TRACEBACK)
    }
    detail = adapter.job("once", ids[0])
    assert detail.traceback is None and any("failed without a retry" in n for n in detail.notes)
    assert detail.args == (str(jobs.flag), 0) and detail.kwargs == {"note": "job 0"} and detail.payload_encoding == "json"


def test_a_retried_failure_shows_the_traceback_dramatiq_stored(r, redis_url, adapter, tmp_path) -> None:
    [job_id] = DramatiqRedisJobs(r, redis_url, "twice", tmp_path, max_retries=1).failed(1)
    [row] = adapter.failed("twice", limit=5).items
    assert (row.error_type, row.attempts) == ("FileNotFoundError", 2)
    assert row.error_message == f"no such file: {tmp_path / 'flag'}"
    detail = adapter.job("twice", job_id)
    assert "dramatiq_tasks.py" in detail.traceback and any("attempt 1 of 2" in n for n in detail.notes)
    assert dict(detail.details)["option retries"] == "1"


def test_counts_equal_what_the_broker_holds(r, redis_url, adapter, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "mixed.q", tmp_path, max_retries=0)
    jobs.failed(3)
    jobs.waiting(5)
    jobs.send("add", 1, 2, delay=3_600_000)
    consumer = jobs.broker.consume("mixed.q", prefetch=2, timeout=100)
    assert next(consumer) is not None  # a consumer now holds two messages (Dramatiq prefetches)
    stats = adapter.queue("mixed.q")
    assert stats.depth == r.llen("dramatiq:mixed.q") == 3
    assert stats.in_progress == r.scard(f"dramatiq:__acks__.{jobs.broker.broker_id}.mixed.q") == 2
    assert stats.scheduled == r.hlen("dramatiq:mixed.q.DQ.msgs") == 1
    assert stats.failed == r.zcard("dramatiq:mixed.q.XQ") == 3
    assert stats.workers == 1 and dict(stats.details)["held by dead workers"] == 0
    assert stats.oldest_age_seconds is not None and stats.oldest_age_seconds < 60
    assert [q.name for q in adapter.queues()] == ["mixed.q"]


def test_workers_come_from_heartbeats_and_die_by_the_timeout(r, redis_url, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "naps", tmp_path)
    adapter = DramatiqRedisAdapter(backend="redis", client=r, heartbeat_timeout_ms=1500)
    jobs.send("nap", 1.0)
    producer = jobs.broker.broker_id  # every process that talks to the broker heartbeats, producers too
    seen: dict = {}

    def busy() -> bool:
        workers = [w for w in adapter.workers() if w.name != producer and w.state == "busy"]
        if workers:
            seen.update(worker=workers[0], queue=adapter.queue("naps"))
        return bool(workers)

    run_worker("redis", redis_url, ["naps"], jobs.record, busy)
    assert seen["worker"].alive and seen["worker"].queues == ("naps",) and seen["worker"].last_heartbeat
    assert (seen["queue"].workers, seen["queue"].in_progress) == (1, 1)
    [gone] = wait_for(lambda: [w for w in adapter.workers() if w.name == seen["worker"].name and not w.alive], 5,
                      what="the stopped worker to be shown dead")  # fmt: skip
    assert (gone.alive, gone.state) == (False, "dead")
    assert len(recorded(jobs.record)) == 1  # the worker finished its nap before it stopped


def test_requeue_gives_a_fresh_redis_message_id_and_resets_retries(r, redis_url, adapter, tmp_path) -> None:
    [job_id] = DramatiqRedisJobs(r, redis_url, "fresh", tmp_path).failed(1)
    [(old_rid, stored)] = r.hgetall("dramatiq:fresh.XQ.msgs").items()
    assert json.loads(stored)["options"]["retries"] == 1
    assert adapter.requeue("fresh", [job_id]).affected == 1
    [new_rid] = r.lrange("dramatiq:fresh", 0, -1)
    message = json.loads(r.hget("dramatiq:fresh.msgs", new_rid))
    assert new_rid != old_rid and message["options"]["redis_message_id"] == new_rid.decode()
    assert (message["message_id"], message["options"]["retries"], message["queue_name"]) == (job_id, 0, "fresh")
    assert "eta" not in message["options"] and not r.exists("dramatiq:fresh.XQ", "dramatiq:fresh.XQ.msgs")


def test_purge_removes_waiting_messages_only_never_delayed_or_dead_letters(r, redis_url, adapter, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "purged", tmp_path, max_retries=0)
    jobs.failed(2)
    jobs.waiting(3)
    jobs.send("add", 1, 1, delay=3_600_000)
    assert adapter.purge("purged").affected == 3
    assert (r.llen("dramatiq:purged"), r.hlen("dramatiq:purged.msgs")) == (0, 0)
    assert (r.hlen("dramatiq:purged.DQ.msgs"), r.zcard("dramatiq:purged.XQ"), r.hlen("dramatiq:purged.XQ.msgs")) == (1, 2, 2)


def test_ids_this_dashboard_never_showed_are_found_by_a_bounded_search(r, redis_url, tmp_path) -> None:
    ids = make_dead_letters(RedisBroker(client=r), "unseen", 1200)
    fresh = DramatiqRedisAdapter(backend="redis", client=r)  # no page shown: nothing remembered
    result = fresh.requeue("unseen", [ids[7], ids[1100], "no-such-id"])
    assert (result.affected, result.not_found) == (2, ("no-such-id",))
    assert fresh.job("unseen", ids[8]).id == ids[8]


def test_requeue_all_moves_each_message_once_and_a_worker_runs_them(r, redis_url, adapter, tmp_path) -> None:
    ids = make_dead_letters(RedisBroker(client=r), "bulk", 2100)
    result = adapter.requeue("bulk", ALL)
    assert (result.affected, result.not_found) == (2100, ())
    assert sorted(message_ids(r, "dramatiq:bulk.msgs")) == sorted(ids) and r.llen("dramatiq:bulk") == 2100
    assert r.zcard("dramatiq:bulk.XQ") == 0
    record = tmp_path / "ran"
    run_worker("redis", redis_url, ["bulk"], record, lambda: not r.hlen("dramatiq:bulk.msgs"), timeout=120)
    assert sorted(recorded(record)) == sorted(ids)


def test_a_message_that_is_not_json_is_shown_and_left_in_place(r, redis_url, adapter, tmp_path) -> None:
    [good] = DramatiqRedisJobs(r, redis_url, "odd", tmp_path, max_retries=0).failed(1)
    r.zadd("dramatiq:odd.XQ", {"raw-1": time.time() * 1000 + 5})
    r.hset("dramatiq:odd.XQ.msgs", "raw-1", b"\x80\x04\x95 not json")
    [raw, _] = adapter.failed("odd", limit=5).items
    assert raw.id == "raw-1" and "not decodable" in raw.args_preview
    with pytest.raises(Unsupported, match="not JSON"):
        adapter.requeue("odd", ["raw-1"])
    result = adapter.requeue("odd", ALL)
    assert (result.affected, result.not_found) == (1, ("raw-1",))
    assert r.zrange("dramatiq:odd.XQ", 0, -1) == [b"raw-1"] and message_ids(r, "dramatiq:odd.msgs") == [good]
    assert adapter.delete("odd", ["raw-1"]).affected == 1


def test_the_namespace_is_configurable(r, redis_url, tmp_path) -> None:
    DramatiqRedisJobs(r, redis_url, "spaced", tmp_path, namespace="other-app").waiting(2)
    assert not DramatiqRedisAdapter.detect(r)
    assert DramatiqRedisAdapter.detect(r, namespace="other-app")
    other = DramatiqRedisAdapter(backend="redis", client=r, namespace="other-app")
    assert [(q.name, q.depth) for q in other.queues()] == [("spaced", 2)]
    assert DramatiqRedisAdapter(backend="redis", client=r).queues() == []


def test_queue_discovery_is_a_bounded_scan_that_says_when_it_is_partial(r, redis_url, adapter, tmp_path, monkeypatch) -> None:
    with r.pipeline() as pipe:
        for i in range(30_000):
            pipe.set(f"noise:{i}", 1)
        pipe.execute()
    broker = RedisBroker(client=r)
    names = {f"q{i:03}" for i in range(200)}
    for name in names:
        broker.enqueue(Message(queue_name=name, actor_name="add", args=(1, 1), kwargs={}, options={}))
    monkeypatch.setattr(dramatiq_redis, "SCAN_KEYS", 2_000)
    answers = []
    while not answers or any("Still discovering" in n for q in answers[-1] for n in q.notes):
        answers.append(adapter.queues())
        assert len(answers) < 100
    assert len(answers) > 2 and any(answers[:-1]), "some queues are shown while the scan goes on"
    assert {q.name for q in answers[-1]} == names and all(q.depth == 1 for q in answers[-1])


def test_backend_probe_finds_dramatiq(r, redis_url, tmp_path) -> None:
    backend = RedisBackend(name="redis", url=redis_url)
    assert "dramatiq" not in [a.system for a in backend.probe()]
    DramatiqRedisJobs(r, redis_url, "probe", tmp_path).waiting(1)
    assert "dramatiq" in [a.system for a in backend.probe()]
    backend.close()


def test_an_unknown_queue_is_not_found(adapter) -> None:
    with pytest.raises(NotFound):
        adapter.queue("never-seen")


# --- the dashboard ------------------------------------------------------------------


def q_path(name: str) -> str:
    return f"redis/dramatiq/{name}"


def test_counts_on_the_page_and_in_the_api_equal_the_brokers(client, r, redis_url, tmp_path) -> None:
    names = {"emails": 3, "reports.nightly": 1}
    for name, dead in names.items():
        jobs = DramatiqRedisJobs(r, redis_url, name, tmp_path, max_retries=0)
        jobs.failed(dead)
        jobs.waiting(dead + 1)
        jobs.send("add", 0, 0, delay=3_600_000)
    api = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "dramatiq"}
    rows = table_rows(client.get("/").get_data(as_text=True))
    for name in names:
        expected = {"depth": r.llen(f"dramatiq:{name}"), "failed": r.zcard(f"dramatiq:{name}.XQ"),
                    "scheduled": r.hlen(f"dramatiq:{name}.DQ.msgs"), "in_progress": 0}  # fmt: skip
        assert {k: api[name][k] for k in expected} == expected
        assert {k: number(rows[f"redis/dramatiq/{name}"][k]) for k in expected} == expected
        page = client.get(f"/queues/{q_path(name)}").get_data(as_text=True)
        assert {k: number(v) for k, v in counts(page).items() if k in expected} == expected
        assert "Dead letters" in page


def test_a_message_requeued_through_the_page_and_the_api_is_run_by_a_real_worker(client, r, redis_url, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "ui", tmp_path)
    first, second, third = jobs.failed(3)
    jobs.allow()
    page = client.get(f"/queues/{q_path('ui')}").get_data(as_text=True)
    assert f'value="{first}"' in page
    answer = client.post(f"/queues/{q_path('ui')}/failed/requeue",
                         data={"csrf_token": csrf_token(client), "ids": [first]}, follow_redirects=True)  # fmt: skip
    assert "Requeued 1 job." in answer.get_data(as_text=True)
    api = client.post(f"/api/v1/queues/{q_path('ui')}/failed/requeue", json={"ids": [second, first]})
    assert api.get_json() == {"requeued": 1, "not_found": [first]}
    jobs.run_worker()
    assert jobs.succeeded(first) and jobs.succeeded(second) and not jobs.succeeded(third)
    assert client.post(f"/api/v1/queues/{q_path('ui')}/failed/delete", json={"all": True}).get_json() == {
        "deleted": 1, "not_found": []}  # fmt: skip


def test_reads_never_write_a_crawl_of_every_page_and_api_route(client, r, redis_url, tmp_path) -> None:
    jobs = DramatiqRedisJobs(r, redis_url, "crawl", tmp_path)
    ids = jobs.failed(3)
    jobs.waiting(2)
    before = redis_digest(r)
    qp = q_path("crawl")
    urls = [
        "/", "/workers", f"/queues/{qp}", f"/queues/{qp}?fragment=counts", f"/queues/{qp}?fragment=failed",
        f"/queues/{qp}?cursor=1&limit=1", "/api/v1/backends", "/api/v1/queues", f"/api/v1/queues/{qp}", "/api/v1/workers",
        f"/api/v1/queues/{qp}/failed", f"/api/v1/queues/{qp}/failed?limit=1&cursor=2", "/metrics", f"/queues/{qp}/jobs/missing",
        f"/api/v1/queues/{qp}/jobs/missing",
    ] + [f"/queues/{qp}/jobs/{i}" for i in ids] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]  # fmt: skip
    for url in urls:
        assert client.get(url).status_code < 500, url
        assert client.get(url, headers={"HX-Request": "true"}).status_code < 500, url
    assert redis_digest(r) == before


# --- the fault test -------------------------------------------------------------------


@contextlib.contextmanager
def slow_proxy(port: int, delay: float) -> Iterator[int]:
    """A TCP proxy to 127.0.0.1:``port`` that holds each request ``delay`` seconds: a
    requeue-all through it takes long enough to be killed in the middle."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def pipe(source: socket.socket, sink: socket.socket, wait: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                time.sleep(wait)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", port))
            sockets.extend((client, upstream))
            for args in ((client, upstream, delay), (upstream, client, 0)):
                threads.append(threading.Thread(target=pipe, args=args, daemon=True))
                threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for s in sockets:
            s.close()


@contextlib.contextmanager
def dashboard(tmp_path: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real ``queuewatch serve`` (gunicorn, sampler) in its own process group."""
    with start_queuewatch(tmp_path, "--poll", "60", *args) as (base, proc):
        yield base, proc


def post_in_background(url: str, body: dict) -> threading.Thread:
    def post() -> None:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=120).read()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_sigkill_in_the_middle_of_a_requeue_all_of_5000_loses_and_duplicates_nothing(r, redis_db, tmp_path) -> None:
    ids = make_dead_letters(RedisBroker(client=r), "bulk", 5000)
    with slow_proxy(REDIS_PORT, delay=0.02) as port, dashboard(tmp_path, "--redis", f"redis://127.0.0.1:{port}/{redis_db}",
                                                         "--rabbitmq", "none") as (base, proc):  # fmt: skip
        poster = post_in_background(f"{base}/api/v1/queues/redis/dramatiq/bulk/failed/requeue", {"all": True})
        deadline = time.monotonic() + 60
        while r.llen("dramatiq:bulk") < dramatiq_redis.CHUNK:
            assert time.monotonic() < deadline, (tmp_path / "queuewatch.log").read_text()
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        poster.join(10)
    moved, left = r.llen("dramatiq:bulk"), r.zcard("dramatiq:bulk.XQ")
    seen = Counter(message_ids(r, "dramatiq:bulk.msgs") + message_ids(r, "dramatiq:bulk.XQ.msgs"))
    lost, duplicated = set(ids) - set(seen), sum(n - 1 for n in seen.values())
    print(f"\nRedis SIGKILL during requeue-all of 5000: {moved} in the queue, {left} still dead letters, "
          f"{len(lost)} lost, {duplicated} duplicated")
    assert 0 < moved < 5000, "the kill must land in the middle of the requeue"
    assert (len(lost), duplicated, moved + left) == (0, 0, 5000)
    # Each half is whole: every queued id has its message, every dead letter too.
    assert r.hlen("dramatiq:bulk.msgs") == moved and r.hlen("dramatiq:bulk.XQ.msgs") == left


def test_the_namespace_is_configured_through_the_app(r, redis_url, tmp_path) -> None:
    DramatiqRedisJobs(r, redis_url, "spaced", tmp_path, namespace="other-app").waiting(2)
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.sqlite3"),
                      "POLL": 0.01, "DRAMATIQ_NAMESPACE": "other-app"})  # fmt: skip
    try:
        queues = app.test_client().get("/api/v1/queues").get_json()["queues"]
        assert [(q["system"], q["name"], q["depth"]) for q in queues] == [("dramatiq", "spaced", 2)]
    finally:
        app.extensions["queuewatch.monitor"].close()
