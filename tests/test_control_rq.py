"""Control of RQ's live work through the API and the pages, with real forking RQ workers:
stop-job, worker shutdown, rq suspend / resume; paused in the queue JSON and /metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import TESTS, rq_bin, wait_for
from rq.job import Job

pytestmark = pytest.mark.redis_db(12)
API = "/api/v1/queues/redis/rq/work"


@contextlib.contextmanager
def rq_worker(redis_url: str, name: str, *queues: str, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A real, forking ``rq worker`` (stop-job kills its work horse) until the block ends."""
    cmd = [rq_bin(), "worker", "--url", redis_url, "--name", name, *(queues or ("work",))]
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(TESTS)), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            horses = children(proc.pid)
            proc.terminate()  # a warm shutdown waits for the job in hand: not longer than a few seconds here
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in [proc.pid, *horses]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait(10)
        if log:
            out.close()  # type: ignore[union-attr]


def children(pid: int) -> list[int]:
    """The processes ``pid`` forked (RQ's work horse)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def running(client, job_id: str) -> bool:
    """Started by a worker, as the job's own record says (a job taken off the queue is listed a moment before)."""
    answer = client.get(f"{API}/jobs/{job_id}").get_json()
    return answer.get("state") == "in_progress" and bool(answer.get("worker"))


def worker_state(client, name: str) -> str | None:
    return next((w["state"] for w in client.get("/api/v1/workers").get_json()["workers"] if w["name"] == name), None)


def test_stop_ends_the_job_stopped_in_the_failed_registry_and_the_worker_runs_the_next_job(client, r, redis_url, tmp_path) -> None:
    q = rq.Queue("work", connection=r)
    slow = q.enqueue(rq_tasks.sleep, 60)
    proof = tmp_path / "next"
    after = q.enqueue(rq_tasks.record, str(proof), "next")
    with rq_worker(redis_url, "stopper") as proc:
        wait_for(lambda: running(client, slow.id), what="the slow job to run")
        answer = client.post(f"{API}/jobs/{slow.id}/stop", json={})
        assert answer.status_code == 202, answer.get_data(as_text=True)
        body = answer.get_json()
        assert (body["stopping"], body["worker"]) == (True, "stopper")
        wait_for(lambda: slow.get_status(refresh=True) == "stopped", what="RQ to record the job stopped")
        assert slow.id in q.failed_job_registry.get_job_ids()
        wait_for(lambda: proof.exists() and proof.read_text() == "next\n", what="the same worker to run the next job")
        wait_for(lambda: after.get_status(refresh=True) == "finished", what="RQ to record the next job finished")
        assert Job.fetch(after.id, connection=r).worker_name == "stopper"
        assert proc.poll() is None and r.sismember("rq:workers", "rq:worker:stopper")
        followed = client.get(body["follow"]).get_json()
        assert (followed["outcome"], followed["stopped"], followed["state"], followed["status"]) == (
            "ended",
            True,
            "failed",
            "stopped",
        )
    entry = client.get("/api/v1/audit").get_json()["entries"][0]
    assert (entry["action"], entry["ids"], entry["affected"]) == ("stop", [slow.id], 1)
    assert "stopper" in entry["result"]


def test_a_job_that_is_not_running_is_409_and_an_unknown_one_404(client, r) -> None:
    q = rq.Queue("work", connection=r)
    waiting = q.enqueue(rq_tasks.add, 1, 2)
    answer = client.post(f"{API}/jobs/{waiting.id}/stop", json={})
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "not_running"
    assert "waiting, not running" in answer.get_json()["error"]["message"]
    assert client.post(f"{API}/jobs/no-such-job/stop", json={}).status_code == 404
    assert waiting.get_status(refresh=True) == "queued"
    assert [e["result"][:6] for e in client.get("/api/v1/audit").get_json()["entries"]] == ["error:", "error:"]


def test_a_stop_sent_to_a_worker_that_is_gone_says_the_job_is_orphaned(client, r, redis_url) -> None:
    q = rq.Queue("work", connection=r)
    slow = q.enqueue(rq_tasks.sleep, 60)
    name = f"doomed-{uuid.uuid4().hex[:8]}"  # pub/sub spans the server's databases: a name no other run uses
    with rq_worker(redis_url, name) as proc:
        wait_for(lambda: running(client, slow.id) and slow.get_status(refresh=True) == "started", what="the slow job to run")
        horses = wait_for(lambda: children(proc.pid), what="the work horse")
        proc.kill()  # as a crashed host would: no warm shutdown, the job stays in the started registry
        proc.wait(10)
        for pid in horses:  # the work horse holds the worker's pub/sub socket: it goes too
            os.kill(pid, signal.SIGKILL)
        channel = f"rq:pubsub:{name}"
        wait_for(lambda: r.pubsub_numsub(channel) == [(channel.encode(), 0)], what="Redis to see them gone")
    answer = client.post(f"{API}/jobs/{slow.id}/stop", json={})
    assert answer.status_code == 409
    assert "not listening" in answer.get_json()["error"]["message"] and "orphaned" in answer.get_json()["error"]["message"]


def test_shutdown_from_the_api_makes_the_worker_exit_after_its_job(client, r, redis_url, tmp_path) -> None:
    q = rq.Queue("work", connection=r)
    release = tmp_path / "release"
    job = q.enqueue(rq_tasks.block_until, str(release))
    with rq_worker(redis_url, "leaver") as proc:
        wait_for(lambda: running(client, job.id), what="the job to run")
        answer = client.post("/api/v1/workers/redis/rq/leaver/shutdown", json={})
        assert answer.status_code == 202 and answer.get_json()["sent"] is True
        time.sleep(0.5)
        assert proc.poll() is None  # a warm shutdown: the job in hand runs to its end
        release.touch()
        assert proc.wait(30) == 0
    assert job.get_status(refresh=True) == "finished"
    assert not r.sismember("rq:workers", "rq:worker:leaver")
    gone = client.post("/api/v1/workers/redis/rq/leaver/shutdown", json={})
    assert gone.status_code == 404 and "leaver" in gone.get_json()["error"]["message"]
    assert client.post("/api/v1/workers/redis/rq/leaver/pool_grow", json={"n": 2}).status_code == 409
    assert client.post("/api/v1/workers/redis/rq/leaver/shutdown", json={"n": 0}).status_code == 400


def test_suspend_and_resume_through_the_api_stop_and_start_a_real_worker_taking_jobs(client, r, redis_url, tmp_path) -> None:
    q = rq.Queue("work", connection=r)
    release = tmp_path / "release"
    first = q.enqueue(rq_tasks.block_until, str(release))
    proof = tmp_path / "ran"
    with rq_worker(redis_url, "sleeper") as proc:
        wait_for(lambda: running(client, first.id), what="the first job to run")
        answer = client.post("/api/v1/backends/redis/rq/suspend", json={})
        assert answer.get_json() == {"suspended": True} and r.exists("rq:suspended")
        assert client.get("/api/v1/backends/redis/rq/suspend").get_json() == {"suspended": True}
        release.touch()  # RQ checks the suspension between jobs
        wait_for(lambda: worker_state(client, "sleeper") == "suspended", what="the worker to see it is suspended")
        later = q.enqueue(rq_tasks.record, str(proof), "later")
        time.sleep(2.5)  # a suspended RQ worker looks again every second
        assert later.get_status(refresh=True) == "queued" and not proof.exists()
        assert "is suspended" in client.get("/workers").get_data(as_text=True)
        answer = client.post("/api/v1/backends/redis/rq/resume", json={})
        assert answer.get_json() == {"suspended": False} and not r.exists("rq:suspended")
        wait_for(lambda: proof.exists(), what="the resumed worker to run the job")
        assert proc.poll() is None
    actions = [e["action"] for e in client.get("/api/v1/audit").get_json()["entries"]]
    assert actions[:2] == ["resume_workers", "suspend"]


def test_rq_cannot_pause_one_queue_and_says_what_it_can_do(client, r) -> None:
    rq.Queue("work", connection=r).enqueue(rq_tasks.add, 1, 2)
    for verb in ("pause", "resume"):
        answer = client.post(f"{API}/{verb}", json={})
        assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "unsupported"
        assert "suspends every RQ worker on this Redis" in answer.get_json()["error"]["message"]
    assert client.get(API).get_json()["paused"] is None
    assert "queuewatch_queue_paused{" not in client.get("/metrics").get_data(as_text=True)
    page = client.get("/queues/redis/rq/work").get_data(as_text=True)
    assert "data-pause-queue" not in page and "data-paused" not in page


def test_dramatiq_has_no_control_channel(client, r) -> None:
    for path in ("/api/v1/queues/redis/dramatiq/default/jobs/abc/stop", "/api/v1/queues/redis/dramatiq/default/pause"):
        answer = client.post(path, json={})
        assert answer.status_code == 409 and "Dramatiq has no control channel" in answer.get_json()["error"]["message"]
    shutdown = client.post("/api/v1/workers/redis/dramatiq/w1/shutdown", json={})
    assert shutdown.status_code == 409 and "no control channel" in shutdown.get_json()["error"]["message"]


# -- pages ---------------------------------------------------------------------------------


def csrf(client) -> str:
    client.get("/")
    with client.session_transaction() as session:
        return session["csrf"]


def test_the_stop_button_stops_the_job_and_the_page_follows_it_until_it_has_stopped(client, r, redis_url) -> None:
    q = rq.Queue("work", connection=r)
    slow = q.enqueue(rq_tasks.sleep, 60)
    with rq_worker(redis_url, "paged"):
        wait_for(lambda: running(client, slow.id), what="the slow job to run")
        page = client.get(f"/jobs/{slow.id}?backend=redis&system=rq&queue=work&state=in_progress").get_data(as_text=True)
        assert "data-stop-job" in page
        listing = client.get("/queues/redis/rq/work/jobs?state=in_progress").get_data(as_text=True)
        assert f'/queues/redis/rq/work/jobs/{slow.id}/stop"' in listing  # the row's Stop button
        token = csrf(client)
        answer = client.post(f"/queues/redis/rq/work/jobs/{slow.id}/stop", data={"csrf_token": token})
        assert answer.status_code == 303 and "/stopping?since=" in answer.headers["Location"]
        follow = client.get(answer.headers["Location"]).get_data(as_text=True)
        assert "Asked paged to stop job" in follow and 'id="stop-follow"' in follow
        wait_for(lambda: slow.get_status(refresh=True) == "stopped", what="RQ to record the job stopped")
        fragment = client.get(answer.headers["Location"], headers={"HX-Request": "true"}).get_data(as_text=True)
        assert 'data-stop-outcome="ended"' in fragment and "hx-trigger" not in fragment  # it stops polling
        assert "(stopped)" in fragment


def test_the_follow_fragment_polls_while_the_job_runs_and_says_when_it_did_not_stop(client, r, redis_url, tmp_path) -> None:
    q = rq.Queue("work", connection=r)
    release = tmp_path / "release"
    job = q.enqueue(rq_tasks.block_until, str(release))
    try:
        with rq_worker(redis_url, "busy"):
            wait_for(lambda: running(client, job.id), what="the job to run")
            base = f"/queues/redis/rq/work/jobs/{job.id}/stopping"
            polling = client.get(f"{base}?since={time.time()}", headers={"HX-Request": "true"}).get_data(as_text=True)
            assert 'data-stop-outcome="stopping"' in polling and 'hx-trigger="every 2s"' in polling
            late = client.get(f"{base}?since={time.time() - 40}", headers={"HX-Request": "true"}).get_data(as_text=True)
            assert 'data-stop-outcome="not_stopped"' in late and "did not stop within 30 s" in late
            assert "SimpleWorker" in late  # why RQ may not have stopped it
            api = client.get(f"{API}/jobs/{job.id}/stop?since={time.time() - 5}&timeout=3").get_json()
            assert (api["outcome"], api["stopped"], api["worker"]) == ("not_stopped", False, "busy")
            release.touch()
    finally:
        release.touch()
    assert client.get(f"{API}/jobs/{job.id}/stop?since=abc").status_code == 400
    assert client.get(f"{API}/jobs/{job.id}/stop?since={time.time()}&timeout=0").status_code == 400


def test_the_workers_page_suspends_and_resumes_with_a_form_and_offers_shutdown(client, r, redis_url) -> None:
    rq.Queue("work", connection=r).enqueue(rq_tasks.add, 1, 2)
    with rq_worker(redis_url, "shown"):
        wait_for(lambda: worker_state(client, "shown") not in (None, "dead"), what="the worker to register")
        page = client.get("/workers").get_data(as_text=True)
        assert "data-suspend-workers" in page and "suspends every RQ worker on this Redis" in page
        assert 'data-worker-action="shutdown"' in page and "/workers/redis/rq/shown/shutdown" in page
        token = csrf(client)
        answer = client.post("/backends/redis/rq/suspend", data={"csrf_token": token})
        assert answer.status_code == 303 and r.exists("rq:suspended")
        page = client.get("/workers").get_data(as_text=True)
        assert 'data-suspended="true"' in page and "data-resume-workers" in page
        assert "is suspended" in client.get("/queues/redis/rq/work").get_data(as_text=True)  # said on the queue page too
        client.post("/backends/redis/rq/resume", data={"csrf_token": token})
        assert not r.exists("rq:suspended")


# -- who may act ---------------------------------------------------------------------------


@pytest.fixture
def secured(redis_url, tmp_path):
    from test_auth import PASSWORDS, TOKENS
    from werkzeug.security import generate_password_hash

    from queuewatch import create_app
    from queuewatch.security.auth import hash_token

    users = tmp_path / "users.jsonl"
    users.write_text("\n".join(json.dumps({"name": n, "role": role, "password_hash": generate_password_hash(p)})
                               for n, (role, p) in PASSWORDS.items()))  # fmt: skip
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("".join(f'[[token]]\nname = "{role}-bot"\nrole = "{role}"\ntoken_hash = "{hash_token(t)}"\n'
                              for role, t in TOKENS.items()))  # fmt: skip
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                      "POLL": 0.01, "USERS": str(users), "TOKENS": str(tokens)})  # fmt: skip
    yield app
    app.extensions["queuewatch.monitor"].close()


def test_control_needs_an_operator_worker_commands_an_admin_and_forms_a_csrf_token(secured, r, caplog) -> None:
    from test_auth import bearer, login

    job = rq.Queue("work", connection=r).enqueue(rq_tasks.add, 1, 2)
    api = secured.test_client()
    for path in (f"{API}/jobs/{job.id}/stop", f"{API}/pause", "/api/v1/backends/redis/rq/suspend"):
        assert api.post(path, json={}).status_code == 401
        assert api.post(path, json={}, headers=bearer("viewer")).status_code == 403
        assert api.post(path, json={}, headers=bearer("operator") | {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    shutdown = "/api/v1/workers/redis/rq/anyone/shutdown"
    refused = api.post(shutdown, json={}, headers=bearer("operator"))
    assert refused.status_code == 403 and "needs admin" in refused.get_json()["error"]["message"]
    assert api.post(shutdown, json={}, headers=bearer("admin")).status_code == 404  # through: no such worker
    assert not r.exists("rq:suspended")
    operator = secured.test_client()
    login(operator, "otto")
    assert operator.post("/backends/redis/rq/suspend", data={}).status_code == 403  # no CSRF token
    assert operator.post("/workers/redis/rq/anyone/shutdown", data={"csrf_token": csrf(operator)}).status_code == 403
    assert not r.exists("rq:suspended")
    with caplog.at_level(logging.INFO, logger="queuewatch.audit"):
        assert api.post("/api/v1/backends/redis/rq/suspend", json={}, headers=bearer("operator")).get_json() == {"suspended": True}
    logged = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "queuewatch.audit"]
    assert [(e["user"], e["action"], e["backend"], e["system"]) for e in logged] == [("operator-bot", "suspend", "redis", "rq")]
    assert r.exists("rq:suspended")


def test_read_only_refuses_every_control_action(redis_url, tmp_path, r) -> None:
    from queuewatch import create_app

    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.sqlite3"),
                      "POLL": 0.01, "READ_ONLY": True})  # fmt: skip
    try:
        client = app.test_client()
        for path in ("/api/v1/backends/redis/rq/suspend", f"{API}/jobs/x/stop", "/api/v1/workers/redis/rq/w/shutdown"):
            assert client.post(path, json={}).status_code == 403
        assert "data-suspend-workers" not in client.get("/workers").get_data(as_text=True)
        assert not r.exists("rq:suspended")
    finally:
        app.extensions["queuewatch.monitor"].close()
