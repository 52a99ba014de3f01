"""RQ's cron schedulers and job groups (rq 2.12 and 3.0), against a real ``rq cron`` process,
real workers and what rq's own API reports."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import redis
import rq
import rq_tasks
from conftest import TESTS, redis_digest, rq_bin, run_rq_worker, wait_for

from queuewatch.adapters.rq.adapter import RQAdapter

import rq.cron as cron_module  # rq 2.12 and 3.0, the two lines the tests run on  # noqa: E402
import rq.group as group_module  # noqa: E402

CRON_CONFIG = """
from rq import cron
import rq_tasks

cron.register(rq_tasks.add, "cron-q", args=(1, 2), interval=3600, name="hourly-add")
cron.register(rq_tasks.add, "cron-q", args=(3,), kwargs={"b": 4}, cron="0 3 * * *", name="nightly-add")
"""


@pytest.fixture
def adapter(r: redis.Redis) -> RQAdapter:
    return RQAdapter(backend="redis", client=r)


def test_cron_jobs_show_their_schedule_last_and_next_run(r, redis_url, adapter, tmp_path) -> None:
    config = tmp_path / "cron_config.py"
    config.write_text(CRON_CONFIG)
    cmd = [rq_bin(), "cron", "--url", redis_url, str(config)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(TESTS)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
    try:
        # An interval job runs at once; the nightly one waits for 03:00.
        wait_for(lambda: cron_module.get_cron_job_ids("hourly-add", r), what="the cron scheduler's first run")
        schedules = wait_for(lambda: (s := adapter.cron()).jobs and s, what="the registered cron jobs")
        [theirs] = cron_module.CronScheduler.all(r)
        [scheduler] = schedules.schedulers
        assert (scheduler.name, scheduler.pid, scheduler.alive) == (theirs.name, proc.pid, True)
        assert sorted(scheduler.jobs) == ["hourly-add", "nightly-add"]
        assert scheduler.config_file and scheduler.last_heartbeat is not None
        jobs = {job.name: job for job in schedules.jobs}
        their_jobs = {job.name: job for job in theirs.get_jobs()}
        hourly, nightly = jobs["hourly-add"], jobs["nightly-add"]
        assert (hourly.function, hourly.queue, hourly.interval_seconds, hourly.cron) == ("rq_tasks.add", "cron-q", 3600, None)
        assert hourly.args_preview == "1, 2" and nightly.args_preview == "3, b=4"
        assert hourly.last_run_at == their_jobs["hourly-add"].latest_enqueue_time
        assert hourly.next_run_at == their_jobs["hourly-add"].next_enqueue_time == hourly.last_run_at + timedelta(hours=1)
        assert nightly.cron == "0 3 * * *" and nightly.last_run_at is None
        assert nightly.next_run_at == their_jobs["nightly-add"].next_enqueue_time
        assert nightly.next_run_at > datetime.now(timezone.utc)
        [run] = hourly.recent
        assert [run.job_id] == cron_module.get_cron_job_ids("hourly-add", r) and hourly.runs == 1
        assert run.status == "queued"
        # As periodic work (the periodic page, the lateness alerts): the same facts, in one shape for every system.
        periodic = {p.name: p for p in adapter.periodic()}
        now = datetime.now(timezone.utc)
        assert (periodic["hourly-add"].schedule, periodic["hourly-add"].interval_seconds) == ("every 60 min", 3600)
        assert periodic["hourly-add"].last_outcome == "waiting" and periodic["hourly-add"].queue == "cron-q"
        assert periodic["hourly-add"].due() == hourly.next_run_at and periodic["hourly-add"].late_seconds(now) == 0
        assert periodic["nightly-add"].schedule == "cron 0 3 * * *" and periodic["nightly-add"].last_run is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    run_rq_worker(redis_url, "cron-q")
    schedules = adapter.cron()
    assert schedules.schedulers == ()  # it said goodbye
    [orphan] = schedules.jobs  # known from its runs only: no scheduler runs it now
    assert (orphan.name, orphan.scheduler, orphan.next_run_at, orphan.runs) == ("hourly-add", None, None, 1)
    assert orphan.recent[0].status == "finished"
    [gone] = adapter.periodic()
    assert gone.last_outcome == "succeeded" and gone.runner is None and "No live cron scheduler" in gone.notes[0]
    assert gone.due() is None and gone.late_seconds(datetime.now(timezone.utc)) is None  # its interval went with its scheduler


def test_groups_list_their_jobs_and_where_they_are(r, redis_url, adapter) -> None:
    q = rq.Queue("grouped", connection=r)
    group = group_module.Group.create(connection=r, name="batch-1")
    jobs = group.enqueue_many(q, [rq.Queue.prepare_data(rq_tasks.add, (i, i)) for i in range(3)])
    other = group_module.Group.create(connection=r, name="batch-2")
    other.enqueue_many(q, [rq.Queue.prepare_data(rq_tasks.fail, (1,))])
    page = adapter.groups()
    assert [g.name for g in page.groups] == ["batch-1", "batch-2"] and page.total == 2 and not page.truncated
    first = page.groups[0]
    assert sorted(j.id for j in first.jobs) == sorted(j.id for j in group.get_jobs()) == sorted(j.id for j in jobs)
    assert first.statuses == (("queued", 3),) and first.size == 3
    assert {(j.queue, j.state) for j in first.jobs} == {("grouped", "waiting")}
    run_rq_worker(redis_url, "grouped")
    [again] = adapter.group("batch-1").groups
    assert again.statuses == (("finished", 3),)
    [failed] = adapter.group("batch-2").groups
    assert failed.statuses == (("failed", 1),)
    assert adapter.group("no-such-group").groups == ()
    # A job of a group is deleted as rq deletes it: out of its group too.
    waiting = group.enqueue_many(q, [rq.Queue.prepare_data(rq_tasks.add, (9, 9))])[0]
    assert adapter.delete_jobs("grouped", [waiting.id]).affected == 1
    assert waiting.id not in {j.id for j in group.get_jobs()}


def test_reading_cron_and_groups_writes_nothing(r, adapter) -> None:
    q = rq.Queue("g", connection=r)
    group_module.Group.create(connection=r, name="g1").enqueue_many(q, [rq.Queue.prepare_data(rq_tasks.add, (1, 1))])
    scheduler = cron_module.CronScheduler(connection=r, name="in-process")
    scheduler.register(rq_tasks.add, "g", args=(1, 1), interval=60)
    scheduler.register_birth()
    scheduler.enqueue_jobs()
    scheduler.save()
    before = redis_digest(r)
    assert adapter.cron().schedulers[0].name == "in-process"
    assert adapter.groups().groups[0].name == "g1"
    assert redis_digest(r) == before


def test_the_groups_page_and_api_show_each_group_with_where_its_jobs_are(r, redis_url, client) -> None:
    q = rq.Queue("grouped", connection=r)
    group = group_module.Group.create(connection=r, name="nightly-batch")
    jobs = group.enqueue_many(q, [rq.Queue.prepare_data(rq_tasks.add, (i, i)) for i in range(2)])
    client.application.extensions["queuewatch.monitor"].changed()
    answer = client.get("/api/v1/groups").get_json()
    [shown] = [g for g in answer["groups"] if g["name"] == "nightly-batch"]
    assert sorted(j["id"] for j in shown["jobs"]) == sorted(j.id for j in group.get_jobs()) == sorted(j.id for j in jobs)
    assert shown["statuses"] == {"queued": 2} and {j["state"] for j in shown["jobs"]} == {"waiting"}
    page = client.get("/groups").get_data(as_text=True)
    assert "nightly-batch" in page and jobs[0].id in page
    assert client.get("/periodic").status_code == 200
