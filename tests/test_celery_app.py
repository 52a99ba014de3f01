"""The dashboard over real Celery data: pages, API, actions, workers and a restart,
with a Redis broker (database 14) or a RabbitMQ one, and Redis results (database 15)."""

from __future__ import annotations

import re
import signal
from urllib.parse import quote

import pytest
import redis
from celery_app import (
    BROKER, RESULTS, producer, ran_successfully, result_records, run_worker_until, start_worker, stop, terminal_count,
    wait_for,
)  # fmt: skip
from conftest import REDIS_HOST, REDIS_PORT, csrf_token, redis_digest
from pages import counts, number, table_rows
from test_amqp_adapter import new_vhost, rabbit_app, ready

from queuewatch import create_app
from queuewatch.adapters.celery.index import UNKNOWN
from queuewatch.adapters.celery.messages import list_key

pytestmark = pytest.mark.redis_db(14)


def q_path(name: str, backend: str = "redis") -> str:
    return f"{backend}/celery/{quote(name, safe='')}"


@pytest.fixture
def results(redis_db: int):
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def celery_of(app, backend: str = "redis"):
    """The app's Celery adapter, linked to the tests' result backend (what --celery-results will do)."""
    adapter = app.extensions["queuewatch.monitor"].adapter(backend, "celery")
    if adapter.results is None or not adapter.results.label.startswith(RESULTS):
        adapter.link_results(RESULTS)
    return adapter


@pytest.fixture
def celery(app, results):
    return celery_of(app)


def send(queue: str, name: str, args: tuple, kwargs: dict | None = None, *, broker: str = BROKER, **options) -> str:
    with producer(broker) as app:
        return app.send_task(name, args, kwargs or {}, queue=queue, **options).id


def make_failed(queue: str, results: redis.Redis, n: int, flag, *, broker: str = BROKER, extended: bool = True) -> list[str]:
    ids = [send(queue, "celery_app.fail_unless_exists", (str(flag), i), broker=broker) for i in range(n)]
    expected = terminal_count(results) + n
    run_worker_until(broker, [queue], lambda: terminal_count(results) >= expected, extended=extended)
    return ids


def depth(r: redis.Redis, queue: str) -> int:
    return sum(r.llen(list_key(queue, p)) for p in (0, 3, 6, 9))


def test_counts_on_the_pages_and_in_the_api_equal_the_brokers(app, client, celery, r, results, tmp_path) -> None:
    names = ["celery", "emails.high", "team/emails", "with space"]
    make_failed("emails.high", results, 3, tmp_path / "flag")
    make_failed("team/emails", results, 1, tmp_path / "flag")
    for i, name in enumerate(names):
        for j in range(i + 1):
            send(name, "celery_app.add", (j, j), priority=(0, 4, 9)[j % 3])
    assert celery.settle()
    failures = {name: sum(1 for rec in result_records(results).values()
                          if rec["status"] == "FAILURE" and rec["queue"] == name) for name in names}  # fmt: skip
    api = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "celery"}
    rows = table_rows(client.get("/").get_data(as_text=True))
    for name in names:
        expected = {"depth": depth(r, name), "failed": failures[name], "in_progress": 0}
        assert {k: api[name][k] for k in expected} == expected, name
        assert {k: number(rows[f"redis/celery/{name}"][k]) for k in expected} == expected
        page = counts(client.get(f"/queues/{q_path(name)}").get_data(as_text=True))
        assert {k: number(page[k]) for k in expected} == expected
    assert api["with space"]["depth"] == 4 and api["emails.high"]["failed"] == 3


def test_a_task_requeued_from_the_page_is_run_by_a_real_worker(app, client, celery, results, tmp_path) -> None:
    task_id, other = make_failed("page-q", results, 2, tmp_path / "flag")
    assert celery.settle()
    (tmp_path / "flag").touch()
    job_page = client.get(f"/queues/{q_path('page-q')}/jobs/{task_id}").get_data(as_text=True)
    assert "FileNotFoundError" in job_page and "celery_app.fail_unless_exists" in job_page
    assert "Requeue publishes a new task" in job_page
    token = re.search(r'name="csrf_token" value="([^"]+)"', job_page).group(1)
    answer = client.post(f"/queues/{q_path('page-q')}/failed/requeue",
                         data={"csrf_token": token, "ids": [task_id], "next": "/"})  # fmt: skip
    assert answer.status_code == 303
    assert "Requeued 1 job." in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert client.get(f"/api/v1/queues/{q_path('page-q')}").get_json()["failed"] == 1
    run_worker_until(BROKER, ["page-q"], lambda: ran_successfully(results, task_id))
    assert result_records(results)[other]["status"] == "FAILURE"


def test_a_task_requeued_through_the_api_is_run_by_a_real_worker_on_rabbitmq(results, tmp_path) -> None:
    with new_vhost("celery") as url:
        app = rabbit_app(url, tmp_path)
        try:
            celery = celery_of(app, "rabbitmq")
            client = app.test_client()
            [task_id] = make_failed("team/api-q", results, 1, tmp_path / "flag", broker=url)
            assert celery.settle()
            assert client.get(f"/api/v1/queues/{q_path('team/api-q', 'rabbitmq')}").get_json()["failed"] == 1
            (tmp_path / "flag").touch()
            answer = client.post(f"/api/v1/queues/{q_path('team/api-q', 'rabbitmq')}/failed/requeue", json={"ids": [task_id]})
            assert answer.get_json() == {"requeued": 1, "not_found": []}
            assert ready(url, "team/api-q") == 1
            again = client.post(f"/api/v1/queues/{q_path('team/api-q', 'rabbitmq')}/failed/requeue", json={"ids": [task_id]})
            assert again.get_json() == {"requeued": 0, "not_found": [task_id]}
            run_worker_until(url, ["team/api-q"], lambda: ran_successfully(results, task_id))
        finally:
            app.extensions["queuewatch.monitor"].close()


def test_a_task_requeued_through_the_api_is_run_by_a_real_worker_on_redis(app, client, celery, r, results, tmp_path) -> None:
    [task_id] = make_failed("team/api-q", results, 1, tmp_path / "flag")
    assert celery.settle()
    (tmp_path / "flag").touch()
    answer = client.post(f"/api/v1/queues/{q_path('team/api-q')}/failed/requeue", json={"all": True})
    assert answer.get_json() == {"requeued": 1, "not_found": []}
    assert depth(r, "team/api-q") == 1
    run_worker_until(BROKER, ["team/api-q"], lambda: ran_successfully(results, task_id))


def test_why_a_requeue_is_refused_is_shown_next_to_the_button(app, client, celery, results, tmp_path) -> None:
    [task_id] = make_failed("bare", results, 1, tmp_path / "flag", extended=False)
    assert celery.settle()
    queues = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "celery"}
    assert queues[UNKNOWN]["failed"] == 1
    assert "result_extended" in client.get(f"/queues/{q_path(UNKNOWN)}").get_data(as_text=True)
    page = client.get(f"/queues/{q_path(UNKNOWN)}/jobs/{task_id}").get_data(as_text=True)
    reason = page.index("Requeue is refused")  # under the buttons, above the error and the facts
    assert page.find("job-actions") < reason < page.index('class="facts"')
    assert "result_extended" in page[reason : reason + 400]
    api = client.post(f"/api/v1/queues/{q_path(UNKNOWN)}/failed/requeue", json={"ids": [task_id]})
    assert api.status_code == 409 and "result_extended" in api.get_json()["error"]["message"]
    form = client.post(f"/queues/{q_path(UNKNOWN)}/failed/requeue", data={"csrf_token": csrf_token(client), "ids": [task_id]})
    assert form.status_code == 409 and "result_extended" in form.get_data(as_text=True)
    assert task_id in result_records(results)


def test_workers_show_alive_then_dead_after_kill_9(app, client, celery) -> None:
    celery.maintain(0.2)
    worker = start_worker(BROKER, ["celery", "mail"], "pagey")
    try:
        wait_for(lambda: any(w.alive for w in celery.workers()), 5, what="the worker alive")
        wait_for(lambda: celery.maintain(0.5) or celery.workers()[0].queues, 5, what="its queues", step=0.2)
        [shown] = [w for w in client.get("/api/v1/workers").get_json()["workers"] if w["system"] == "celery"]
        assert (shown["name"], shown["alive"], shown["pid"], shown["queues"]) == ("pagey@qw-test", True, worker.pid, ["celery", "mail"])
        assert shown["state"] == "idle" and shown["last_heartbeat"]
        assert "pagey@qw-test" in client.get("/workers").get_data(as_text=True)
    finally:
        stop(worker, signal.SIGKILL)
    wait_for(lambda: not any(w.alive for w in celery.workers()), 10, what="the worker dead")
    [shown] = [w for w in client.get("/api/v1/workers").get_json()["workers"] if w["system"] == "celery"]
    assert (shown["alive"], shown["state"]) == (False, "dead")


def test_a_restart_keeps_the_worker_list_and_the_failure_index(redis_url, results, tmp_path) -> None:
    # --celery-results links the result backend; the sampler saves what the adapter learned in the
    # state store, and a new process on the same store shows it at once.
    settings = {"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "POLL": 0.01,
                "STATE": str(tmp_path / "state.sqlite3"), "CELERY_RESULTS": [RESULTS]}  # fmt: skip
    first = create_app(settings)
    celery = first.extensions["queuewatch.monitor"].adapter("redis", "celery")
    try:
        assert celery.results is not None and celery.results.label.startswith(RESULTS)
        celery.maintain(0.2)
        ids = make_failed("kept", results, 2, tmp_path / "flag")
        wait_for(lambda: len(celery.workers()) == 1 and celery.index.entry(ids[1]) is not None, 5, what="events")
        celery.maintain(0.5)
        first.extensions["queuewatch.sampler"].tick()
    finally:
        first.extensions["queuewatch.monitor"].close()
    again = create_app(settings)
    try:
        client = again.test_client()
        workers = [w for w in client.get("/api/v1/workers").get_json()["workers"] if w["system"] == "celery"]
        assert [w["name"] for w in workers] == ["runner@qw-test"] and workers[0]["pid"]
        failed = client.get(f"/api/v1/queues/{q_path('kept')}/failed").get_json()
        assert sorted(j["id"] for j in failed["jobs"]) == sorted(ids) and failed["total"] == 2
    finally:
        again.extensions["queuewatch.monitor"].close()


def test_delete_and_purge_through_the_api_do_what_they_say(app, client, celery, r, results, tmp_path) -> None:
    ids = make_failed("dp", results, 3, tmp_path / "flag")
    for priority in (0, 3, 6, 9):
        send("dp", "celery_app.add", (1, priority), priority=priority)
    assert celery.settle()
    deleted = client.post(f"/api/v1/queues/{q_path('dp')}/failed/delete", json={"ids": [ids[0], "gone-id"]})
    assert deleted.get_json() == {"deleted": 1, "not_found": ["gone-id"]}
    assert ids[0] not in result_records(results)
    purged = client.post(f"/api/v1/queues/{q_path('dp')}/purge", json={})
    assert purged.get_json() == {"purged": 4} and depth(r, "dp") == 0
    assert client.get(f"/api/v1/queues/{q_path('dp')}").get_json()["failed"] == 2


def test_reads_never_write_and_what_tasks_say_is_escaped(app, client, celery, r, results, tmp_path) -> None:
    hostile = '<script>alert("q")</script>'
    ids = make_failed(hostile, results, 2, tmp_path / "flag")
    bad = send(hostile, "celery_app.fail_with", ('"><b>bold</b><img src=x onerror=alert(1)>',))
    run_worker_until(BROKER, [hostile], lambda: terminal_count(results) >= 3)
    send(hostile, "celery_app.add", ("<img src=x>", 1))
    [bare] = make_failed("bare", results, 1, tmp_path / "flag", extended=False)
    monitor = app.extensions["queuewatch.monitor"]
    monitor.snapshot(max_age=0)
    monitor.maintain(budget_seconds=1.0)
    assert celery.settle()
    before = redis_digest(r), redis_digest(results)
    qp, up = q_path(hostile), q_path(UNKNOWN)
    urls = [
        "/", "/workers", f"/queues/{qp}", f"/queues/{qp}?fragment=failed", f"/queues/{qp}?limit=1", f"/queues/{up}",
        "/api/v1/backends", "/api/v1/queues", f"/api/v1/queues/{qp}", "/api/v1/workers", f"/api/v1/queues/{qp}/failed",
        f"/api/v1/queues/{qp}/failed?limit=1", f"/api/v1/queues/{up}/failed", "/metrics", "/healthz",
        f"/queues/{qp}/jobs/missing", f"/api/v1/queues/{qp}/jobs/missing", f"/queues/{up}/jobs/{bare}",
    ] + [f"/queues/{qp}/jobs/{i}" for i in [*ids, bad]] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]  # fmt: skip
    api = client.get(f"/api/v1/queues/{qp}/failed?limit=1").get_json()
    urls.append(f"/api/v1/queues/{qp}/failed?limit=1&cursor={quote(api['next_cursor'])}")
    for url in urls:
        answer = client.get(url)
        assert answer.status_code < 500, url
        assert client.get(url, headers={"HX-Request": "true"}).status_code < 500, url
        if url.startswith("/queues") or url in ("/", "/workers"):
            html = answer.get_data(as_text=True)
            for raw in ("<script>alert", "<b>bold</b>", "<img src=x"):
                assert raw not in html, (url, raw)
    assert (redis_digest(r), redis_digest(results)) == before
    assert "&lt;b&gt;bold&lt;/b&gt;" in client.get(f"/queues/{qp}/jobs/{bad}").get_data(as_text=True)
