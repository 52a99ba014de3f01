"""The RQ adapter against real RQ data, made by the real rq library and workers."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
import subprocess
import zlib
from pathlib import Path

import pytest
import redis
import rq
import rq_tasks
from conftest import ROOT, TESTS, redis_digest, rq1_python, run_rq_worker
from contract import AdapterContract, JobFactory
from rq.job import Job
from rq.serializers import JSONSerializer

from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.base import ALL
from queuewatch.adapters.errors import NotFound
from queuewatch.adapters.rq.adapter import RQAdapter

JSON_SERIALIZER = "rq.serializers.JSONSerializer"


class RQJobs(JobFactory):
    def __init__(self, client: redis.Redis, url: str, queue: str, flag: Path, serializer=None) -> None:
        self.client, self.url, self.queue, self.flag = client, url, queue, flag
        self.serializer = serializer
        self.q = rq.Queue(queue, connection=client, serializer=serializer)

    def failed(self, n: int) -> list[str]:
        jobs = [self.q.enqueue(rq_tasks.fail_unless_exists, str(self.flag), i, note=f"job {i}") for i in range(n)]
        self.run_worker()
        assert all(job.get_status(refresh=True) == "failed" for job in jobs)
        return [job.id for job in jobs]

    def waiting(self, n: int) -> list[str]:
        return [self.q.enqueue(rq_tasks.add, i, i).id for i in range(n)]

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        run_rq_worker(self.url, self.queue, serializer=JSON_SERIALIZER if self.serializer else None)

    def succeeded(self, job_id: str) -> bool:
        return Job.fetch(job_id, connection=self.client, serializer=self.serializer).get_status() == "finished"

    def digest(self) -> object:
        return redis_digest(self.client)


@pytest.fixture
def adapter(r: redis.Redis) -> RQAdapter:
    return RQAdapter(backend="redis", client=r)


class TestRQContract(AdapterContract):
    @pytest.fixture
    def jobs(self, r, redis_url, tmp_path) -> RQJobs:
        return RQJobs(r, redis_url, "contract <q>/1", tmp_path / "flag")


class TestRQContractJSONSerializer(AdapterContract):
    @pytest.fixture
    def jobs(self, r, redis_url, tmp_path) -> RQJobs:
        return RQJobs(r, redis_url, "json-jobs", tmp_path / "flag", serializer=JSONSerializer)


def test_counts_equal_what_rq_reports(r, redis_url, adapter, tmp_path) -> None:
    jobs = {name: RQJobs(r, redis_url, name, tmp_path / "flag") for name in ("alpha", "beta.emails", "gamma:reports")}
    jobs["alpha"].failed(2)
    jobs["alpha"].waiting(4)
    jobs["beta.emails"].waiting(1)
    jobs["gamma:reports"].failed(3)
    jobs["beta.emails"].q.enqueue_in(timedelta(hours=1), rq_tasks.add, 1, 2)
    for name, factory in jobs.items():
        q = factory.q
        stats = adapter.queue(name)
        assert stats.depth == q.count
        assert stats.failed == q.failed_job_registry.count
        assert stats.scheduled == q.scheduled_job_registry.count + q.deferred_job_registry.count
        assert stats.in_progress == q.started_job_registry.count
        assert dict(stats.details)["finished"] == q.finished_job_registry.count
        assert (stats.oldest_age_seconds is not None) == (q.count > 0)
    assert {q.name for q in adapter.queues()} == set(jobs)


def test_workers_are_found_with_their_queues(r, redis_url, adapter) -> None:
    worker = rq.Worker(["alpha", "beta"], connection=r, name="w-1")
    worker.register_birth()
    worker.set_state("busy")
    try:
        [found] = adapter.workers()
        assert (found.name, found.alive, found.state, found.queues) == ("w-1", True, "busy", ("alpha", "beta"))
        assert found.pid and found.hostname and found.last_heartbeat
        assert {q.name: q.workers for q in adapter.queues()} == {"alpha": 1, "beta": 1}
        # Killed without a goodbye: the hash expires, the set still names it.
        r.delete(worker.key)
        [gone] = adapter.workers()
        assert (gone.name, gone.alive, gone.state) == ("w-1", False, "dead")
        assert {q.name: q.workers for q in adapter.queues()} == {}
    finally:
        worker.register_death()
    assert adapter.workers() == []


def test_failed_row_shows_function_args_and_exception(r, redis_url, adapter, tmp_path) -> None:
    [job_id] = RQJobs(r, redis_url, "rows", tmp_path / "flag").failed(1)
    [row] = adapter.failed("rows", limit=5).items
    assert row.function == "rq_tasks.fail_unless_exists"
    assert "0" in row.args_preview and "note='job 0'" in row.args_preview
    assert row.error_type == "FileNotFoundError"
    assert row.error_message == f"no such file: {tmp_path / 'flag'}"
    assert row.attempts == 1
    # The registry's score is when RQ drops the job: its failure_ttl (one year by default).
    assert row.started_at is not None and row.started_at <= row.failed_at
    assert timedelta(days=364) < row.expires_at - row.failed_at < timedelta(days=366)
    detail = adapter.job("rows", job_id)
    assert detail.args == (str(tmp_path / "flag"), 0) and detail.kwargs == {"note": "job 0"}
    assert detail.payload_encoding == "zlib+pickle"
    assert detail.status == "failed"


def test_a_job_of_another_queue_is_not_found_under_this_one(r, redis_url, adapter, tmp_path) -> None:
    [job_id] = RQJobs(r, redis_url, "one", tmp_path / "flag").failed(1)
    with pytest.raises(NotFound):
        adapter.job("two", job_id)


def test_requeue_leaves_what_rq_itself_would_leave(r, redis_url, adapter, tmp_path) -> None:
    jobs = RQJobs(r, redis_url, "same", tmp_path / "flag")
    ours, theirs = jobs.failed(2)
    adapter.requeue("same", [ours])
    jobs.q.failed_job_registry.requeue(theirs)
    a, b = (r.hgetall(f"rq:job:{i}") for i in (ours, theirs))
    for field in (b"status", b"started_at", b"ended_at", b"origin", b"worker_name"):
        assert a.get(field) == b.get(field), field
    assert r.lrange("rq:queue:same", 0, -1) == [ours.encode(), theirs.encode()]
    assert r.ttl(f"rq:job:{ours}") == -1  # a waiting job must not expire with the failure TTL


def test_requeue_all_of_10000_loses_none_and_duplicates_none(r, adapter) -> None:
    q = rq.Queue("bulk", connection=r)
    registry = q.failed_job_registry
    ids = []
    with r.pipeline() as pipe:
        for i in range(10_000):
            job = Job.create(rq_tasks.add, args=(i, i), connection=r, origin="bulk")
            job.set_status("failed", pipeline=pipe)
            registry.add(job, ttl=3600, exc_string="Traceback (most recent call last):\nValueError: x", pipeline=pipe)
            ids.append(job.id)
        pipe.execute()
    assert registry.count == 10_000
    result = adapter.requeue("bulk", ALL)
    assert (result.affected, result.not_found) == (10_000, ())
    queued = [i.decode() for i in r.lrange("rq:queue:bulk", 0, -1)]
    assert len(queued) == len(set(queued)) == 10_000
    assert set(queued) == set(ids)
    assert registry.count == 0
    assert {r.hget(f"rq:job:{i}", "status") for i in ids[:200]} == {b"queued"}


def test_requeue_all_skips_jobs_whose_data_expired(r, redis_url, adapter, tmp_path) -> None:
    ids = RQJobs(r, redis_url, "orphans", tmp_path / "flag").failed(3)
    r.delete(f"rq:job:{ids[0]}")
    result = adapter.requeue("orphans", ALL)
    assert (result.affected, result.not_found) == (2, (ids[0],))
    assert r.llen("rq:queue:orphans") == 2


def test_purge_keeps_jobs_enqueued_after_it_counted(r, adapter) -> None:
    q = rq.Queue("busy", connection=r)
    waiting = [q.enqueue(rq_tasks.add, i, i).id for i in range(2500)]
    assert adapter.purge("busy").affected == 2500
    assert q.count == 0
    assert not any(r.exists(f"rq:job:{i}") for i in waiting[:50])


def test_a_pickle_that_would_run_a_command_is_shown_not_run(r, adapter, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    data = zlib.compress(pickle.dumps(("rq_tasks.add", None, (Evil(),), {})))
    r.hset("rq:job:evil", mapping={"data": data, "origin": "bad", "status": "failed", "ended_at": "2026-01-01T00:00:00.000000Z"})
    r.zadd("rq:failed:bad", {"evil": 1e12})
    r.sadd("rq:queues", "rq:queue:bad")
    [row] = adapter.failed("bad", limit=5).items
    detail = adapter.job("bad", "evil")
    assert "system" in row.args_preview and "touch" in row.args_preview
    assert "system" in str(detail.args[0])
    assert not marker.exists()


def test_undecodable_data_is_described_with_its_size(r, adapter) -> None:
    r.hset("rq:job:junk", mapping={"data": b"\xff\xfe garbage \x00" * 10, "origin": "junk", "description": "junk()"})
    r.zadd("rq:failed:junk", {"junk": 1e12})
    [row] = adapter.failed("junk", limit=5).items
    assert row.function == "junk()"
    assert "bytes" in row.args_preview and "not decodable" in row.args_preview
    detail = adapter.job("junk", "junk")
    assert detail.payload_error and "bytes" in detail.payload_error


def test_backend_probe_finds_rq(r, redis_url) -> None:
    backend = RedisBackend(name="redis", url=redis_url)
    assert backend.probe() == []
    rq.Queue("x", connection=r).enqueue(rq_tasks.add, 1, 2)
    assert [a.system for a in backend.probe()] == ["rq"]
    backend.close()


RQ1_SCRIPT = """
import sys, rq, redis
from rq.serializers import JSONSerializer
sys.path.insert(0, {tests!r})
import rq_tasks
conn = redis.Redis.from_url({url!r})
ser = JSONSerializer if {json} else None
q = rq.Queue({queue!r}, connection=conn, serializer=ser)
ids = [q.enqueue(rq_tasks.fail_unless_exists, {flag!r}, i).id for i in range(2)]
w = rq.SimpleWorker([q], connection=conn, serializer=ser)
w.work(burst=True)
print("IDS", " ".join(ids))
"""

RQ1_RUN = """
import sys, rq, redis
from rq.serializers import JSONSerializer
sys.path.insert(0, {tests!r})
conn = redis.Redis.from_url({url!r})
ser = JSONSerializer if {json} else None
q = rq.Queue({queue!r}, connection=conn, serializer=ser)
rq.SimpleWorker([q], connection=conn, serializer=ser).work(burst=True)
print("STATUS", " ".join(rq.job.Job.fetch(i, connection=conn, serializer=ser).get_status() for i in sys.argv[1:]))
"""


@pytest.mark.parametrize("use_json", [False, True], ids=["pickle", "json"])
def test_rq_1_16_data_is_read_and_requeued(r, redis_url, adapter, tmp_path, use_json) -> None:
    python = rq1_python()
    flag = tmp_path / "flag"
    params = dict(tests=str(TESTS), url=redis_url, json=use_json, queue="legacy", flag=str(flag))
    made = subprocess.run([python, "-c", RQ1_SCRIPT.format(**params)], capture_output=True, text=True, check=True, cwd=ROOT)
    ids = _line(made.stdout, "IDS")
    stats = adapter.queue("legacy")
    assert stats.failed == 2
    page = adapter.failed("legacy", limit=5)
    assert {j.id for j in page.items} == set(ids)
    assert {j.error_type for j in page.items} == {"FileNotFoundError"}
    detail = adapter.job("legacy", ids[0])
    assert detail.args[0] == str(flag) and "FileNotFoundError" in (detail.traceback or "")
    assert adapter.requeue("legacy", ALL).affected == 2
    flag.touch()
    ran = subprocess.run([python, "-c", RQ1_RUN.format(**params), *ids], capture_output=True, text=True, check=True, cwd=ROOT)
    assert _line(ran.stdout, "STATUS") == ["finished", "finished"]


def _line(output: str, tag: str) -> list[str]:
    return next(line.split()[1:] for line in output.splitlines() if line.startswith(tag + " "))


def test_json_payload_decodes_as_json(r, redis_url, adapter, tmp_path) -> None:
    [job_id] = RQJobs(r, redis_url, "js", tmp_path / "flag", serializer=JSONSerializer).failed(1)
    detail = adapter.job("js", job_id)
    assert detail.payload_encoding == "zlib+json"
    assert json.loads(json.dumps(detail.kwargs)) == {"note": "job 0"}
