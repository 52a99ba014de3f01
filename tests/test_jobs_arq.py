"""Arq jobs in every state through the API (and the adapter), against what arq itself reports,
made by arq's own client and run by real arq workers; the refusals of the new writes."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus
from conftest import redis_digest, wait_for
from test_arq_adapter import ArqClient, arq_worker, run_arq_worker, run_async
from test_auth import bearer, login, make_app, session_csrf, tokens_file, users_file  # noqa: F401  (fixtures)

from queuewatch import create_app
from queuewatch.adapters.arq.adapter import ArqAdapter

pytestmark = pytest.mark.redis_db(14)
Q = "arq:queue"
API = "/api/v1/queues/redis/arq/arq%3Aqueue"


def walk(client, state: str, limit: int = 2) -> list[dict]:
    """Every job of a state, page by page through the API's cursors."""
    rows, cursor = [], None
    while True:
        answer = client.get(f"{API}/jobs?state={state}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status_code == 200, answer.get_data(as_text=True)
        body = answer.get_json()
        assert len(body["jobs"]) <= limit
        rows += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows


def arq_status(arq: ArqClient, job_id: str) -> JobStatus:
    async def go():
        pool = await arq._pool()
        try:
            return await ArqJob(job_id, pool, _queue_name=arq.queue).status()
        finally:
            await pool.aclose()

    return run_async(go())


@pytest.fixture
def arq(redis_url) -> ArqClient:
    return ArqClient(redis_url, Q)


def test_waiting_and_scheduled_list_what_arq_queues_in_the_order_it_runs_them(client, arq) -> None:
    ready = arq.enqueue([("add", (i, i), {}) for i in range(5)])
    later = arq.enqueue([("add", (9, i), {"_defer_by": 600 - 60 * i}) for i in range(3)])
    now_ms = time.time() * 1000
    queued = sorted(arq.queued(), key=lambda d: (d.score, d.job_id))  # arq's own view: zset order
    assert {d.job_id for d in queued} == set(ready + later)
    waiting, scheduled = walk(client, "waiting"), walk(client, "scheduled")
    assert [j["id"] for j in waiting] == [d.job_id for d in queued if d.score <= now_ms]
    assert [j["id"] for j in scheduled] == [d.job_id for d in queued if d.score > now_ms] == later[::-1]  # soonest first
    by_id = {d.job_id: d for d in queued}
    for row in scheduled:
        assert row["state"] == "scheduled" and row["function"] == "add" and row["args_preview"].startswith("9, ")
        run_at = time.mktime(time.strptime(row["scheduled_for"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert abs(run_at * 1000 - by_id[row["id"]].score) < 1000
    assert client.get(f"{API}/jobs?state=waiting").get_json()["total"] == 5
    assert client.get(f"{API}/jobs?state=scheduled").get_json()["total"] == 3
    for job_id, state in [(ready[0], "waiting"), (later[0], "scheduled")]:
        assert client.get(f"/api/v1/jobs/{job_id}").get_json()["matches"] == [
            {"backend": "redis", "system": "arq", "queue": Q, "state": state}]  # fmt: skip


def test_in_progress_lists_the_job_a_real_worker_runs_and_finished_is_unsupported_but_found(client, arq, redis_url, r) -> None:
    [slow] = arq.enqueue([("sleep", (4,), {})])
    [quick] = arq.enqueue([("add", (1, 2), {})])
    with arq_worker(redis_url, Q):
        wait_for(lambda: arq_status(arq, slow) == JobStatus.in_progress, what="arq to start the slow job")
        running = wait_for(lambda: walk(client, "in_progress"), what="the API to list the running job")
        assert [(j["id"], j["state"], j["worker"]) for j in running] == [(slow, "in_progress", f"arq worker on {Q}")]
        assert slow not in [j["id"] for j in walk(client, "waiting")]
        assert client.get(f"/api/v1/jobs/{slow}").get_json()["matches"][0]["state"] == "in_progress"
        wait_for(lambda: arq_status(arq, quick) == JobStatus.complete, what="the quick job to finish")
    finished = client.get(f"{API}/jobs?state=finished")
    assert finished.status_code == 409 and finished.get_json()["error"]["code"] == "unsupported"
    assert "scan" in finished.get_json()["error"]["message"]
    assert client.get(f"/api/v1/jobs/{quick}").get_json()["matches"] == [
        {"backend": "redis", "system": "arq", "queue": Q, "state": "finished"}]  # fmt: skip
    assert client.get(f"{API}/jobs?state=canceled").status_code == 409


def test_a_job_deleted_through_the_api_never_runs(client, arq, redis_url, r) -> None:
    ids = arq.enqueue([("add", (i, i), {}) for i in range(3)])
    [deferred] = arq.enqueue([("add", (7, 7), {"_defer_by": 3600})])
    answer = client.post(f"{API}/jobs/delete", json={"ids": [ids[1], deferred, "no-such-job"]})
    assert answer.get_json() == {"deleted": 2, "not_found": ["no-such-job"]}
    again = client.post(f"{API}/jobs/delete", json={"ids": [ids[1]]})  # a double click
    assert again.get_json() == {"deleted": 0, "not_found": [ids[1]]}
    assert not r.exists(f"arq:job:{ids[1]}", f"arq:job:{deferred}")
    run_arq_worker(redis_url, Q)
    assert [arq_status(arq, i) for i in ids] == [JobStatus.complete, JobStatus.not_found, JobStatus.complete]
    assert arq.result_info(ids[1]) is None and not r.exists(f"arq:result:{ids[1]}")  # not even a "job expired" failure
    assert arq_status(arq, deferred) == JobStatus.not_found


def test_a_started_job_is_not_deleted(client, arq, redis_url) -> None:
    [slow] = arq.enqueue([("sleep", (3,), {})])
    with arq_worker(redis_url, Q):
        wait_for(lambda: arq_status(arq, slow) == JobStatus.in_progress, what="arq to start the job")
        assert client.post(f"{API}/jobs/delete", json={"ids": [slow]}).get_json() == {"deleted": 0, "not_found": [slow]}
        wait_for(lambda: arq_status(arq, slow) == JobStatus.complete, what="the job to finish anyway")


def test_an_enqueued_now_deferred_job_runs_within_seconds(client, arq, redis_url) -> None:
    [deferred] = arq.enqueue([("add", (20, 22), {"_defer_by": 3600})])
    with arq_worker(redis_url, Q):
        time.sleep(0.5)
        assert arq_status(arq, deferred) == JobStatus.deferred
        start = time.monotonic()
        assert client.post(f"{API}/jobs/enqueue-now", json={"ids": [deferred]}).get_json() == {"enqueued": 1, "not_found": []}
        wait_for(lambda: arq_status(arq, deferred) == JobStatus.complete, timeout=10, what="the worker to run it")
        took = time.monotonic() - start
    assert arq.result_info(deferred).result == 42
    assert took < 5, took
    assert client.post(f"{API}/jobs/enqueue-now", json={"ids": [deferred]}).get_json() == {"enqueued": 0, "not_found": [deferred]}


def test_enqueue_now_puts_deferred_jobs_in_front_keeping_their_order(r, arq) -> None:
    ready = arq.enqueue([("add", (i, i), {}) for i in range(2)])
    soon, late = arq.enqueue([("add", (1, 1), {"_defer_by": 100}), ("add", (2, 2), {"_defer_by": 200})])
    adapter = ArqAdapter(backend="redis", client=r)
    result = adapter.enqueue_now(Q, [late, soon, ready[0]])
    assert (result.affected, result.not_found) == (2, (ready[0],))
    order = [d.job_id for d in sorted(arq.queued(), key=lambda d: (d.score, d.job_id))]
    assert order[:2] == [soon, late] and set(order[2:]) == set(ready)
    assert all(d.score <= time.time() * 1000 for d in arq.queued())


def test_bad_requests_answer_400_unknown_things_404_and_nothing_is_a_500(client, arq) -> None:
    [job] = arq.enqueue([("add", (1, 1), {})])
    for url in (
        f"{API}/jobs",
        f"{API}/jobs?state=running",
        f"{API}/jobs?state=waiting&limit=0",
        f"{API}/jobs?state=waiting&limit=x",
    ):
        answer = client.get(url)
        assert answer.status_code == 400, url
    assert (
        "waiting, scheduled, in_progress, finished, failed, canceled"
        in client.get(f"{API}/jobs?state=running").get_json()["error"]["message"]
    )
    assert client.get(f"{API}/jobs?state=waiting&cursor=nonsense").status_code == 404
    assert client.get("/api/v1/queues/nowhere/arq/arq%3Aqueue/jobs?state=waiting").status_code == 404
    assert client.get("/api/v1/queues/redis/nosystem/q/jobs?state=waiting").status_code == 404
    for body in ({}, {"ids": []}, {"ids": [1]}, {"all": True}, {"ids": "x"}):
        assert client.post(f"{API}/jobs/delete", json=body).status_code == 400, body
        assert client.post(f"{API}/jobs/enqueue-now", json=body).status_code == 400, body
    assert client.post(f"{API}/jobs/delete", data="ids=x", content_type="application/x-www-form-urlencoded").status_code in (
        400,
        403,
    )
    assert client.get("/api/v1/jobs/not-a-job").get_json()["matches"] == []
    assert client.get("/api/v1/jobs/" + "x" * 600).status_code == 400
    assert client.get(f"{API}/jobs/not-a-job").status_code == 404
    detail = client.get(f"{API}/jobs/{job}")
    assert detail.status_code == 200 and detail.get_json()["status"] == "queued"
    assert client.get("/jobs/not-a-job").status_code == 404
    assert "Not found on any backend" in client.get("/jobs/not-a-job").get_data(as_text=True)


def test_reads_of_every_new_page_and_route_write_nothing(client, arq, r) -> None:
    ready = arq.enqueue([("add", (i, i), {}) for i in range(3)])
    [later] = arq.enqueue([("add", (5, 5), {"_defer_by": 600})])
    before = redis_digest(r)
    for url in [f"{API}/jobs?state={s}" for s in ("waiting", "scheduled", "in_progress", "finished", "failed", "canceled")] + [
        f"/api/v1/jobs/{ready[0]}", f"/api/v1/jobs/{later}", f"{API}/jobs/{later}", "/queues/redis/arq/arq%3Aqueue",
        *[f"/queues/redis/arq/arq%3Aqueue/jobs?state={s}" for s in ("waiting", "scheduled", "in_progress", "finished")],
        f"/jobs/{ready[0]}", f"/jobs/{later}", f"/jobs/{later}?backend=redis&system=arq&queue=arq%3Aqueue", "/jobs?id=x",
    ]:  # fmt: skip
        assert client.get(url).status_code < 500, url
    assert redis_digest(r) == before


def test_the_queue_page_shows_a_tab_per_state_with_counts_and_says_once_what_is_not_listed(client, arq) -> None:
    arq.enqueue([("add", (i, i), {}) for i in range(3)] + [("add", (9, 9), {"_defer_by": 600})])
    page = client.get("/queues/redis/arq/arq%3Aqueue").get_data(as_text=True)
    tabs = page.split("data-state-tabs", 1)[1].split("</nav>", 1)[0]
    assert 'data-state="waiting"' in tabs and 'data-state="scheduled"' in tabs and 'data-state="in_progress"' in tabs
    assert 'data-state="finished"' not in tabs and 'data-state="canceled"' not in tabs
    assert ">3</span>" in tabs.split('data-state="waiting"', 1)[1].split("</a>", 1)[0]
    assert page.count("listing them would need a scan") == 1
    listing = client.get("/queues/redis/arq/arq%3Aqueue/jobs?state=scheduled").get_data(as_text=True)
    assert "Enqueue now" in listing and listing.count('name="ids"') == 1
    finished = client.get("/queues/redis/arq/arq%3Aqueue/jobs?state=finished").get_data(as_text=True)
    assert "data-unsupported" in finished


# -- who may act -------------------------------------------------------------------------


@pytest.fixture
def secured(redis_url, tmp_path, users_file, tokens_file):  # noqa: F811
    app = make_app(redis_url, tmp_path, USERS=users_file, TOKENS=tokens_file)
    yield app
    app.extensions["queuewatch.monitor"].close()


def test_the_new_writes_need_an_operator_csrf_and_the_same_origin_and_are_audited(secured, arq, r, caplog) -> None:
    ids = arq.enqueue([("add", (i, i), {}) for i in range(3)])
    [later] = arq.enqueue([("add", (9, 9), {"_defer_by": 600})])
    before = redis_digest(r)
    anonymous = secured.test_client()
    for path in ("/jobs/delete", "/jobs/enqueue-now"):
        assert anonymous.post(API + path, json={"ids": ids}).status_code == 401
        assert anonymous.post(API + path, json={"ids": ids}, headers=bearer("viewer")).status_code == 403
        cross = anonymous.post(API + path, json={"ids": ids}, headers=bearer("operator") | {"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
    viewer = secured.test_client()
    login(viewer, "vera")
    token = session_csrf(viewer)
    assert viewer.post("/queues/redis/arq/arq%3Aqueue/jobs/delete", data={"ids": ids[0], "csrf_token": token}).status_code == 403
    operator = secured.test_client()
    login(operator, "otto")
    assert operator.post("/queues/redis/arq/arq%3Aqueue/jobs/delete", data={"ids": ids[0]}).status_code == 403  # no CSRF token
    assert redis_digest(r) == before
    with caplog.at_level(logging.INFO, logger="queuewatch.audit"):
        token = session_csrf(operator)
        answer = operator.post("/queues/redis/arq/arq%3Aqueue/jobs/delete", data={"ids": ids[0], "csrf_token": token})
        assert answer.status_code == 303
        answer = anonymous.post(API + "/jobs/enqueue-now", json={"ids": [later]}, headers=bearer("operator"))
        assert answer.get_json() == {"enqueued": 1, "not_found": []}
    logged = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "queuewatch.audit"]
    assert [(e["user"], e["action"], e["ids"], e["affected"]) for e in logged] == [
        ("otto", "delete_jobs", [ids[0]], 1), ("operator-bot", "enqueue_now", [later], 1)]  # fmt: skip
    assert not r.zscore(Q, ids[0]) and r.zscore(Q, later) <= time.time() * 1000


# -- a slow backend does not stall find --------------------------------------------------


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_find_answers_from_the_backends_that_answer_while_one_hangs(redis_url, tmp_path, arq, silent_port) -> None:
    [job] = arq.enqueue([("add", (1, 1), {})])
    app = create_app({"TESTING": True, "REDIS": [redis_url, f"hung=redis://127.0.0.1:{silent_port}/0"], "RABBITMQ": ["none"],
                      "STATE": str(tmp_path / "state.sqlite3"), "POLL": 0.01})  # fmt: skip
    try:
        client = app.test_client()
        start = time.monotonic()
        body = client.get(f"/api/v1/jobs/{job}").get_json()
        took = time.monotonic() - start
        assert body["matches"] == [{"backend": "redis", "system": "arq", "queue": Q, "state": "waiting"}]
        assert [u["backend"] for u in body["unreachable"]] == ["hung"]
        assert took < 15, took
        start = time.monotonic()
        page = client.get(f"/jobs/{job}")
        assert page.status_code == 200 and time.monotonic() - start < 15
        assert 'data-job-state="waiting"' in page.get_data(as_text=True)
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_the_find_box_is_a_get_form_that_goes_to_the_job_page(client) -> None:
    assert 'action="/jobs"' in client.get("/").get_data(as_text=True)
    answer = client.get("/jobs?id=abc")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/jobs/abc")
    assert client.get("/jobs?id=").status_code == 303


def test_the_openapi_entries_describe_every_new_route_once_merged(app, client, monkeypatch) -> None:
    from queuewatch.views import openapi, openapi_jobs

    ours = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.jobs.")}
    assert ours == {e for e in openapi_jobs.PATHS if e.startswith("api.jobs.")}
    for endpoint, entry in openapi_jobs.PATHS.items():  # what openapi.py's one-line merge does
        monkeypatch.setitem(openapi.DETAILS, endpoint, entry)
    for name, schema in openapi_jobs.SCHEMAS.items():
        monkeypatch.setitem(openapi.SCHEMAS, name, schema)
    document = client.get("/api/v1/openapi.json").get_json()
    listing = document["paths"]["/api/v1/queues/{backend}/{system}/{queue}/jobs"]["get"]
    assert [p["name"] for p in listing["parameters"] if p["in"] == "query"] == ["state", "limit", "cursor", "inspection"]
    assert set(document["components"]["schemas"]) >= {"Job", "JobMatch"}
