"""RQ jobs in every state, found by id, deleted before they run and enqueued now: against
what the real rq library reports, and proven by its real workers.

Runs with rq 2.x (the main environment) and rq 3.0 (``.venv-rq3``, `make test`); data
written by rq 1.16 comes from ``.venv-rq1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
import rq
import rq_tasks
from conftest import ROOT, TESTS, CommandCounter, redis_digest, rq1_python, rq_bin, run_rq_worker, wait_for
from rq.job import Job

from queuewatch.adapters.base import STATES
from queuewatch.adapters.errors import BackendUnavailable, NotFound
from queuewatch.adapters.rq.adapter import RQAdapter

RQ_MAJOR = int(rq.__version__.split(".")[0])


def _json_line(output: str) -> dict:
    """The JSON a script printed last (rq 1.16's worker logs to stdout before it)."""
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def adapter(r: redis.Redis) -> RQAdapter:
    return RQAdapter(backend="redis", client=r)


def ids_of(adapter: RQAdapter, queue: str, state: str, limit: int = 100) -> list[str]:
    """Every id of a state's list, page by page."""
    seen, cursor = [], None
    while True:
        page = adapter.jobs(queue, state, limit=limit, cursor=cursor)
        seen += [job.id for job in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def run_scheduler_worker(redis_url: str, *queues: str) -> None:
    """``rq worker --burst --with-scheduler``: enqueues the scheduled jobs that are due, runs the queues, stops."""
    cmd = [rq_bin(), "worker", "--burst", "--with-scheduler", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker"]
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    subprocess.run([*cmd, *queues], env=env, capture_output=True, text=True, timeout=120, check=True)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_every_state_lists_what_rq_reports_in_its_order(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("states", connection=r)
    flag = tmp_path / "flag"
    done = [q.enqueue(rq_tasks.add, i, i) for i in range(3)]
    failed = [q.enqueue(rq_tasks.fail_unless_exists, str(flag), i) for i in range(2)]
    run_rq_worker(redis_url, "states")
    waiting = [q.enqueue(rq_tasks.add, i, 1) for i in range(4)]
    front = q.enqueue(rq_tasks.add, 9, 9, at_front=True)
    now = datetime.now(timezone.utc)
    later = [q.enqueue_at(now + timedelta(hours=h), rq_tasks.add, h, 0) for h in (3, 1, 2)]
    deferred = q.enqueue(rq_tasks.add, 5, 5, depends_on=later[1])
    canceled = q.enqueue(rq_tasks.add, 7, 7)
    canceled.cancel()

    assert ids_of(adapter, "states", "waiting", limit=2) == q.job_ids == [front.id, *(j.id for j in waiting)]
    scheduled = ids_of(adapter, "states", "scheduled", limit=2)
    assert scheduled == [*q.scheduled_job_registry.get_job_ids(), *q.deferred_job_registry.get_job_ids()]
    assert scheduled == [later[1].id, later[2].id, later[0].id, deferred.id]  # next to run first
    # Newest first: rq scores these registries by expiry in whole seconds; within one second
    # the list follows each job's own end time.
    for state, registry, made in (("finished", q.finished_job_registry, done), ("failed", q.failed_job_registry, failed)):
        listed = ids_of(adapter, "states", state)
        assert sorted(listed) == sorted(registry.get_job_ids()) == sorted(j.id for j in made)
        ends = [Job.fetch(i, connection=r).ended_at for i in listed]
        assert ends == sorted(ends, reverse=True)
    assert ids_of(adapter, "states", "canceled") == q.canceled_job_registry.get_job_ids() == [canceled.id]
    assert ids_of(adapter, "states", "in_progress") == q.started_job_registry.get_job_ids() == []

    stats = adapter.queue("states")
    for state, count in (("waiting", stats.depth), ("scheduled", stats.scheduled), ("failed", stats.failed)):
        assert adapter.jobs("states", state, limit=1).total == count, state
    assert adapter.jobs("states", "finished", limit=1).total == dict(stats.details)["finished"]

    rows = {job.id: job for state in STATES for job in adapter.jobs("states", state, limit=50).items}
    row = rows[later[1].id]
    assert (row.state, row.function, row.args_preview) == ("scheduled", "rq_tasks.add", "1, 0")
    assert row.scheduled_for == q.scheduled_job_registry.get_scheduled_time(later[1].id)
    assert rows[deferred.id].state == "scheduled" and ("waiting for", later[1].id) in rows[deferred.id].details
    assert rows[waiting[0].id].enqueued_at is not None and rows[waiting[0].id].started_at is None
    finished = rows[done[0].id]
    assert finished.state == "finished" and finished.started_at <= finished.ended_at and finished.worker
    assert rows[failed[0].id].error_type == "FileNotFoundError" and rows[failed[0].id].state == "failed"
    assert rows[canceled.id].state == "canceled" and rows[canceled.id].ended_at is not None


def test_a_page_costs_the_same_wherever_it_is_in_a_long_queue(r, adapter) -> None:
    q = rq.Queue("long", connection=r)
    with r.pipeline() as pipe:
        for i in range(3000):
            q.enqueue_call(rq_tasks.add, args=(i, i), pipeline=pipe)
        pipe.execute()
    costs = []
    for cursor in (None, "1500", "2980"):
        with CommandCounter(r.connection_pool.connection_kwargs["db"]) as counter:
            page = adapter.jobs("long", "waiting", limit=20, cursor=cursor)
        costs.append(counter.count)
        assert [j.id for j in page.items] == q.get_job_ids(offset=int(cursor or 0), length=20)
    assert costs[0] == costs[1] == costs[2], costs


def test_find_says_where_a_job_is_in_every_state(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("where", connection=r)
    finished = q.enqueue(rq_tasks.add, 1, 1)
    failed = q.enqueue(rq_tasks.fail, 1)
    run_rq_worker(redis_url, "where")
    waiting = q.enqueue(rq_tasks.add, 2, 2)
    scheduled = q.enqueue_in(timedelta(hours=1), rq_tasks.add, 3, 3)
    deferred = q.enqueue(rq_tasks.add, 4, 4, depends_on=scheduled)
    canceled = q.enqueue(rq_tasks.add, 5, 5)
    canceled.cancel()
    assert adapter.find(waiting.id) == [("where", "waiting")]
    assert adapter.find(scheduled.id) == [("where", "scheduled")]
    assert adapter.find(deferred.id) == [("where", "scheduled")]
    assert adapter.find(finished.id) == [("where", "finished")]
    assert adapter.find(failed.id) == [("where", "failed")]
    assert adapter.find(canceled.id) == [("where", "canceled")]
    assert adapter.find("no-such-job") == [] and adapter.find("") == [] and adapter.find("x" * 5000) == []


def test_in_progress_shows_the_worker_while_a_job_runs(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("busy", connection=r)
    release = tmp_path / "release"
    job = q.enqueue(rq_tasks.block_until, str(release))
    cmd = [rq_bin(), "worker", "--burst", "--url", redis_url, "--name", "busy-worker", "--worker-class",
           "rq.worker.SimpleWorker", "busy"]  # fmt: skip
    worker = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(TESTS)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Once the run has started (rq registers it a moment before it writes the start time).
        [row] = wait_for(lambda: [j for j in adapter.jobs("busy", "in_progress", limit=10).items if j.started_at],
                         what="the job in progress")  # fmt: skip
        assert [row.id] == q.started_job_registry.get_job_ids() == [job.id]
        assert (row.state, row.worker, row.function) == ("in_progress", "busy-worker", "rq_tasks.block_until")
        assert row.started_at is not None and row.ended_at is None
        if RQ_MAJOR >= 2:  # the started registry holds "jobid:execid"
            assert dict(row.details)["execution"]
        # rq 3.0 only keeps it in the worker's executions set; 2.x writes it a moment after the run starts.
        wait_for(lambda: [w.current_job for w in adapter.workers() if w.name == "busy-worker"] == [job.id],
                 what="the worker's current job")  # fmt: skip
        detail = adapter.job("busy", job.id)
        assert (detail.state, detail.worker) == ("in_progress", "busy-worker")
        if RQ_MAJOR >= 2:
            assert any("running now" in text and "busy-worker" in text for _, text in detail.history)
        assert adapter.find(job.id) == [("busy", "in_progress")]
    finally:
        release.touch()
        worker.wait(60)
    assert job.get_status(refresh=True) == "finished"
    assert adapter.jobs("busy", "in_progress", limit=10).items == ()
    detail = adapter.job("busy", job.id)
    assert detail.state == "finished" and detail.ended_at is not None
    if RQ_MAJOR >= 2:
        assert any(text.startswith("finished on worker busy-worker") for _, text in detail.history), detail.history


def test_a_deleted_waiting_job_is_never_run(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("del", connection=r)
    ran = tmp_path / "ran"
    keep, drop, drop_too = (q.enqueue(rq_tasks.record, str(ran), name) for name in ("keep", "drop", "drop-too"))
    result = adapter.delete_jobs("del", [drop.id, drop_too.id, drop.id, "no-such-job"])
    assert (result.affected, result.not_found) == (2, ("no-such-job",))
    assert q.job_ids == [keep.id]
    assert not Job.exists(drop.id, connection=r)
    assert adapter.delete_jobs("del", [drop.id]).not_found == (drop.id,)  # a double click deletes nothing
    run_rq_worker(redis_url, "del")
    assert lines(ran) == ["keep"]


def test_a_deleted_scheduled_or_deferred_job_is_never_run(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("del-later", connection=r)
    ran = tmp_path / "ran"
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    due = q.enqueue_at(past, rq_tasks.record, str(ran), "due")
    dropped = q.enqueue_at(past, rq_tasks.record, str(ran), "dropped")
    parent = q.enqueue(rq_tasks.record, str(ran), "parent")
    child = q.enqueue(rq_tasks.record, str(ran), "child", depends_on=parent)
    assert adapter.delete_jobs("del-later", [dropped.id, child.id]).affected == 2
    assert dropped.id not in q.scheduled_job_registry.get_job_ids() and child.id not in q.deferred_job_registry.get_job_ids()
    run_scheduler_worker(redis_url, "del-later")
    assert sorted(lines(ran)) == ["due", "parent"]
    assert due.get_status(refresh=True) == "finished"


def test_delete_leaves_what_rq_own_delete_leaves(r, adapter) -> None:
    """The keys left in Redis after our delete equal those after rq's Job.delete(), id for id."""
    q = rq.Queue("same", connection=r)
    for make in (lambda: q.enqueue(rq_tasks.add, 1, 1), lambda: q.enqueue_in(timedelta(hours=1), rq_tasks.add, 1, 1)):
        ours, theirs = make(), make()
        before = set(r.keys())
        assert ours.id.encode() in r.keys(f"*{ours.id}*")[0]
        adapter.delete_jobs("same", [ours.id])
        Job.fetch(theirs.id, connection=r).delete()
        assert not {k for k in r.keys() if ours.id.encode() in k or theirs.id.encode() in k}
        assert {k for k in r.keys() if not k.startswith(b"rq:job:")} == {k for k in before if not k.startswith(b"rq:job:")} - {
            b"rq:queue:same", b"rq:scheduled:same"}  # fmt: skip
    assert q.job_ids == [] and q.scheduled_job_registry.get_job_ids() == []


def test_a_running_or_finished_job_is_not_deleted_as_waiting(r, redis_url, adapter) -> None:
    q = rq.Queue("done", connection=r)
    job = q.enqueue(rq_tasks.add, 1, 2)
    run_rq_worker(redis_url, "done")
    assert adapter.delete_jobs("done", [job.id]).not_found == (job.id,)
    assert adapter.enqueue_now("done", [job.id]).not_found == (job.id,)
    assert job.get_status(refresh=True) == "finished"
    assert adapter.delete_jobs("other-queue", [job.id]).not_found == (job.id,)


def test_a_scheduled_job_enqueued_now_runs_first(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("now", connection=r)
    ran = tmp_path / "ran"
    first = q.enqueue(rq_tasks.record, str(ran), "was-waiting")
    later = q.enqueue_in(timedelta(hours=1), rq_tasks.record, str(ran), "later")
    also = q.enqueue_in(timedelta(hours=2), rq_tasks.record, str(ran), "also")
    result = adapter.enqueue_now("now", [later.id, also.id, later.id])
    assert (result.affected, result.not_found) == (2, ())
    assert q.job_ids == [later.id, also.id, first.id]  # at the front, in the order asked
    assert q.scheduled_job_registry.get_job_ids() == []
    assert later.get_status(refresh=True) == "queued"
    assert adapter.enqueue_now("now", [later.id]).not_found == (later.id,)  # a double click enqueues once
    run_rq_worker(redis_url, "now")
    assert lines(ran) == ["later", "also", "was-waiting"]
    assert later.get_status(refresh=True) == "finished"
    assert later.id in {j.id for j in adapter.jobs("now", "finished", limit=10).items}


def test_a_deferred_job_enqueued_now_runs_once(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("dep", connection=r)
    ran = tmp_path / "ran"
    parent = q.enqueue_in(timedelta(hours=1), rq_tasks.record, str(ran), "parent")
    child = q.enqueue(rq_tasks.record, str(ran), "child", depends_on=parent)
    assert child.get_status(refresh=True) == "deferred"
    assert adapter.enqueue_now("dep", [child.id]).affected == 1
    run_rq_worker(redis_url, "dep")
    assert lines(ran) == ["child"]
    # The parent's end must not enqueue the child a second time.
    assert adapter.enqueue_now("dep", [parent.id]).affected == 1
    run_rq_worker(redis_url, "dep")
    assert lines(ran) == ["child", "parent"]
    assert q.job_ids == [] and q.deferred_job_registry.get_job_ids() == []


def test_the_job_page_works_in_every_state(r, redis_url, adapter) -> None:
    q = rq.Queue("page", connection=r)
    finished = q.enqueue(rq_tasks.add, 1, 2)
    run_rq_worker(redis_url, "page")
    waiting = q.enqueue(rq_tasks.add, 3, 4)
    scheduled = q.enqueue_in(timedelta(hours=1), rq_tasks.add, 5, 6)
    detail = adapter.job("page", waiting.id)
    assert (detail.state, detail.args, detail.failed_at) == ("waiting", (3, 4), None)
    detail = adapter.job("page", scheduled.id)
    assert detail.state == "scheduled"
    assert detail.scheduled_for == q.scheduled_job_registry.get_scheduled_time(scheduled.id)
    detail = adapter.job("page", finished.id)
    assert detail.state == "finished" and detail.failed_at is None and detail.error_type is None
    assert [text for _, text in detail.history][0] in ("created", "enqueued")
    if RQ_MAJOR >= 2:
        assert any("returned 3" in text for _, text in detail.history), detail.history


def test_bad_input_is_a_clear_error(adapter) -> None:
    with pytest.raises(NotFound):
        adapter.jobs("q", "sleeping", limit=10)
    with pytest.raises(NotFound):
        adapter.jobs("q", "waiting", limit=10, cursor="-3")
    with pytest.raises(NotFound):
        adapter.jobs("q", "waiting", limit=10, cursor="abc")
    assert adapter.jobs("q", "waiting", limit=0).items == ()
    assert adapter.job_states("q") == dict.fromkeys(STATES)


def test_listing_every_state_writes_nothing(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("quiet", connection=r)
    q.enqueue(rq_tasks.add, 1, 1)
    q.enqueue(rq_tasks.fail, 1)
    run_rq_worker(redis_url, "quiet")
    waiting = q.enqueue(rq_tasks.add, 1, 2)
    q.enqueue_in(timedelta(hours=1), rq_tasks.add, 1, 3)
    before = redis_digest(r)
    for state in STATES:
        for job in adapter.jobs("quiet", state, limit=10).items:
            adapter.job("quiet", job.id)
            adapter.find(job.id)
    adapter.cron()
    adapter.groups()
    adapter.overview()
    assert adapter.find(waiting.id) == [("quiet", "waiting")]
    assert redis_digest(r) == before


RQ1_MAKE = """
import json, sys, datetime, rq, redis
sys.path.insert(0, {tests!r})
import rq_tasks
conn = redis.Redis.from_url({url!r})
q = rq.Queue("old", connection=conn)
done = q.enqueue(rq_tasks.add, 1, 1)
rq.SimpleWorker([q], connection=conn).work(burst=True)
ran = {ran!r}
waiting = [q.enqueue(rq_tasks.record, ran, name) for name in ("w1", "w2", "w3")]
later = [q.enqueue_in(datetime.timedelta(hours=h), rq_tasks.record, ran, "s%d" % h) for h in (2, 1)]
child = q.enqueue(rq_tasks.record, ran, "child", depends_on=later[1])
print(json.dumps(dict(
    ids=dict(done=done.id, waiting=[j.id for j in waiting], later=[j.id for j in later], child=child.id),
    waiting=q.job_ids, scheduled=q.scheduled_job_registry.get_job_ids(), deferred=q.deferred_job_registry.get_job_ids(),
    finished=q.finished_job_registry.get_job_ids(), version=rq.__version__)))
"""

RQ1_RUN = """
import json, sys, rq, redis
sys.path.insert(0, {tests!r})
conn = redis.Redis.from_url({url!r})
q = rq.Queue("old", connection=conn)
rq.SimpleWorker([q], connection=conn).work(burst=True)
print(json.dumps(dict(waiting=q.job_ids, deferred=q.deferred_job_registry.get_job_ids())))
"""


def test_rq_1_16_data_is_listed_deleted_and_enqueued_now(r, redis_url, adapter, tmp_path) -> None:
    python, ran = rq1_python(), tmp_path / "ran"
    params = dict(tests=str(TESTS), url=redis_url, ran=str(ran))
    made = _json_line(subprocess.run([python, "-c", RQ1_MAKE.format(**params)], capture_output=True, text=True,
                                     check=True, cwd=ROOT).stdout)  # fmt: skip
    assert made["version"].startswith("1.16")
    ids = made["ids"]
    assert ids_of(adapter, "old", "waiting", limit=2) == made["waiting"] == ids["waiting"]
    assert ids_of(adapter, "old", "scheduled") == made["scheduled"] + made["deferred"] == [*ids["later"][::-1], ids["child"]]
    assert ids_of(adapter, "old", "finished") == made["finished"] == [ids["done"]]
    assert adapter.find(ids["child"]) == [("old", "scheduled")]
    assert adapter.job("old", ids["waiting"][0]).state == "waiting"
    assert adapter.delete_jobs("old", [ids["waiting"][1], ids["later"][0]]).affected == 2
    assert adapter.enqueue_now("old", [ids["later"][1], ids["child"]]).affected == 2
    ran_after = _json_line(subprocess.run([python, "-c", RQ1_RUN.format(**params)], capture_output=True, text=True,
                                          check=True, cwd=ROOT).stdout)  # fmt: skip
    assert ran_after == {"waiting": [], "deferred": []}
    assert lines(ran) == ["s1", "child", "w1", "w3"]
    assert adapter.jobs("old", "scheduled", limit=10).total == 0


@pytest.mark.rq_at_least(2)  # rq 1.x keeps no executions
def test_executions_of_a_job_are_on_its_page(r, redis_url, adapter, tmp_path) -> None:
    """rq 2.x/3.0 keep the runs of a job: each ended run in its results stream, with its worker."""
    q = rq.Queue("runs", connection=r)
    flag = tmp_path / "flag"
    job = q.enqueue(rq_tasks.fail_unless_exists, str(flag), 1)
    run_rq_worker(redis_url, "runs")
    assert adapter.requeue("runs", [job.id]).affected == 1
    flag.touch()
    run_rq_worker(redis_url, "runs")
    texts = [text for _, text in adapter.job("runs", job.id).history]
    assert [t.split(" on worker")[0].split(":")[0] for t in texts if "on worker" in t] == ["failed", "finished"], texts
    assert any("FileNotFoundError" in t for t in texts)
    assert len(job.results()) == 2


@pytest.mark.rq_at_least(3)  # rate limits are rq 3.0's: runs in the rq 3.0 pass (.venv-rq3)
def test_a_rate_limited_job_enqueued_now_waits_for_its_slot_as_rq_makes_it(r, redis_url, adapter, tmp_path) -> None:
    q = rq.Queue("limited", connection=r)
    ran, limit = tmp_path / "ran", rq.RateLimit("one-at-a-time", 1)
    holder = q.enqueue(rq_tasks.record, str(ran), "holder", rate_limit=limit)
    later = q.enqueue_in(timedelta(hours=1), rq_tasks.record, str(ran), "later", rate_limit=limit)
    assert adapter.enqueue_now("limited", [later.id]).affected == 1
    # The slot is taken: rq's limiter holds it back instead of the queue.
    assert later.get_status(refresh=True) == "rate_limited" and q.job_ids == [holder.id]
    assert adapter.find(later.id) == [("limited", "scheduled")]
    run_rq_worker(redis_url, "limited")  # the holder's end frees the slot and rq promotes it
    assert lines(ran) == ["holder", "later"]
    assert later.get_status(refresh=True) == "finished"


PREFIXED = """
import sys, rq, redis
sys.path.insert(0, {tests!r})
import rq_tasks
conn = redis.Redis.from_url({url!r})
q = rq.Queue("pre", connection=conn)
q.enqueue(rq_tasks.add, 1, 1)
print(q.enqueue_in(__import__("datetime").timedelta(hours=1), rq_tasks.add, 2, 2).id)
"""


@pytest.mark.rq_at_least(3)  # RQ_KEY_PREFIX is rq 3.0's: runs in the rq 3.0 pass (.venv-rq3)
def test_a_custom_key_prefix_is_read_and_moved_under_it(r, redis_url, tmp_path) -> None:
    env = dict(os.environ, RQ_KEY_PREFIX="myapp.rq")
    made = subprocess.run([sys.executable, "-c", PREFIXED.format(tests=str(TESTS), url=redis_url)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    scheduled_id = made.stdout.split()[-1]
    assert r.exists("myapp.rq:queues") and not r.exists("rq:queues")
    assert not RQAdapter.detect(r) and RQAdapter.detect(r, prefix="myapp.rq")
    adapter = RQAdapter(backend="redis", client=r, prefix="myapp.rq")
    assert [(s.name, s.depth, s.scheduled) for s in adapter.queues()] == [("pre", 1, 1)]
    assert adapter.find(scheduled_id) == [("pre", "scheduled")]
    assert adapter.enqueue_now("pre", [scheduled_id]).affected == 1
    assert adapter.jobs("pre", "waiting", limit=5).items[0].id == scheduled_id
    with pytest.raises(ValueError):
        RQAdapter(backend="redis", client=r, prefix="bad prefix")


def test_garbage_in_the_lists_becomes_rows_not_errors(r, adapter) -> None:
    r.rpush("rq:queue:junk", "gone", "bad")
    r.hset("rq:job:bad", mapping={"data": b"\xff\x00junk", "origin": "junk", "status": "???", "enqueued_at": "yesterday",
                                  "dependency_ids": "{not json"})  # fmt: skip
    r.zadd("rq:scheduled:junk", {"bad": float("inf"), "gone": 1e300})
    r.zadd("rq:wip:junk", {"gone:" + "0" * 32: 1, "plain-id": 2})
    waiting = adapter.jobs("junk", "waiting", limit=10).items
    assert [(j.id, j.args_preview if j.id == "gone" else j.state) for j in waiting] == [
        ("gone", "(job data has expired)"), ("bad", "waiting")]  # fmt: skip
    assert ("status", "RQ's status for it is ???") in waiting[1].details and waiting[1].enqueued_at is None
    assert [j.scheduled_for for j in adapter.jobs("junk", "scheduled", limit=10).items] == [None, None]
    assert sorted(j.id for j in adapter.jobs("junk", "in_progress", limit=10).items) == ["gone", "plain-id"]
    assert adapter.job("junk", "bad").state is None and adapter.find("bad") == [("junk", "???")]
    r.set("rq:queue:wrong", "a string")
    with pytest.raises(BackendUnavailable):
        adapter.jobs("wrong", "waiting", limit=10)


def test_moves_of_many_jobs_keep_their_order_across_chunks(r, adapter) -> None:
    q = rq.Queue("many", connection=r)
    registry = q.scheduled_job_registry
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduled = []
    with r.pipeline() as pipe:
        for i in range(1_200):
            job = Job.create(rq_tasks.add, args=(i, i), connection=r, origin="many", status="scheduled")
            job.save(pipeline=pipe)
            registry.schedule(job, later, pipeline=pipe)
            scheduled.append(job.id)
        pipe.execute()
    assert adapter.enqueue_now("many", scheduled).affected == 1_200
    assert q.job_ids == scheduled and registry.get_job_ids() == []
    result = adapter.delete_jobs("many", scheduled[:25])
    assert (result.affected, result.not_found) == (25, ())
    assert q.job_ids == scheduled[25:]
