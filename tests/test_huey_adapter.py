"""The Huey adapter against real Huey data, made by huey's own API and real ``huey_consumer`` processes.

Huey 3.x runs from the test environment; Huey 2.x from ``.venv-huey2`` (``python -m venv
.venv-huey2 && .venv-huey2/bin/pip install 'huey>=2.5,<3' 'redis<6'``), skipped when absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huey_tasks
import pytest
import redis
from conftest import ROOT, TESTS, redis_digest, unavailable, wait_for
from contract import AdapterContract, JobFactory, MaintainedAdapterContract
from huey.exceptions import TaskException

from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.base import ALL
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.huey import HueyAdapter

pytestmark = pytest.mark.redis_db(12)

CONSUMER = str(Path(sys.executable).with_name("huey_consumer"))
HUEY2 = ROOT / ".venv-huey2" / "bin"


@contextlib.contextmanager
def consumer(url: str, name: str, kind: str, bin_dir: Path | None = None) -> Iterator[subprocess.Popen]:
    """A real ``huey_consumer huey_tasks.huey`` (two threads, polling fast) until the block ends."""
    program = str((bin_dir / "huey_consumer") if bin_dir else CONSUMER)
    env = dict(os.environ, PYTHONPATH=str(TESTS), HUEY_TEST_REDIS=url, HUEY_TEST_NAME=name, HUEY_TEST_CLASS=kind)
    proc = subprocess.Popen([program, "huey_tasks.huey", "-w", "2", "-d", "0.05", "-m", "0.2", "-q"], cwd=TESTS,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


class HueyJobs(JobFactory):
    def __init__(self, adapter: HueyAdapter, client: redis.Redis, url: str, name: str, kind: str, flag: Path) -> None:
        self.adapter, self.client, self.url, self.queue, self.kind, self.flag = adapter, client, url, name, kind, flag
        self.huey = huey_tasks.build(kind, name, url)

    def enqueue(self, calls: list) -> list[str]:
        return huey_tasks.enqueue(self.huey, calls)

    def stored(self, ids: list[str]) -> bool:
        return all(self.huey.storage.has_data_for_key(i) for i in ids)

    def failed(self, n: int) -> list[str]:
        ids = self.enqueue([("fail_unless_exists", [str(self.flag), i], {"note": f"job {i}"}) for i in range(n)])
        with consumer(self.url, self.queue, self.kind):
            wait_for(lambda: self.stored(ids), what="the failures' Error records")
        assert self.adapter.settle()
        return ids

    def waiting(self, n: int) -> list[str]:
        return self.enqueue([("add", [i, i], {}) for i in range(n)])

    def allow(self) -> None:
        self.flag.touch()

    def run_worker(self) -> None:
        with consumer(self.url, self.queue, self.kind):
            wait_for(lambda: self.huey.pending_count() == 0, what="an empty queue")

    def succeeded(self, job_id: str) -> bool:
        try:
            return self.huey.result(job_id, preserve=True) is not None
        except TaskException:
            return False

    def digest(self) -> object:
        return redis_digest(self.client)


@pytest.fixture
def adapter(r: redis.Redis) -> HueyAdapter:
    return HueyAdapter(backend="redis", client=r)


class HueyContract(AdapterContract, MaintainedAdapterContract):
    """The shared contract; requeue is refused with its reason (Huey keeps no failed message)."""

    def test_job_detail_has_args_and_traceback(self, adapter, jobs) -> None:
        [job_id] = jobs.failed(1)
        detail = adapter.job(jobs.queue, job_id)
        assert (detail.id, detail.queue, detail.state) == (job_id, jobs.queue, "failed")
        assert detail.traceback and detail.error_type == "FileNotFoundError" and "FileNotFoundError" in detail.traceback
        assert (detail.args, detail.kwargs) == ((), {})  # Huey keeps none: the page says so
        assert any("no copy of a failed task's message" in n for n in detail.notes)

    def _refused(self, adapter, jobs, selection) -> None:
        ids = jobs.failed(2)
        before = jobs.digest()
        with pytest.raises(Unsupported, match="no copy of a failed task's message"):
            adapter.requeue(jobs.queue, selection(ids))
        assert jobs.digest() == before and self.stats(adapter, jobs.queue).failed == 2

    def test_requeued_job_is_run_by_a_real_worker(self, adapter, jobs) -> None:
        self._refused(adapter, jobs, lambda ids: ids[:1])

    def test_requeue_twice_does_not_enqueue_twice(self, adapter, jobs) -> None:
        self._refused(adapter, jobs, lambda ids: ids)

    def test_requeue_all_moves_every_failed_job(self, adapter, jobs) -> None:
        self._refused(adapter, jobs, lambda ids: ALL)

    def test_a_background_operation_counts_then_requeues_every_failed_job_and_they_run(self, adapter, jobs) -> None:
        self._refused(adapter, jobs, lambda ids: ALL)


class TestHueyContract(HueyContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> HueyJobs:
        return HueyJobs(adapter, r, redis_url, "huey", "RedisHuey", tmp_path / "flag")


class TestHueyContractPriority(HueyContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> HueyJobs:
        return HueyJobs(adapter, r, redis_url, "orders_2", "PriorityRedisHuey", tmp_path / "flag")


class TestHueyContractExpire(HueyContract):
    @pytest.fixture
    def jobs(self, adapter, r, redis_url, tmp_path) -> HueyJobs:
        return HueyJobs(adapter, r, redis_url, "reports", "RedisExpireHuey", tmp_path / "flag")


# -- beyond the contract ---------------------------------------------------------


@pytest.fixture(params=["RedisHuey", "PriorityRedisHuey", "RedisExpireHuey"])
def kind(request) -> str:
    return request.param


def test_counts_and_lists_equal_what_huey_reports(r, redis_url, adapter, kind, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "mail", kind, tmp_path / "flag")
    jobs.failed(2)
    priority = kind.startswith("Priority")
    jobs.enqueue([("add", [i, i], {}, {"priority": i} if priority else {}) for i in range(4)]
                 + [("sum_point", [{"point": [1, 2]}], {"scale": 3})])  # fmt: skip
    for delay in (300, 100, 200):  # Huey's own add_schedule, as its consumer does for an eta
        jobs.huey.add_schedule(jobs.huey.test_tasks["touch"].task_class((str(tmp_path / "later"),), {},
                                                                         eta=huey_tasks.normalize_time(None, delay)))  # fmt: skip
    stats = adapter.queue("mail")
    assert (stats.depth, stats.scheduled, stats.failed) == (jobs.huey.pending_count(), jobs.huey.scheduled_count(), 2)
    assert (stats.workers, stats.in_progress) == (None, None) and "no registry" in stats.workers_unknown
    waiting = adapter.jobs("mail", "waiting", limit=3)
    rest = adapter.jobs("mail", "waiting", limit=3, cursor=waiting.next_cursor)
    assert [j.id for j in waiting.items + rest.items] == [t.id for t in jobs.huey.pending()]  # next to run first
    assert waiting.total == 5 and rest.next_cursor is None
    point = next(j for j in waiting.items + rest.items if j.function == "huey_tasks.sum_point")
    assert "huey_tasks.Point" in point.args_preview and "scale=3" in point.args_preview
    scheduled = adapter.jobs("mail", "scheduled", limit=10)
    assert [j.id for j in scheduled.items] == [t.id for t in jobs.huey.scheduled()]
    etas = [j.scheduled_for for j in scheduled.items]
    assert etas == sorted(etas) and [t.eta for t in jobs.huey.scheduled()] == [e.replace(tzinfo=None) for e in etas]
    assert "mail" in [q.name for q in adapter.queues()]
    with pytest.raises(Unsupported, match="running"):
        adapter.jobs("mail", "in_progress", limit=10)


def test_enqueue_now_runs_a_scheduled_task_with_a_real_consumer(r, redis_url, adapter, kind, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "later", kind, tmp_path / "flag")
    now, later = tmp_path / "now", tmp_path / "later"
    [first, second] = jobs.enqueue([("touch", [str(now)], {}, {"delay": 3600}), ("touch", [str(later)], {}, {"delay": 3600})])
    jobs.waiting(1)  # the queue exists, so its kind (list or priority zset) is known
    adapter.queue("later")
    with consumer(redis_url, "later", kind):  # the consumer moves tasks with an eta to the schedule
        wait_for(lambda: jobs.huey.scheduled_count() == 2, what="both tasks in the schedule")
        assert adapter.enqueue_now("later", [first, "no-such-task"]).not_found == ("no-such-task",)
        wait_for(now.exists, what="the task enqueued now to run")
    assert not later.exists() and [t.id for t in jobs.huey.scheduled()] == [second]
    assert jobs.huey.result(first, preserve=True) == str(now)


def test_a_revoked_task_is_skipped_by_the_consumer_as_huey_revoke_by_id_leaves_it(r, redis_url, adapter, kind, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "tidy", kind, tmp_path / "flag")
    skipped, ran = tmp_path / "skipped", tmp_path / "ran"
    [revoked, kept] = jobs.enqueue([("touch", [str(skipped)], {}), ("touch", [str(ran)], {})])
    with pytest.raises(Unsupported, match="no result store yet"):  # hash or keys of their own: unknown yet
        adapter.revoke("tidy", [revoked])
    jobs.huey.put("something", 1)  # any entry tells where the store is
    assert adapter.revoke("tidy", [revoked]).affected == 1
    assert jobs.huey.is_revoked(revoked) and not jobs.huey.is_revoked(kept)
    theirs = huey_tasks.build(kind, "theirs", redis_url)
    theirs.revoke_by_id("same")  # what Huey itself writes, byte for byte
    field = lambda name, key: r.hget(f"huey.results.{name}", key) or r.get(f"huey.r.{name}.{key}")  # noqa: E731
    assert field("tidy", f"r:{revoked}") == field("theirs", "r:same")
    with consumer(redis_url, "tidy", kind):
        wait_for(ran.exists, what="the task not revoked to run")
        wait_for(lambda: jobs.huey.pending_count() == 0, what="the revoked task to be dequeued")
    assert not skipped.exists()
    adapter.settle()
    assert [j.id for j in adapter.jobs("tidy", "canceled", limit=10).items] == [revoked]
    assert ("tidy", "canceled") in adapter.find(revoked)
    assert adapter.restore("tidy", [revoked]).affected == 1 and not jobs.huey.is_revoked(revoked)


def test_delete_removes_exactly_the_chosen_waiting_and_scheduled_tasks(r, redis_url, adapter, kind, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "pick", kind, tmp_path / "flag")
    marks = [tmp_path / f"w{i}" for i in range(5)]
    waiting = jobs.enqueue([("touch", [str(m)], {}) for m in marks])
    scheduled = [jobs.huey.test_tasks["touch"].task_class((str(tmp_path / f"s{i}"),), {},
                                                          eta=huey_tasks.normalize_time(None, 3600)) for i in range(3)]  # fmt: skip
    for task in scheduled:
        jobs.huey.add_schedule(task)
    chosen = [waiting[1], waiting[3], scheduled[0].id]
    result = adapter.delete_jobs("pick", [*chosen, "no-such-task", waiting[1]])
    assert (result.affected, result.not_found) == (3, ("no-such-task",))
    assert [t.id for t in jobs.huey.pending()] == [waiting[i] for i in (0, 2, 4)]
    assert [t.id for t in jobs.huey.scheduled()] == [t.id for t in scheduled[1:]]
    with consumer(redis_url, "pick", kind):
        wait_for(lambda: all(marks[i].exists() for i in (0, 2, 4)), what="the tasks kept to run")
        wait_for(lambda: jobs.huey.pending_count() == 0, what="an empty queue")
    assert not marks[1].exists() and not marks[3].exists()


def test_purge_removes_waiting_tasks_and_keeps_the_schedule_and_failures(r, redis_url, adapter, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "huey", "RedisHuey", tmp_path / "flag")
    jobs.failed(1)
    jobs.waiting(4)
    jobs.huey.add_schedule(jobs.huey.test_tasks["add"].task_class((1, 2), {}, eta=huey_tasks.normalize_time(None, 60)))
    assert adapter.purge("huey").affected == 4
    stats = adapter.queue("huey")
    assert (stats.depth, stats.scheduled, stats.failed) == (0, 1, 1)


def test_a_failure_with_retries_left_says_huey_retries_it(r, redis_url, adapter, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "retry", "RedisHuey", tmp_path / "flag")
    [task_id] = jobs.enqueue([("fail_twice_then_give_up", [str(tmp_path / "never")], {})])
    with consumer(redis_url, "retry", "RedisHuey"):
        wait_for(lambda: jobs.huey.storage.has_data_for_key(task_id), what="the first Error")
        detail = adapter.job("retry", task_id)
        assert detail.state == "failed" and dict(detail.details)["retries left"] in ("1", "2")
        wait_for(lambda: adapter.job("retry", task_id).details == (("retries left", "0"),), what="the last attempt")
    assert adapter.job("retry", task_id).error_type == "ValueError"
    assert ("retry", "failed") in adapter.find(task_id)


def test_found_by_itself_on_a_backend(r, redis_url, adapter, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "custom_name", "RedisHuey", tmp_path / "flag")
    jobs.waiting(1)
    backend = RedisBackend(name="redis", url=redis_url, client=r)
    [found] = [a for a in backend.probe() if a.system == "huey"]
    found.settle()
    assert [q.name for q in found.queues()] == ["custom_name"]
    assert not HueyAdapter.detect(r)  # not the default name: found by the key survey
    with pytest.raises(NotFound):
        found.queue("nothing_here")


def test_huey_2_data_is_read_too(r, redis_url, adapter, tmp_path) -> None:
    if not (HUEY2 / "python").exists():
        unavailable(f"{HUEY2} is missing (make test builds it: huey 2.x writes the data)")
    env = dict(os.environ, PYTHONPATH=str(TESTS), HUEY_TEST_REDIS=redis_url, HUEY_TEST_NAME="old", HUEY_TEST_CLASS="RedisHuey")
    run = lambda calls: subprocess.run([str(HUEY2 / "python"), "huey_tasks.py", "enqueue", json.dumps(calls)], cwd=TESTS,  # noqa: E731
                                       env=env, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    failing = run([["fail_with", ["old <b>"], {}]])
    assert adapter.queue("old").depth == 1  # seen waiting: a plain list, so enqueue-now knows where to push
    flag = tmp_path / "v2"
    with consumer(redis_url, "old", "RedisHuey", HUEY2):
        wait_for(lambda: r.hexists("huey.results.old", failing[0]), what="the Huey 2 failure")
        [later] = run([["touch", [str(flag)], {}, {"delay": 3600}]])
        wait_for(lambda: r.zcard("huey.schedule.old") == 1, what="the Huey 2 schedule")
        assert adapter.enqueue_now("old", [later]).affected == 1
        wait_for(flag.exists, what="the Huey 2 task enqueued now")
    waiting = run([["add", [1, 2], {}]])
    adapter.settle()
    [row] = adapter.failed("old", limit=5).items
    assert (row.id, row.error_type, row.error_message) == (failing[0], "RuntimeError", "old <b>")
    [job] = adapter.jobs("old", "waiting", limit=5).items
    assert (job.id, job.function, job.args_preview) == (waiting[0], "huey_tasks.add", "1, 2")


def test_enqueue_now_refuses_while_the_queue_kind_is_unknown(r, redis_url, adapter, tmp_path) -> None:
    """An empty priority queue looks like an empty plain one: pushing a list there would stop its consumer."""
    jobs = HueyJobs(adapter, r, redis_url, "quiet", "PriorityRedisHuey", tmp_path / "flag")
    task = jobs.huey.test_tasks["add"].task_class((1, 2), {}, eta=huey_tasks.normalize_time(None, 60))
    jobs.huey.add_schedule(task)
    before = redis_digest(r)
    with pytest.raises(Unsupported, match="cannot tell a priority queue"):
        adapter.enqueue_now("quiet", [task.id])
    assert redis_digest(r) == before
    jobs.waiting(1)
    adapter.queue("quiet")  # now seen: a zset
    assert adapter.enqueue_now("quiet", [task.id]).affected == 1
    assert [t.id for t in jobs.huey.pending()][0] == task.id  # at the front of its priority


def test_compressed_messages_are_listed_and_enqueued_now_as_huey_reads_them(r, redis_url, adapter) -> None:
    instance = huey_tasks.build("RedisHuey", "zipped", redis_url, compression=True)
    [waiting] = huey_tasks.enqueue(instance, [("add", [1, 2], {"x": "y"})])
    task = instance.test_tasks["touch"].task_class(("/nowhere",), {"k": [1, 2]}, eta=huey_tasks.normalize_time(None, 600))
    instance.add_schedule(task)
    [row] = adapter.jobs("zipped", "waiting", limit=5).items
    assert (row.id, row.function, row.args_preview) == (waiting, "huey_tasks.add", "1, 2, x='y'")
    assert adapter.job("zipped", waiting).payload_encoding == "gzip+pickle"
    assert adapter.enqueue_now("zipped", [task.id]).affected == 1
    [moved, _] = instance.pending()  # huey's own reader: next to run first
    assert (moved.id, moved.args, moved.kwargs) == (task.id, ("/nowhere",), {"k": [1, 2]})
    assert moved.eta <= huey_tasks.huey_lib.utils.utcnow() and instance.scheduled_count() == 0


def test_a_signing_instance_is_not_revoked_or_rewritten(r, redis_url, adapter) -> None:
    from huey.serializer import SignedSerializer

    instance = huey_tasks.build("RedisHuey", "signed", redis_url, serializer=SignedSerializer(secret="s3cret"))
    huey_tasks.enqueue(instance, [("add", [1, 2], {})])
    task = instance.test_tasks["add"].task_class((3, 4), {}, eta=huey_tasks.normalize_time(None, 600))
    instance.add_schedule(task)
    instance.put("x", 1)
    adapter.queue("signed")
    before = redis_digest(r)
    with pytest.raises(Unsupported, match="signs its messages"):
        adapter.revoke("signed", [task.id])
    with pytest.raises(Unsupported, match="signed"):
        adapter.enqueue_now("signed", [task.id])
    assert redis_digest(r) == before
    assert [j.function for j in adapter.jobs("signed", "waiting", limit=5).items] == ["huey_tasks.add"]


def test_every_state_list_and_lookup_reads_without_writing(r, redis_url, adapter, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "huey", "RedisHuey", tmp_path / "flag")
    [failed] = jobs.failed(1)
    [waiting] = jobs.waiting(1)
    jobs.huey.add_schedule(jobs.huey.test_tasks["add"].task_class((1, 2), {}, eta=huey_tasks.normalize_time(None, 60)))
    jobs.huey.put("keep", 1)
    adapter.revoke("huey", ["gone-task"])
    before = jobs.digest()
    for state, reason in adapter.job_states("huey").items():
        if reason is None:
            adapter.jobs("huey", state, limit=10)
    assert adapter.find(failed) == [("huey", "failed")] and adapter.find("gone-task") == [("huey", "canceled")]
    assert adapter.job("huey", waiting).state == "waiting"
    adapter.maintain(1.0)
    assert jobs.digest() == before


def test_when_a_failure_was_first_seen_survives_a_restart(r, redis_url, adapter, tmp_path) -> None:
    jobs = HueyJobs(adapter, r, redis_url, "huey", "RedisHuey", tmp_path / "flag")
    [task_id] = jobs.failed(1)
    first = adapter.failed("huey", limit=1).items[0].failed_at
    again = HueyAdapter(backend="redis", client=r)
    again.load_memory(json.loads(json.dumps(adapter.dump_memory())))
    again.settle()
    assert [(j.id, j.failed_at) for j in again.failed("huey", limit=1).items] == [(task_id, first)]
