"""Periodic work (issue 20): arq cron jobs learned from their runs, shown with their last run,
outcome and next run, late once overdue, and a "did not run for N x its interval" alert that
fires when the worker that runs them dies; reading never writes."""

from __future__ import annotations

import json
import os
import signal
import sys
import subprocess
import urllib.parse
import urllib.request

import pytest
from conftest import get_json, redis_digest, serve_queuewatch, wait_for
from test_arq_adapter import ARQ, TESTS, worker_env
from test_numbers import put_json

pytestmark = pytest.mark.redis_db(14)


def test_an_arq_cron_job_is_shown_with_its_runs_and_its_alert_fires_when_its_worker_dies(r, redis_url, tmp_path) -> None:
    queue = "arq:cron"
    path = "redis/arq/" + urllib.parse.quote(queue, safe="")
    worker = subprocess.Popen([ARQ, "arq_tasks.CronWorkerSettings"], env=worker_env(redis_url, queue), cwd=TESTS,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
            put_json(base + f"/api/v1/alerts/rules/{path}", {"max_periodic_lateness": 3, "for_seconds": 0})

            def heartbeat() -> dict | None:
                found = [p for p in get_json(base + "/api/v1/periodic")["periodic"] if p["name"] == "cron:heartbeat"]
                return found[0] if found else None

            wait_for(lambda: (heartbeat() or {}).get("interval_seconds") == 5, 40, what="two runs, five seconds apart")
            seen = heartbeat()
            assert (seen["backend"], seen["system"], seen["queue"], seen["function"]) == ("redis", "arq", queue, "heartbeat")
            assert seen["last_outcome"] == "succeeded" and not seen["late"] and seen["schedule"] == "every ~5 s (from its runs)"
            # What arq itself recorded: the newest run's result, id cron:heartbeat:SCHEDULED_MS.
            newest = max(int(k.decode().rsplit(":", 1)[1]) for k in r.scan_iter("arq:result:cron:heartbeat:*"))
            assert abs(int(_ms(seen["last_run"])) - newest) < 6000
            with urllib.request.urlopen(base + "/periodic", timeout=10) as page:
                html = page.read().decode()
            assert "cron:heartbeat" in html and "on time" in html
            [alert] = [a for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
            assert (alert["rule"], alert["state"]) == ("max_periodic_lateness", "ok")

            os.kill(worker.pid, signal.SIGKILL)  # the worker that runs the cron job dies
            worker.wait(10)
            wait_for(lambda: [a["state"] for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
                     == ["firing"], 40, what="the lateness alert to fire")  # fmt: skip
            [alert] = [a for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
            assert alert["value"] > 3
            late = heartbeat()
            assert late["late"] and late["late_seconds"] > 0 and late["intervals_since_last_run"] > 3
            # Reading periodic work never writes (nothing else writes now: its worker is dead).
            before = redis_digest(r)
            for url in ("/periodic", "/api/v1/periodic"):
                with urllib.request.urlopen(base + url, timeout=10) as page:
                    body = page.read().decode()
                assert "cron:heartbeat" in body
            assert "late" in body
            assert redis_digest(r) == before
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def _ms(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def test_celery_beat_kept_by_redbeat_is_shown_as_redbeat_itself_reports_and_late_once_beat_stops(r, tmp_path) -> None:
    import redbeat  # noqa: F401  - a test dependency (pyproject [test]): missing is a failure, never a skip
    import celery_app

    env = dict(os.environ, PYTHONPATH=str(TESTS), QW_CELERY_BROKER=celery_app.BROKER, QW_CELERY_BEAT="1")
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_app", "beat", "-S", "redbeat.RedBeatScheduler",
                             "-l", "warning", "--schedule", str(tmp_path / "beat")], env=env, cwd=TESTS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        with serve_queuewatch(tmp_path, "--redis", celery_app.BROKER, "--rabbitmq", "none", "--poll", "1") as base:
            put_json(base + "/api/v1/alerts/rules/redis/celery/celery", {"max_periodic_lateness": 4, "for_seconds": 0})

            def entry() -> dict | None:
                found = [p for p in get_json(base + "/api/v1/periodic")["periodic"] if p["name"] == "every-2s"]
                return found[0] if found else None

            wait_for(lambda: ((entry() or {}).get("runs") or 0) >= 2, 40, what="two runs sent by beat")
            seen = entry()
            from redbeat.decoder import RedBeatJSONDecoder  # redbeat's own reading of what it stored

            meta = json.loads(r.hget("redbeat:every-2s", "meta"), cls=RedBeatJSONDecoder)
            assert (seen["system"], seen["queue"], seen["function"], seen["schedule"]) == ("celery", "celery", "celery_app.add", "every 2 s")
            assert seen["interval_seconds"] == 2 and seen["runner"] == "celery beat (celery-redbeat)"
            assert abs(_ms(seen["last_run"]) - meta["last_run_at"].timestamp() * 1000) <= 2000
            assert seen["next_run_recorded"] and not seen["late"]
            assert seen["runs"] - 2 <= meta["total_run_count"] <= seen["runs"] + 2
            os.killpg(beat.pid, signal.SIGKILL)  # beat dies: nothing sends the task any more
            beat.wait(10)
            wait_for(lambda: (entry() or {}).get("late"), 30, what="the entry to be late")
            wait_for(lambda: [a["state"] for a in get_json(base + "/api/v1/alerts")["alerts"]
                              if a["queue"] == "celery" and a["rule"] == "max_periodic_lateness"] == ["firing"],
                     30, what="the lateness alert to fire")  # fmt: skip
            before = redis_digest(r)
            with urllib.request.urlopen(base + "/periodic", timeout=10) as page:
                assert "every-2s" in page.read().decode()
            assert redis_digest(r) == before
    finally:
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(10)


def test_rq_schedulers_repeating_jobs_are_periodic_work_as_rq_scheduler_itself_keeps_them(r, redis_url, client) -> None:
    """rq-scheduler's interval and cron jobs (its sorted set, the job's pickled meta), read without unpickling;
    one-off scheduled jobs are not periodic work."""
    import rq_scheduler  # a test dependency (pyproject [test])
    from datetime import datetime, timedelta, timezone

    import rq
    import rq_tasks
    from conftest import run_rq_worker

    scheduler = rq_scheduler.Scheduler(queue_name="ticks", connection=r)
    every = scheduler.schedule(datetime.now(timezone.utc).replace(tzinfo=None), rq_tasks.add, args=(1, 2), interval=60, repeat=10)
    nightly = scheduler.cron("0 3 * * *", rq_tasks.add, args=(3, 4), queue_name="ticks")
    scheduler.enqueue_in(timedelta(hours=1), rq_tasks.add, 5, 6)  # once: not periodic
    scheduler.enqueue_jobs()  # rq-scheduler's own move of what is due: the interval job runs now
    run_rq_worker(redis_url, "ticks")
    theirs = dict((job.id, when) for job, when in scheduler.get_jobs(with_times=True))
    before = redis_digest(r)
    client.application.extensions["queuewatch.monitor"].changed()
    found = {p["name"]: p for p in client.get("/api/v1/periodic").get_json()["periodic"] if p["runner"] == "rq-scheduler"}
    assert set(found) == {every.id, nightly.id}
    ticking = found[every.id]
    assert (ticking["queue"], ticking["function"], ticking["schedule"], ticking["interval_seconds"]) == ("ticks", "rq_tasks.add", "every 60 s", 60)
    assert ticking["last_outcome"] == "succeeded" and not ticking["late"]
    assert "9 more runs (repeat)." in ticking["notes"]
    assert abs(_ms(ticking["next_run"]) / 1000 - theirs[every.id].replace(tzinfo=timezone.utc).timestamp()) < 1
    assert rq.job.Job.fetch(every.id, connection=r).meta["repeat"] == 9
    assert found[nightly.id]["schedule"] == "cron 0 3 * * *" and found[nightly.id]["last_run"] is None
    assert redis_digest(r) == before
