"""The Arq adapter against real Arq data, made by arq's own client and real arq workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import pickle
import pickletools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arq_tasks
import msgpack
import pytest
import redis
from arq.connections import RedisSettings, create_pool
from arq.jobs import DeserializationError, Job, deserialize_job_raw
from conftest import TESTS, redis_digest, wait_for
from contract import AdapterContract, JobFactory, MaintainedAdapterContract
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuewatch.adapters.arq import index as arq_index
from queuewatch.adapters.arq.adapter import ArqAdapter
from queuewatch.adapters.arq.jobs import job_record
from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.base import ALL
from queuewatch.adapters.errors import NotFound, Unsupported

pytestmark = pytest.mark.redis_db(10)

ARQ = str(Path(sys.executable).with_name("arq"))
SERIALIZERS = {
    "WorkerSettings": (None, None),
    "MsgpackWorkerSettings": (msgpack.packb, arq_tasks.msgpack_loads),
    "JSONWorkerSettings": (arq_tasks.json_dumps, json.loads),
}


def worker_env(url: str, queue: str, health_interval: float = 3600) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(TESTS), ARQ_TEST_REDIS=url, ARQ_TEST_QUEUE=queue,
                ARQ_TEST_HEALTH_INTERVAL=str(health_interval))  # fmt: skip



def run_async(coroutine):  # type: ignore[no-untyped-def]
    """asyncio.run in a thread of its own: a test process may already run an event loop in its
    main thread (Playwright's sync API does, once a browser test ran in the same process)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
def run_arq_worker(url: str, queue: str, settings: str = "WorkerSettings") -> None:
    """A real ``arq … --burst``: returns when the queue is empty."""
    subprocess.run([ARQ, f"arq_tasks.{settings}", "--burst"], env=worker_env(url, queue), cwd=TESTS,
                   capture_output=True, text=True, timeout=120, check=True)  # fmt: skip


@contextlib.contextmanager
def arq_worker(url: str, queue: str, health_interval: float = 1) -> Iterator[subprocess.Popen]:
    """A real arq worker running in the background until the block ends."""
    proc = subprocess.Popen([ARQ, "arq_tasks.WorkerSettings"], env=worker_env(url, queue, health_interval), cwd=TESTS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


class ArqClient:
    """arq's own client (``create_pool``, ``enqueue_job``), run to completion from sync tests."""

    def __init__(self, url: str, queue: str, settings: str = "WorkerSettings") -> None:
        self.url, self.queue = url, queue
        self.serializer, self.deserializer = SERIALIZERS[settings]

    async def _pool(self):
        return await create_pool(RedisSettings.from_dsn(self.url), job_serializer=self.serializer,
                                 job_deserializer=self.deserializer, default_queue_name=self.queue)  # fmt: skip

    def enqueue(self, calls: list[tuple[str, tuple, dict]]) -> list[str]:
        async def go() -> list[str]:
            pool = await self._pool()
            try:
                return [(await pool.enqueue_job(f, *args, _queue_name=self.queue, **kwargs)).job_id for f, args, kwargs in calls]
            finally:
                await pool.aclose()

        return run_async(go())

    def result_info(self, job_id: str):
        async def go():
            pool = await self._pool()
            try:
                return await Job(job_id, pool, _queue_name=self.queue, _deserializer=self.deserializer).result_info()
            finally:
                await pool.aclose()

        return run_async(go())

    def queued(self) -> list:
        async def go():
            pool = await self._pool()
            try:
                return await pool.queued_jobs(queue_name=self.queue)
            finally:
                await pool.aclose()

        return run_async(go())


class ArqJobs(JobFactory):
    def __init__(self, adapter: ArqAdapter, client: redis.Redis, url: str, queue: str, flag: Path,
                 settings: str = "WorkerSettings") -> None:  # fmt: skip
        self.adapter, self.client, self.url, self.queue, self.flag = adapter, client, url, queue, flag
        self.settings = settings
        self.arq = ArqClient(url, queue, settings)

    def failed(self, n: int) -> list[str]:
        ids = self.arq.enqueue([("fail_unless_exists", (str(self.flag), i), {"note": f"job {i}"}) for i in range(n)])
        self.run_worker()
        assert all(self.client.exists(f"arq:result:{i}") for i in ids)
        assert self.adapter.settle()
        return ids

    def waiting(self, n: int) -> list[str]:
        return self.arq.enqueue([("add", (i, i), {}) for i in range(n)])

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        run_arq_worker(self.url, self.queue, self.settings)

    def succeeded(self, job_id: str) -> bool:
        info = self.arq.result_info(job_id)
        return info is not None and info.success

    def digest(self) -> object:
        return redis_digest(self.client)


@pytest.fixture
def adapter(r: redis.Redis) -> ArqAdapter:
    return ArqAdapter(backend="redis", client=r)


class TestArqContract(AdapterContract, MaintainedAdapterContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> ArqJobs:
        return ArqJobs(adapter, r, redis_url, "arq:queue", tmp_path / "flag")


class TestArqContractCustomQueue(AdapterContract, MaintainedAdapterContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> ArqJobs:
        return ArqJobs(adapter, r, redis_url, "contract <q>/1", tmp_path / "flag")


class TestArqContractMsgpack(AdapterContract, MaintainedAdapterContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> ArqJobs:
        return ArqJobs(adapter, r, redis_url, "msgpack-jobs", tmp_path / "flag", settings="MsgpackWorkerSettings")


class TestArqContractJSON(AdapterContract, MaintainedAdapterContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> ArqJobs:
        return ArqJobs(adapter, r, redis_url, "json-jobs", tmp_path / "flag", settings="JSONWorkerSettings")


# -- beyond the contract ---------------------------------------------------------


def put_result(r: redis.Redis, job_id: str, queue: str | None, *, args: tuple = (1,), result: Any = None,
               finished_ms: int | None = None, px: int | None = 3_600_000, **fields: Any) -> None:
    """A failed result in arq's layout, written by hand (for data no worker would make)."""
    now = int(time.time() * 1000)
    record = {"t": 1, "f": "add", "a": args, "k": {}, "et": now - 10, "s": False,
              "r": ValueError("boom") if result is None else result, "st": now - 5, "ft": finished_ms or now}  # fmt: skip
    if queue is not None:
        record |= {"q": queue, "id": job_id}
    r.set(f"arq:result:{job_id}", pickle.dumps(record | fields), px=px)


def opcodes(data: bytes) -> list[tuple[str, Any]]:
    """A pickle's opcodes and arguments, without framing and memo puts (which may be re-encoded)."""
    skip = {"FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}
    return [(op.name, arg) for op, arg, _ in pickletools.genops(data) if op.name not in skip]


def failed_results(client: ArqClient) -> list:
    async def go():
        pool = await client._pool()
        try:
            return [i for i in await pool.all_job_results() if not i.success and i.queue_name == client.queue]
        finally:
            await pool.aclose()

    return run_async(go())


def test_counts_equal_what_arq_reports(r, redis_url, adapter, tmp_path) -> None:
    names = ("arq:queue", "emails.high", "reports:nightly")
    for i, name in enumerate(names):
        jobs = ArqJobs(adapter, r, redis_url, name, tmp_path / "flag")
        jobs.failed(i + 1)
        jobs.waiting(2 * i)
        jobs.arq.enqueue([("add", (1, 2), {"_defer_by": 3600})] * i)
    adapter.settle()
    now_ms = time.time() * 1000
    for name in names:
        client = ArqClient(redis_url, name)
        queued = client.queued()
        stats = adapter.queue(name)
        assert stats.depth == sum(1 for j in queued if j.score <= now_ms)
        assert stats.scheduled == sum(1 for j in queued if j.score > now_ms)
        assert stats.failed == len(failed_results(client))
        assert stats.in_progress == 0
        assert (stats.oldest_age_seconds is not None) == (stats.depth > 0)
        assert dict(stats.details)["deferred"] == stats.scheduled
    assert {q.name for q in adapter.queues()} == set(names)


def test_running_jobs_are_in_progress_and_the_worker_reports_its_health(r, redis_url, adapter) -> None:
    client = ArqClient(redis_url, "busy")
    with arq_worker(redis_url, "busy", health_interval=1):
        client.enqueue([("sleep", (3,), {})] * 2 + [("sleep", (3,), {"_defer_by": 3600})])
        wait_for(lambda: adapter.queue("busy").in_progress == 2)
        stats = adapter.queue("busy")
        assert (stats.depth, stats.scheduled, stats.workers) == (0, 1, 1)
        [worker] = wait_for(lambda: [w for w in adapter.workers() if w.state == "busy"])
        assert (worker.name, worker.alive, worker.queues) == ("arq worker on busy", True, ("busy",))
        assert worker.last_heartbeat is not None
        assert abs(time.time() - worker.last_heartbeat.timestamp()) < 10  # the worker's clock, read in our zone
        stats = adapter.queue("busy")
        assert dict(stats.details)["worker ongoing"] == 2
        assert any("Worker report" in n and "j_ongoing=2" in n for n in stats.notes)
        assert any("no per-worker identity" in n for n in stats.notes)
    # A worker that stops removes its report: it stays listed, dead, for a while.
    [gone] = adapter.workers()
    assert (gone.alive, gone.state) == (False, "dead")
    assert adapter.queue("busy").workers == 0


def test_a_stale_worker_report_is_not_alive(r, adapter) -> None:
    text = time.strftime("%b-%d %H:%M:%S") + " j_complete=4 j_failed=1 j_retried=0 j_ongoing=0 queued=0"
    r.set("fresh:health-check", text, px=10_000)
    r.set("late:health-check", text, px=400)  # in the last second of interval + 1: a write was missed
    r.zadd("fresh", {"x": 1})
    adapter.settle()
    workers = {w.queues[0]: w for w in adapter.workers()}
    assert (workers["fresh"].alive, workers["fresh"].state, workers["fresh"].successful_jobs) == (True, "idle", 4)
    assert (workers["late"].alive, workers["late"].state) == (False, "stale")
    assert any("stale" in n for n in adapter.queue("late").notes)
    assert adapter.queue("fresh").workers == 1 and adapter.queue("late").workers == 0


def test_jobs_failing_after_retries_show_their_last_error_and_run_again_after_requeue(r, redis_url, adapter, tmp_path) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "retries", tmp_path / "flag")
    gave_up, exceeded = jobs.arq.enqueue([("fail_after_retries", (str(jobs.flag),), {}),
                                          ("retry_unless_exists", (str(jobs.flag),), {})])  # fmt: skip
    jobs.run_worker()
    adapter.settle()
    rows = {j.id: j for j in adapter.failed("retries", limit=10).items}
    failure = {i: (rows[i].error_type, rows[i].error_message) for i in (gave_up, exceeded)}
    assert failure == {gave_up: ("ValueError", "gave up on try 3"),
                       exceeded: ("arq.worker.JobExecutionFailed", "max 3 retries exceeded")}  # fmt: skip
    assert rows[gave_up].attempts == 3
    assert rows[exceeded].attempts == 3  # arq records try 4, which it refused to run
    # The list says when the last try started and when arq will drop the result (keep_result).
    row = rows[gave_up]
    assert row.started_at is not None and row.started_at <= row.failed_at
    assert row.expires_at is not None and row.expires_at > row.failed_at
    assert adapter.requeue("retries", ALL).affected == 2
    for job_id in (gave_up, exceeded):
        assert deserialize_job_raw(r.get(f"arq:job:{job_id}"))[3] == 1  # the try starts over
        assert not r.exists(f"arq:retry:{job_id}")
    jobs.allow()
    jobs.run_worker()
    assert jobs.succeeded(gave_up) and jobs.succeeded(exceeded)
    assert jobs.arq.result_info(exceeded).job_try == 1


def test_a_requeued_job_keeps_arguments_of_any_class_opcode_for_opcode(r, redis_url, adapter, tmp_path) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "objects", tmp_path / "flag")
    [point_job] = jobs.arq.enqueue([("sum_point", (str(jobs.flag), arq_tasks.Point(2, 3)), {"scale": 10})])
    [odd_job] = jobs.arq.enqueue([("fail_unpicklably", (str(jobs.flag),), {})])
    jobs.run_worker()
    adapter.settle()
    rows = {j.id: j for j in adapter.failed("objects", limit=10).items}
    assert "arq_tasks.Point(" in rows[point_job].args_preview and "scale=10" in rows[point_job].args_preview
    # arq itself cannot read this result back (the exception does not unpickle); queuewatch shows it,
    # and leaves the exception out of the requeued job, which the worker could not load otherwise.
    with pytest.raises(DeserializationError):
        jobs.arq.result_info(odd_job)
    assert (rows[odd_job].error_type, rows[odd_job].error_message) == ("arq_tasks.Unpicklable", "7: cannot be rebuilt")
    result_ops = opcodes(r.get(f"arq:result:{point_job}"))
    assert adapter.requeue("objects", [point_job, odd_job]).affected == 2
    job_bytes = r.get(f"arq:job:{point_job}")
    # The job is the result's opcodes up to "et", the try replaced: the arguments are not pickled again.
    job_ops = opcodes(job_bytes)
    assert job_ops[:4] == result_ops[:4] and job_ops[4] == ("BININT1", 1)
    assert job_ops[5:-2] == result_ops[5 : len(job_ops) - 2] and job_ops[-2:] == [("SETITEMS", None), ("STOP", None)]
    function, args, kwargs, job_try, _ = deserialize_job_raw(job_bytes)  # arq's own reader
    assert (function, args[1].x, args[1].y, kwargs, job_try) == ("sum_point", 2, 3, {"scale": 10}, 1)
    jobs.allow()
    jobs.run_worker()
    assert jobs.arq.result_info(point_job).result == 50
    assert jobs.succeeded(odd_job)


@pytest.mark.parametrize("settings, encoding", [("MsgpackWorkerSettings", "msgpack"), ("JSONWorkerSettings", "json")])
def test_msgpack_and_json_failures_show_what_arq_could_store(r, redis_url, adapter, tmp_path, settings, encoding) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "packed", tmp_path / "flag", settings=settings)
    [job_id] = jobs.failed(1)
    [row] = adapter.failed("packed", limit=5).items
    assert (row.error_type, row.error_message) == ("SerializationError", "unable to serialize result")
    detail = adapter.job("packed", job_id)
    assert detail.payload_encoding == encoding and detail.args == (str(jobs.flag), 0)
    assert any("could not serialize" in n for n in detail.notes)
    adapter.requeue("packed", [job_id])
    _, deserializer = SERIALIZERS[settings]
    assert deserializer(r.get(f"arq:job:{job_id}")) | {"et": 0} == {
        "t": 1, "f": "fail_unless_exists", "a": [str(jobs.flag), 0], "k": {"note": "job 0"}, "et": 0}  # fmt: skip


def test_a_result_whose_pickle_would_run_a_command_is_shown_never_run(r, adapter, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    put_result(r, "evil", "bad", args=(Evil(),), result=Evil())
    adapter.settle()
    [row] = adapter.failed("bad", limit=5).items
    assert row.error_type == "posix.system" and f"touch {marker}" in row.error_message
    assert "system" in row.args_preview and "touch" in row.args_preview
    detail = adapter.job("bad", "evil")
    assert "touch" in str(detail.args[0]) and f"touch {marker}" in detail.traceback
    assert not marker.exists()


def test_queues_are_found_by_themselves(r, redis_url, adapter, tmp_path) -> None:
    ArqClient(redis_url, "only/waiting").enqueue([("add", (1, 2), {})])
    r.zadd("rq:failed:other", {"rq-job-id": 1})  # another system's zset: not an arq queue
    r.set("other:health-check", "not an arq report")
    with arq_worker(redis_url, "idle", health_interval=1):
        wait_for(lambda: r.exists("idle:health-check"))
        adapter.settle()
        queues = {q.name: q for q in adapter.queues()}
        assert set(queues) == {"only/waiting", "idle"}
        assert (queues["only/waiting"].depth, queues["idle"].workers) == (1, 1)
    with pytest.raises(NotFound):
        adapter.queue("rq:failed:other")


def test_backend_probe_finds_arq_on_custom_queues_only(r, redis_url) -> None:
    backend = RedisBackend(name="redis", url=redis_url)
    try:
        assert backend.probe() == []
        ArqClient(redis_url, "custom").enqueue([("add", (1, 2), {})])
        assert [a.system for a in backend.probe()] == ["arq"]
        adapter = backend.adapter("arq")
        adapter.settle()
        assert [q.name for q in adapter.queues()] == ["custom"]
    finally:
        backend.close()


def test_the_scan_is_budgeted_says_when_partial_and_rests_between_passes(r, adapter, monkeypatch) -> None:
    with r.pipeline() as pipe:
        for i in range(5000):
            pipe.set(f"arq:result:bulk-{i}", pickle.dumps({"t": 1, "f": "add", "a": (i,), "k": {}, "et": 1, "s": i % 2 == 0,
                                                            "r": ValueError(i), "st": 1, "ft": 2 + i, "q": "bulk"}))  # fmt: skip
        pipe.execute()
    adapter.maintain(budget_seconds=0.0)  # one step: COUNT 500 of about 5,000 keys
    stats = adapter.queue("bulk")
    assert 0 < stats.failed < 2500 and any("partial" in n for n in stats.notes)
    while not adapter.index.complete:
        adapter.maintain(budget_seconds=0.05)
    stats = adapter.queue("bulk")
    assert stats.failed == 2500 and not any("partial" in n for n in stats.notes)
    passes = adapter.index.passes_completed
    adapter.maintain(budget_seconds=1.0)
    assert adapter.index.passes_completed == passes  # the next pass waits its turn
    # A second pass reads only what changed: STRLEN and PTTL, no GET.
    reads, read_record = [], arq_index.read_record
    monkeypatch.setattr(arq_index, "read_record", lambda data, **kw: reads.append(1) or read_record(data, **kw))
    r.set("arq:result:bulk-new", pickle.dumps({"t": 1, "f": "add", "a": (), "k": {}, "et": 1, "s": False, "r": None,
                                               "st": 1, "ft": 99_999, "q": "bulk"}))  # fmt: skip
    adapter.settle()
    assert len(reads) == 1 and adapter.queue("bulk").failed == 2501
    assert adapter.failed("bulk", limit=1).items[0].id == "bulk-new"


def test_the_index_keeps_the_newest_per_queue_and_estimates_the_rest(r, adapter, monkeypatch) -> None:
    monkeypatch.setattr(adapter.index, "max_per_queue", 5)
    for i in range(12):
        put_result(r, f"job-{i:02}", "many", finished_ms=1_700_000_000_000 + i)
    adapter.settle()
    stats = adapter.queue("many")
    assert stats.failed == 12 and any("about 12" in n for n in stats.notes)
    page = adapter.failed("many", limit=20)
    assert len(page.items) <= 6 and page.items[0].id == "job-11"


def test_results_that_expire_or_vanish_leave_the_list(r, redis_url, adapter, tmp_path) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "fleeting", tmp_path / "flag")
    first, second, third = jobs.failed(3)
    r.delete(f"arq:result:{first}")
    r.pexpire(f"arq:result:{second}", 1)
    time.sleep(0.05)
    page = adapter.failed("fleeting", limit=10)
    assert [j.id for j in page.items] == [third]
    assert adapter.queue("fleeting").failed == 1
    with pytest.raises(NotFound):
        adapter.job("fleeting", first)


def test_requeue_refuses_records_it_cannot_rebuild_and_changes_nothing(r, adapter) -> None:
    put_result(r, "old", None)  # an older arq: no queue name in the result
    put_result(r, "fine", "arq:queue")
    adapter.settle()
    assert {j.id for j in adapter.failed("arq:queue", limit=5).items} == {"old", "fine"}
    before = redis_digest(r)
    with pytest.raises(Unsupported, match="does not name its queue"):
        adapter.requeue("arq:queue", ALL)
    assert redis_digest(r) == before
    assert adapter.delete("arq:queue", ["old"]).affected == 1


def test_requeue_clears_the_try_counter_and_an_old_abort_request(r, redis_url, adapter, tmp_path) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "aborted", tmp_path / "flag")
    [job_id] = jobs.failed(1)
    r.set(f"arq:retry:{job_id}", 5)
    r.set(f"arq:in-progress:{job_id}", 1)
    r.zadd("arq:abort", {job_id: 1})
    assert adapter.requeue("aborted", [job_id]).affected == 1
    assert not r.exists(f"arq:retry:{job_id}", f"arq:in-progress:{job_id}", f"arq:result:{job_id}")
    assert r.zscore("arq:abort", job_id) is None
    assert 0 < r.pttl(f"arq:job:{job_id}") <= 86_400_000  # arq's own expiry for a job: a day
    assert adapter.requeue("aborted", [job_id]).not_found == (job_id,)


def test_purge_removes_ready_jobs_and_keeps_running_deferred_and_failed_ones(r, redis_url, adapter, tmp_path) -> None:
    jobs = ArqJobs(adapter, r, redis_url, "purged", tmp_path / "flag")
    failed = jobs.failed(1)
    running, *ready = jobs.waiting(4)
    [deferred] = jobs.arq.enqueue([("add", (1, 1), {"_defer_by": 3600})])
    r.set(f"arq:in-progress:{running}", 1)
    assert adapter.purge("purged").affected == 3
    assert {m.decode() for m in r.zrange("purged", 0, -1)} == {running, deferred}
    assert not any(r.exists(f"arq:job:{i}") for i in ready) and r.exists(f"arq:job:{running}")
    assert r.exists(f"arq:result:{failed[0]}")
    stats = adapter.queue("purged")
    assert (stats.depth, stats.in_progress, stats.scheduled, stats.failed) == (0, 1, 1, 1)


def test_a_cursor_that_was_not_given_out_is_not_found(r, adapter) -> None:
    put_result(r, "one", "arq:queue")
    adapter.settle()
    for cursor in ("bogus", "12", "x:y"):
        with pytest.raises(NotFound):
            adapter.failed("arq:queue", limit=5, cursor=cursor)
    assert adapter.failed("arq:queue", limit=5, cursor="0").items[0].id == "one"


def test_keys_that_are_not_arq_results_do_not_stop_the_scan(r, adapter) -> None:
    r.hset("arq:result:a-hash", "s", 0)
    r.set("arq:result:not-a-pickle", b"\xff\xfe garbage")
    r.set("arq:result:a-list-pickle", pickle.dumps([1, 2]))
    put_result(r, "real", "arq:queue")
    adapter.settle()
    assert [j.id for j in adapter.failed("arq:queue", limit=10).items] == ["real"]
    detail = adapter.job("arq:queue", "not-a-pickle")
    assert detail.payload_error and "bytes" in detail.payload_error
    with pytest.raises(NotFound):
        adapter.job("arq:queue", "a-hash")


def test_a_requeue_racing_another_dashboard_enqueues_the_job_once(r, redis_url, adapter, tmp_path, monkeypatch) -> None:
    from queuewatch.adapters.arq import adapter as arq_module

    [job_id] = ArqJobs(adapter, r, redis_url, "race", tmp_path / "flag").failed(1)
    other_client = redis.Redis.from_url(redis_url)
    other = ArqAdapter(backend="redis", client=other_client)
    calls, job_record = [], arq_module.job_record

    def racing(data: bytes, encoding: str, job_try: int = 1) -> bytes:
        calls.append(encoding)
        if len(calls) == 2:  # ours, inside the transaction (after WATCH): the other dashboard gets there first
            assert other.requeue("race", [job_id]).affected == 1
        return job_record(data, encoding, job_try)

    monkeypatch.setattr(arq_module, "job_record", racing)
    try:
        result = adapter.requeue("race", [job_id])
    finally:
        other_client.close()
    assert (result.affected, result.not_found) == (0, (job_id,))
    assert r.zrange("race", 0, -1) == [job_id.encode()]


# The values a job's arguments can hold, shared between them and the exception
# (pickle memoizes shared objects, and arq's key strings are reused by values).
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.binary(max_size=70_000)
    | st.sampled_from(["t", "f", "a", "k", "et", "s", "r", "q"]) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner) | st.frozensets(st.integers(), max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=5) | st.builds(arq_tasks.Point, inner, inner),
    max_leaves=15,
)  # fmt: skip


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(_values, max_size=4), kwargs=st.dictionaries(st.text(max_size=5), _values, max_size=3),
       job_try=st.none() | st.integers(0, 10**15), function=st.sampled_from(["add", "a", "k", "t"]),
       protocol=st.integers(2, 5), shared=_values)  # fmt: skip
def test_a_job_rebuilt_from_any_result_pickle_is_what_arq_enqueued(args, kwargs, job_try, function, protocol, shared):
    args = (*args, shared)
    result = {"t": job_try, "f": function, "a": args, "k": kwargs, "et": 1, "s": False, "r": ValueError(shared, args),
              "st": 2, "ft": 3, "q": "q", "id": "a"}  # fmt: skip
    job = job_record(pickle.dumps(result, protocol=protocol), "pickle")
    loaded = pickle.loads(job)  # our own test data: loading it here is safe
    expected = {"t": 1, "f": function, "a": args, "k": kwargs, "et": 1}
    assert _plain(loaded) == _plain(expected)


def _plain(value: Any) -> Any:
    """``value`` with each Point (which has no __eq__) as a tuple, to compare by value."""
    if isinstance(value, arq_tasks.Point):
        return ("Point", _plain(value.x), _plain(value.y))
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
