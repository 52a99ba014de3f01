"""A dashboard killed in the middle of a background requeue loses nothing, and
the next dashboard on the same state store finishes the operation."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from conftest import REDIS_PORT, start_queuewatch
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result

pytestmark = pytest.mark.redis_db(9)
JOBS = 3_000
TRACEBACK = "Traceback (most recent call last):\n  File \"billing/tasks.py\", line 7\nConnectionError: smtp 10.0.0.{n} refused"


def fail_jobs(r: redis.Redis, queue: str, count: int) -> list[str]:
    """Failed jobs written with RQ's own calls, as its worker writes them (no worker: 3,000 would take a minute)."""
    registry, ids = FailedJobRegistry(queue, connection=r), []
    now = datetime.now(timezone.utc)
    with r.pipeline() as pipe:
        for n in range(count):
            job = Job.create("billing.tasks.send_invoice", args=(n,), connection=r, origin=queue, status=JobStatus.FAILED)
            job.enqueued_at, job.started_at, job.ended_at = now, now, now + timedelta(milliseconds=n)
            registry.add(job, ttl=86400, exc_string=TRACEBACK.format(n=n), pipeline=pipe)
            Result.create_failure(job, 86400, exc_string=TRACEBACK.format(n=n), pipeline=pipe, execution_id=uuid.uuid4().hex)
            ids.append(job.id)
        pipe.sadd(Queue.redis_queues_keys, Queue(queue, connection=r).key)
        pipe.execute()
    return ids


def call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def wait_for(what, deadline: float, log: Path):  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < end, "timed out; dashboard log:\n" + "\n".join(p.read_text()[-3000:] for p in log.glob("*.log"))
        time.sleep(0.02)


def test_sigkill_mid_operation_loses_nothing_and_the_next_dashboard_finishes_it(r, redis_db, tmp_path) -> None:
    ids = fail_jobs(r, "resume", JOBS)
    args = ("--redis", f"redis://127.0.0.1:{REDIS_PORT}/{redis_db}", "--rabbitmq", "none", "--poll", "0.5", "--bulk-chunk", "10")
    with start_queuewatch(tmp_path, *args) as (base, proc):
        op = call(f"{base}/api/v1/operations", {"action": "requeue", "backend": "redis", "system": "rq", "queue": "resume"})
        url = f"{base}/api/v1/operations/{op['id']}"
        counted = wait_for(lambda: (s := call(url))["state"] == "ready" and s, 60, tmp_path)
        assert counted["total"] == JOBS and r.zcard("rq:failed:resume") == JOBS  # counting moved nothing
        call(url + "/confirm", {"total": JOBS})
        wait_for(lambda: r.llen("rq:queue:resume") >= 300, 60, tmp_path)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    moved, left = r.llen("rq:queue:resume"), r.zcard("rq:failed:resume")
    assert 0 < moved < JOBS, "the kill must land in the middle of the operation"
    assert moved + left == JOBS  # at the moment of the kill: every job in the queue or still failed

    with start_queuewatch(tmp_path, *args) as (base, _):  # the same state store: it takes the operation over
        url = f"{base}/api/v1/operations/{op['id']}"
        done = wait_for(lambda: (s := call(url))["state"] == "done" and s, 90, tmp_path)
    queued = [j.decode() for j in r.lrange("rq:queue:resume", 0, -1)]
    assert sorted(queued) == sorted(ids)  # every job once: none lost, none twice
    assert r.zcard("rq:failed:resume") == 0
    assert done["resumed"] >= 1 and done["processed"] == JOBS
    assert done["affected"] + done["skipped"] == JOBS and done["affected"] >= JOBS - 10  # at most the chunk in flight re-ran
    assert all(Job.fetch(i, connection=r).get_status() == "queued" for i in ids[:50])
