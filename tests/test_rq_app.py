"""The dashboard over real RQ data: pages, API, actions, and the rules in DESIGN.md."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import CommandCounter, csrf_token, free_port, redis_digest, run_rq_worker, unavailable
from pages import counts, number, table_rows
from rq.job import Job

from queuewatch import create_app


def q_path(name: str, backend: str = "redis", system: str = "rq") -> str:
    return f"{backend}/{system}/{quote(name, safe='')}"


def make_failed(r, redis_url, queue: str, n: int, flag) -> list[str]:
    q = rq.Queue(queue, connection=r)
    jobs = [q.enqueue(rq_tasks.fail_unless_exists, str(flag), i) for i in range(n)]
    run_rq_worker(redis_url, queue)
    return [j.id for j in jobs]


def status_of(r, job_id: str) -> str:
    return Job.fetch(job_id, connection=r).get_status()


def test_counts_on_the_page_and_in_the_api_equal_rqs_own(client, r, redis_url, tmp_path) -> None:
    names = ["default", "emails.high", "reports:nightly", "with space", "team/emails"]
    make_failed(r, redis_url, "emails.high", 3, tmp_path / "flag")
    make_failed(r, redis_url, "reports:nightly", 1, tmp_path / "flag")
    for i, name in enumerate(names):
        for j in range(i + 1):
            rq.Queue(name, connection=r).enqueue(rq_tasks.add, j, j)
    api = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"]}
    rows = table_rows(client.get("/").get_data(as_text=True))
    for name in names:
        q = rq.Queue(name, connection=r)
        expected = {"depth": q.count, "failed": q.failed_job_registry.count, "in_progress": q.started_job_registry.count}
        assert {k: api[name][k] for k in expected} == expected
        assert api[name]["backend"] == "redis" and api[name]["system"] == "rq"
        row = rows[f"redis/rq/{name}"]
        assert {k: number(row[k]) for k in expected} == expected
        page = counts(client.get(f"/queues/{q_path(name)}").get_data(as_text=True))
        assert {k: number(page[k]) for k in expected} == expected
        one = client.get(f"/api/v1/queues/{q_path(name)}").get_json()
        assert one["depth"] == q.count and one["failed"] == q.failed_job_registry.count


def test_a_job_requeued_through_the_api_is_run_by_a_real_worker(client, r, redis_url, tmp_path) -> None:
    [job_id] = make_failed(r, redis_url, "team/api-q", 1, tmp_path / "flag")
    (tmp_path / "flag").touch()
    answer = client.post(f"/api/v1/queues/{q_path('team/api-q')}/failed/requeue", json={"ids": [job_id]})
    assert answer.status_code == 200
    assert answer.get_json() == {"requeued": 1, "not_found": []}
    run_rq_worker(redis_url, "team/api-q")
    assert status_of(r, job_id) == "finished"


def test_a_job_requeued_through_the_page_is_run_by_a_real_worker(client, r, redis_url, tmp_path) -> None:
    [job_id, other] = make_failed(r, redis_url, "page-q", 2, tmp_path / "flag")
    (tmp_path / "flag").touch()
    page = client.get(f"/queues/{q_path('page-q')}").get_data(as_text=True)
    assert f'value="{job_id}"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(f"/queues/{q_path('page-q')}/failed/requeue", data={"csrf_token": token, "ids": [job_id], "next": "/"})
    assert answer.status_code == 303
    follow = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Requeued 1 job." in follow
    run_rq_worker(redis_url, "page-q")
    assert status_of(r, job_id) == "finished"
    assert status_of(r, other) == "failed"


def test_a_double_clicked_requeue_enqueues_once(client, r, redis_url, tmp_path) -> None:
    [job_id] = make_failed(r, redis_url, "dbl", 1, tmp_path / "flag")
    token = csrf_token(client)
    form = {"csrf_token": token, "ids": [job_id]}
    client.post(f"/queues/{q_path('dbl')}/failed/requeue", data=form)
    second = client.post(f"/queues/{q_path('dbl')}/failed/requeue", data=form, follow_redirects=True)
    assert "Requeued 0 jobs. 1 could not be: already moved or gone" in second.get_data(as_text=True)
    assert r.lrange("rq:queue:dbl", 0, -1) == [job_id.encode()]


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(client, r, redis_url, tmp_path) -> None:
    [job_id] = make_failed(r, redis_url, "csrf", 1, tmp_path / "flag")
    before = redis_digest(r)
    for path in ("failed/requeue", "failed/delete", "purge"):
        answer = client.post(f"/queues/{q_path('csrf')}/{path}", data={"ids": [job_id], "all": "1"})
        assert answer.status_code == 403
        forged = client.post(f"/queues/{q_path('csrf')}/{path}", data={"ids": [job_id], "csrf_token": "forged"})
        assert forged.status_code == 403
    cross_site = client.post(
        f"/api/v1/queues/{q_path('csrf')}/failed/delete", json={"all": True}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    form_to_api = client.post(f"/api/v1/queues/{q_path('csrf')}/failed/delete", data={"all": "true"})
    assert form_to_api.status_code in (400, 403)
    assert redis_digest(r) == before


def test_api_delete_and_purge_do_what_they_say_and_nothing_more(client, r, redis_url, tmp_path) -> None:
    ids = make_failed(r, redis_url, "dp", 3, tmp_path / "flag")
    q = rq.Queue("dp", connection=r)
    waiting = [q.enqueue(rq_tasks.add, i, i).id for i in range(4)]
    other = rq.Queue("other", connection=r).enqueue(rq_tasks.add, 1, 1).id
    deleted = client.post(f"/api/v1/queues/{q_path('dp')}/failed/delete", json={"ids": [ids[0], "gone-id"]})
    assert deleted.get_json() == {"deleted": 1, "not_found": ["gone-id"]}
    assert not r.exists(f"rq:job:{ids[0]}") and not r.exists(f"rq:results:{ids[0]}")
    assert q.failed_job_registry.count == 2 and q.count == 4
    purged = client.post(f"/api/v1/queues/{q_path('dp')}/purge", json={})
    assert purged.get_json() == {"purged": 4}
    assert q.count == 0 and not any(r.exists(f"rq:job:{w}") for w in waiting)
    assert q.failed_job_registry.count == 2
    assert status_of(r, other) == "queued"
    rest = client.post(f"/api/v1/queues/{q_path('dp')}/failed/delete", json={"all": True})
    assert rest.get_json() == {"deleted": 2, "not_found": []}
    assert q.failed_job_registry.count == 0


@pytest.mark.parametrize(
    "body, message",
    [({}, "ids"), ({"ids": []}, "ids"), ({"ids": "abc"}, "ids"), ({"ids": [1]}, "ids"), ({"ids": ["a"], "all": True}, "not both")],
)
def test_bad_action_bodies_get_a_clear_400(client, r, redis_url, body, message) -> None:
    rq.Queue("bodies", connection=r).enqueue(rq_tasks.add, 1, 1)
    answer = client.post(f"/api/v1/queues/{q_path('bodies')}/failed/requeue", json=body)
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]["message"]
    assert client.get(f"/api/v1/queues/{q_path('bodies')}/failed?limit=abc").status_code == 400
    assert client.get(f"/api/v1/queues/{q_path('bodies')}/failed?limit=100000").status_code == 400


def test_ids_that_no_longer_exist_answer_404_or_not_found_never_500(client, r, redis_url, tmp_path) -> None:
    make_failed(r, redis_url, "gone", 1, tmp_path / "flag")
    assert client.get(f"/api/v1/queues/{q_path('gone')}/jobs/nope").status_code == 404
    assert client.get(f"/api/v1/queues/{q_path('gone')}/jobs/nope").get_json()["error"]["code"] == "not_found"
    assert client.get(f"/queues/{q_path('gone')}/jobs/nope").status_code == 404
    assert client.get(f"/api/v1/queues/{q_path('no-such-queue')}").status_code == 404
    assert client.get(f"/queues/{q_path('no-such-queue')}").status_code == 404
    assert client.get("/api/v1/queues/nobackend/rq/x").status_code == 404
    assert client.get("/api/v1/queues/redis/nosystem/x/failed").status_code == 404
    assert client.get(f"/api/v1/queues/{q_path('gone')}/failed?cursor=bogus").status_code == 404
    answer = client.post(f"/api/v1/queues/{q_path('gone')}/failed/requeue", json={"ids": ["nope"]})
    assert answer.get_json() == {"requeued": 0, "not_found": ["nope"]}


def test_html_in_job_arguments_errors_and_queue_names_is_escaped_on_every_page(client, r, redis_url) -> None:
    hostile_queue = '<script>alert("q")</script>'
    hostile_arg = "<img src=x onerror=alert(1)>"
    hostile_error = '"><b>bold</b><script>alert(2)</script>'
    q = rq.Queue(hostile_queue, connection=r)
    job = q.enqueue(rq_tasks.fail_with, hostile_error, description=hostile_arg)
    q.enqueue(rq_tasks.add, hostile_arg, 1)
    run_rq_worker(redis_url, hostile_queue)
    q.enqueue(rq_tasks.add, hostile_arg, 2)
    worker = rq.Worker([hostile_queue], connection=r, name="w<script>x</script>")
    worker.register_birth()
    try:
        pages = ["/", "/workers", f"/queues/{q_path(hostile_queue)}", f"/queues/{q_path(hostile_queue)}/jobs/{job.id}"]
        for path in pages:
            html = client.get(path).get_data(as_text=True)
            for raw in ("<script>alert", "<img src=x", "<b>bold</b>", "<script>x</script>"):
                assert raw not in html, (path, raw)
        job_page = client.get(pages[3]).get_data(as_text=True)
        assert "&lt;b&gt;bold&lt;/b&gt;" in job_page
        assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;" in job_page
    finally:
        worker.register_death()


def test_reads_never_write_a_crawl_of_every_page_and_get_route(client, r, redis_url, tmp_path) -> None:
    ids = make_failed(r, redis_url, "crawl", 3, tmp_path / "flag")
    q = rq.Queue("crawl", connection=r)
    q.enqueue(rq_tasks.add, 1, 2)
    from datetime import timedelta

    q.enqueue_in(timedelta(hours=1), rq_tasks.add, 3, 4)
    worker = rq.Worker(["crawl"], connection=r, name="crawler")
    worker.register_birth()
    r.delete(worker.key)  # a worker that died without saying goodbye
    before = redis_digest(r)
    qp = q_path("crawl")
    urls = [
        "/", "/?x=1", "/workers", f"/queues/{qp}", f"/queues/{qp}?fragment=counts", f"/queues/{qp}?fragment=failed",
        f"/queues/{qp}?cursor=1&limit=1", "/api/v1/backends", "/api/v1/queues", f"/api/v1/queues/{qp}",
        "/api/v1/workers", f"/api/v1/queues/{qp}/failed", f"/api/v1/queues/{qp}/failed?limit=1&cursor=2",
        "/metrics", "/healthz", f"/queues/{qp}/jobs/missing", f"/api/v1/queues/{qp}/jobs/missing",
        f"/queues/{q_path('missing-queue')}",
        # Failure triage: filters, groups, operations (reading, never counting or confirming one).
        f"/queues/{qp}?exception=FileNotFound&q=flag", f"/queues/{qp}?since=2026-01-01T00:00&function=rq_tasks",
        f"/queues/{qp}/groups", "/failures", "/failures?exception=x", f"/api/v1/queues/{qp}/groups",
        "/api/v1/failures/groups", f"/api/v1/queues/{qp}/failed?q=flag", "/operations", "/api/v1/operations",
        "/operations/missing", "/api/v1/operations/missing",
        # Jobs in every state, find by id, control's follow pages, per-function metrics, periodic work.
        *[f"/queues/{qp}/jobs?state={s}" for s in ("waiting", "scheduled", "in_progress", "finished", "failed", "canceled", "bogus")],
        *[f"/api/v1/queues/{qp}/jobs?state={s}" for s in ("waiting", "scheduled", "in_progress", "finished", "canceled", "bogus")],
        f"/jobs?id={ids[0]}", f"/jobs/{ids[0]}", "/jobs/nowhere", f"/api/v1/jobs/{ids[0]}", "/api/v1/jobs/nowhere",
        f"/api/v1/queues/{qp}/jobs/{ids[0]}/stop", f"/queues/{qp}/jobs/{ids[0]}/stopping", f"/queues/{qp}/control",
        "/api/v1/backends/redis/rq/suspend", "/functions", "/functions?minutes=15", "/api/v1/functions",
        "/api/v1/functions?minutes=60&system=rq", "/api/v1/functions/series?backend=redis&system=rq&queue=crawl&function=x",
        "/periodic", "/api/v1/periodic", "/groups", "/api/v1/groups", "/alerts", "/api/v1/alerts",
    ] + [f"/queues/{qp}/jobs/{i}" for i in ids] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]  # fmt: skip
    for url in urls:
        assert client.get(url).status_code < 500, url
        assert client.get(url, headers={"HX-Request": "true"}).status_code < 500, url
    assert redis_digest(r) == before


def test_a_pickle_that_would_run_a_command_is_displayed_and_never_executed(client, r, tmp_path) -> None:
    import pickle
    import zlib

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    r.hset("rq:job:evil", mapping={"data": zlib.compress(pickle.dumps(("rq_tasks.add", None, (Evil(),), {}))),
                                   "origin": "bad", "status": "failed"})  # fmt: skip
    r.zadd("rq:failed:bad", {"evil": 1e12})
    r.sadd("rq:queues", "rq:queue:bad")
    for url in ("/queues/redis/rq/bad", "/queues/redis/rq/bad/jobs/evil", "/api/v1/queues/redis/rq/bad/jobs/evil",
                "/api/v1/queues/redis/rq/bad/failed"):  # fmt: skip
        answer = client.get(url)
        assert answer.status_code == 200
        assert f"touch {marker}" in answer.get_data(as_text=True)
    assert not marker.exists()


def test_the_failed_list_is_paged(client, r) -> None:
    q = rq.Queue("paged", connection=r)
    with r.pipeline() as pipe:
        for i in range(120):
            job = Job.create(rq_tasks.add, args=(i, i), connection=r, origin="paged")
            q.failed_job_registry.add(job, ttl=3600 + i, exc_string="ValueError: x", pipeline=pipe)
        pipe.execute()
    first = client.get("/queues/redis/rq/paged").get_data(as_text=True)
    assert first.count('name="ids"') == 50 and "1–50 of 120" in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert "51–100 of 120" in second and 'rel="prev"' in second
    api = client.get("/api/v1/queues/redis/rq/paged/failed?limit=100&cursor=100").get_json()
    assert len(api["jobs"]) == 20 and api["next_cursor"] is None and api["total"] == 120


def test_a_redis_that_is_down_shows_as_down_and_every_page_renders(tmp_path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app({"TESTING": True, "REDIS": [closed], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.db"), "POLL": 0.01})
    client = app.test_client()
    overview = client.get("/")
    assert overview.status_code == 200
    assert 'data-backend="redis"' in overview.get_data(as_text=True) and "unreachable" in overview.get_data(as_text=True)
    assert client.get("/workers").status_code == 200
    [backend] = client.get("/api/v1/backends").get_json()["backends"]
    assert backend["status"] == "down" and backend["error"]
    assert client.get("/api/v1/queues").get_json() == {"queues": []}
    page = client.get("/queues/redis/rq/default")
    assert page.status_code == 503 and "unreachable" in page.get_data(as_text=True)
    api = client.get("/api/v1/queues/redis/rq/default/failed")
    assert api.status_code == 503 and api.get_json()["error"]["code"] == "backend_unavailable"
    assert client.post("/api/v1/queues/redis/rq/default/failed/requeue", json={"all": True}).status_code == 503
    assert 'queuewatch_backend_up{backend="redis",kind="redis"} 0' in client.get("/metrics").get_data(as_text=True)
    app.extensions["queuewatch.monitor"].close()


def test_one_backend_down_leaves_the_others_working(r, redis_url, tmp_path) -> None:
    rq.Queue("alive", connection=r).enqueue(rq_tasks.add, 1, 1)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app({"TESTING": True, "REDIS": [redis_url, f"broken={closed}"], "RABBITMQ": ["none"],
                      "STATE": str(tmp_path / "s.db"), "POLL": 0.01})  # fmt: skip
    client = app.test_client()
    statuses = {b["name"]: b["status"] for b in client.get("/api/v1/backends").get_json()["backends"]}
    assert statuses == {"redis": "up", "broken": "down"}
    assert [q["name"] for q in client.get("/api/v1/queues").get_json()["queues"]] == ["alive"]
    app.extensions["queuewatch.monitor"].close()


def test_fifty_viewers_cost_the_monitored_redis_what_one_does(r, redis_db, redis_url, tmp_path) -> None:
    make_failed(r, redis_url, "shared", 2, tmp_path / "flag")
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.db"), "POLL": 60})
    viewers = [app.test_client() for _ in range(50)]
    with CommandCounter(redis_db) as one:
        viewers[0].get("/")
        viewers[0].get("/queues/redis/rq/shared?fragment=failed")
    assert one.count > 0
    with CommandCounter(redis_db) as fifty:
        for viewer in viewers[1:]:
            assert viewer.get("/").status_code == 200
            assert viewer.get("/queues/redis/rq/shared?fragment=failed", headers={"HX-Request": "true"}).status_code == 200
            assert viewer.get("/api/v1/queues").status_code == 200
    assert fifty.count == 0, fifty.commands
    app.extensions["queuewatch.monitor"].close()


def test_htmx_requests_get_the_fragment_and_pages_vary_on_it(client, r) -> None:
    rq.Queue("frag", connection=r).enqueue(rq_tasks.add, 1, 1)
    full = client.get("/")
    part = client.get("/", headers={"HX-Request": "true"})
    boosted = client.get("/", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in full.get_data(as_text=True) and "<html" in boosted.get_data(as_text=True)
    assert "<html" not in part.get_data(as_text=True) and 'id="overview"' in part.get_data(as_text=True)
    assert "HX-Request" in full.headers["Vary"]
    counts_only = client.get("/queues/redis/rq/frag?fragment=counts", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert counts_only.lstrip().startswith("<section") and 'id="queue-counts"' in counts_only


def test_a_backend_that_hangs_is_shown_down_with_its_error(tmp_path) -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers: a hung server
    port = listener.getsockname()[1]
    stop = threading.Event()
    held = []

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    app = create_app({"TESTING": True, "REDIS": [f"redis://127.0.0.1:{port}/0"], "RABBITMQ": ["none"],
                      "STATE": str(tmp_path / "s.db"), "POLL": 60})  # fmt: skip
    try:
        client = app.test_client()
        overview = client.get("/")
        assert overview.status_code == 200
        [backend] = client.get("/api/v1/backends").get_json()["backends"]
        assert backend["status"] == "down" and "imeout" in backend["error"]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
        app.extensions["queuewatch.monitor"].close()


def test_a_backend_that_comes_back_is_shown_up_again_by_itself(tmp_path) -> None:
    import shutil

    if not shutil.which("redis-server"):
        unavailable("redis-server is not installed")
    port = free_port()
    start = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
    app = create_app({"TESTING": True, "REDIS": [f"redis://127.0.0.1:{port}/0"], "RABBITMQ": ["none"],
                      "STATE": str(tmp_path / "s.db"), "POLL": 0.01})  # fmt: skip
    client = app.test_client()
    import subprocess
    import time

    def status() -> str:
        return client.get("/api/v1/backends").get_json()["backends"][0]["status"]

    server = subprocess.Popen(start, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while status() != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status() == "up"
        server.terminate()
        server.wait(10)
        time.sleep(0.05)
        assert status() == "down"
        server = subprocess.Popen(start, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while status() != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status() == "up"
    finally:
        server.terminate()
        server.wait(10)
        app.extensions["queuewatch.monitor"].close()


def test_huge_arguments_are_cut_short_not_a_slow_page_or_a_500(client, r, redis_url) -> None:
    q = rq.Queue("huge", connection=r)
    job = q.enqueue(rq_tasks.fail_with, "x" * 3_000_000)
    run_rq_worker(redis_url, "huge")
    page = client.get("/queues/redis/rq/huge")
    assert page.status_code == 200 and len(page.data) < 200_000
    detail = client.get(f"/queues/redis/rq/huge/jobs/{job.id}")
    assert detail.status_code == 200 and len(detail.data) < 300_000
    assert "…" in detail.get_data(as_text=True)
    api = client.get(f"/api/v1/queues/redis/rq/huge/jobs/{job.id}")
    assert api.status_code == 200
    assert api.get_json()["error_type"] == "RuntimeError" and len(api.get_json()["traceback"]) < 70_000


def test_finding_systems_costs_at_most_one_small_scan_per_snapshot(r, redis_db, redis_url, tmp_path) -> None:
    with r.pipeline() as pipe:
        for i in range(5000):
            pipe.set(f"unrelated:{i}", i)
        pipe.execute()
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.db"), "POLL": 60})
    monitor = app.extensions["queuewatch.monitor"]
    with CommandCounter(redis_db) as counter:
        for _ in range(10):
            monitor.refresh()
    scans = [c for c in counter.commands if c.upper().startswith("SCAN")]
    assert 0 < len(scans) <= 10
    assert all("COUNT 1000" in c.upper() for c in scans)
    assert not any(c.upper().startswith("KEYS") for c in counter.commands)
    monitor.close()
