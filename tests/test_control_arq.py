"""Stopping a running Arq job from the dashboard: arq's own abort (``arq:abort``), obeyed by a
real worker with ``allow_abort_jobs`` and ignored by one without it, as the answer then says."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from arq.jobs import JobStatus
from conftest import TESTS, wait_for
from test_arq_adapter import ARQ, ArqClient, worker_env
from test_jobs_arq import arq_status

from queuewatch.adapters.base import QueueStats
from queuewatch.views.metrics import SnapshotCollector
from queuewatch.views.shapes import queue_json

pytestmark = pytest.mark.redis_db(13)
Q = "arq:queue"
API = "/api/v1/queues/redis/arq/arq%3Aqueue"


@contextlib.contextmanager
def worker(url: str, settings: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([ARQ, f"arq_tasks.{settings}"], env=worker_env(url, Q, 1), cwd=TESTS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def arq(redis_url) -> ArqClient:
    return ArqClient(redis_url, Q)


def test_an_aborted_job_ends_failed_with_cancelled_error_under_allow_abort_jobs(client, arq, redis_url, r) -> None:
    [slow] = arq.enqueue([("sleep", (60,), {})])
    with worker(redis_url, "AbortWorkerSettings"):
        wait_for(lambda: arq_status(arq, slow) == JobStatus.in_progress, what="arq to start the job")
        answer = client.post(f"{API}/jobs/{slow}/stop", json={})
        assert answer.status_code == 202, answer.get_data(as_text=True)
        body = answer.get_json()
        assert body["stopping"] is True and body["worker"] == f"arq worker on {Q}"
        started = time.monotonic()
        wait_for(lambda: arq_status(arq, slow) == JobStatus.complete, timeout=15, what="arq to abort the job")
        assert time.monotonic() - started < 10  # not the 60 s it would have slept
    info = arq.result_info(slow)
    assert info.success is False and isinstance(info.result, asyncio.CancelledError)
    followed = client.get(body["follow"]).get_json()
    assert (followed["outcome"], followed["state"]) == ("ended", "failed")
    assert not r.zscore("arq:abort", slow)  # the worker took the request


def test_without_allow_abort_jobs_the_answer_is_202_then_it_says_the_job_did_not_stop_and_why(client, arq, redis_url, r) -> None:
    [slow] = arq.enqueue([("sleep", (6,), {})])
    with worker(redis_url, "WorkerSettings"):
        wait_for(lambda: arq_status(arq, slow) == JobStatus.in_progress, what="arq to start the job")
        answer = client.post(f"{API}/jobs/{slow}/stop", json={})
        assert answer.status_code == 202
        assert r.zscore("arq:abort", slow) is not None  # arq's own request, as Job.abort writes it
        follow = answer.get_json()["follow"]
        time.sleep(2.5)
        late = client.get(follow + "&timeout=2").get_json()
        assert (late["outcome"], late["stopped"], late["state"]) == ("not_stopped", False, "in_progress")
        assert "allow_abort_jobs" in late["message"]
        page = client.get(follow.replace("/api/v1", "").replace("/stop?", "/stopping?") + "&timeout=2").get_data(as_text=True)
        assert "data-not-stopped" in page and "allow_abort_jobs" in page
        wait_for(lambda: arq_status(arq, slow) == JobStatus.complete, timeout=20, what="the job to run to its end")
    assert arq.result_info(slow).success is True
    assert r.zscore("arq:abort", slow) is None  # finishing the job removed the request


def test_a_waiting_arq_job_is_not_stopped_and_arq_cannot_pause(client, arq) -> None:
    [waiting] = arq.enqueue([("add", (1, 2), {})])
    answer = client.post(f"{API}/jobs/{waiting}/stop", json={})
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "not_running"
    assert client.post(f"{API}/jobs/never-enqueued/stop", json={}).status_code == 404
    paused = client.post(f"{API}/pause", json={})
    assert paused.status_code == 409 and "cannot pause" in paused.get_json()["error"]["message"]
    assert "data-pause-queue" not in client.get("/queues/redis/arq/arq%3Aqueue").get_data(as_text=True)


def test_paused_is_in_the_queue_json_and_in_metrics_where_the_system_can_pause() -> None:
    def stats(name: str, paused: bool | None) -> QueueStats:
        return QueueStats("redis", "celery", name, 3, 0, 0, 0, 1, None, paused=paused)

    assert [queue_json(stats(n, p))["paused"] for n, p in (("a", True), ("b", False), ("c", None))] == [True, False, None]

    class Snap:
        queues = [stats("a", True), stats("b", False), stats("c", None)]
        backends: list = []
        workers: list = []

    [family] = [m for m in SnapshotCollector(Snap(), None).collect() if m.name == "queuewatch_queue_paused"]  # type: ignore[arg-type]
    assert [(s.labels["queue"], s.value) for s in family.samples] == [("a", 1), ("b", 0)]
