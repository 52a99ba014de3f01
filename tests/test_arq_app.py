"""The dashboard over real Arq data: pages, API, actions, and the rules in DESIGN.md."""

from __future__ import annotations

import pickle
import re
import time
from urllib.parse import quote

import pytest
from conftest import csrf_token, redis_digest
from pages import counts, number, table_rows
from test_arq_adapter import ArqClient, arq_worker, failed_results, put_result, run_arq_worker, wait_for

pytestmark = pytest.mark.redis_db(11)


def q_path(name: str) -> str:
    return f"redis/arq/{quote(name, safe='')}"


def settle(app) -> None:
    """What the sampler's upkeep does over a few ticks: a whole scan for failed results."""
    assert app.extensions["queuewatch.monitor"].adapter("redis", "arq").settle()


def make_failed(redis_url: str, queue: str, n: int, flag) -> list[str]:
    client = ArqClient(redis_url, queue)
    ids = client.enqueue([("fail_unless_exists", (str(flag), i), {}) for i in range(n)])
    run_arq_worker(redis_url, queue)
    return ids


def succeeded(redis_url: str, queue: str, job_id: str) -> bool:
    info = ArqClient(redis_url, queue).result_info(job_id)
    return info is not None and info.success


def test_counts_on_the_page_and_in_the_api_equal_arqs_own(app, client, r, redis_url, tmp_path) -> None:
    names = ["arq:queue", "emails.high", "team/emails", "with space"]
    make_failed(redis_url, "emails.high", 3, tmp_path / "flag")
    make_failed(redis_url, "team/emails", 1, tmp_path / "flag")
    for i, name in enumerate(names):
        calls = [("add", (j, j), {}) for j in range(i + 1)] + [("add", (0, 0), {"_defer_by": 600})]
        ArqClient(redis_url, name).enqueue(calls)
    settle(app)
    api = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "arq"}
    rows = table_rows(client.get("/").get_data(as_text=True))
    now_ms = time.time() * 1000
    for name in names:
        arq = ArqClient(redis_url, name)
        queued = arq.queued()
        expected = {"depth": sum(1 for j in queued if j.score <= now_ms), "failed": len(failed_results(arq)), "in_progress": 0,
                    "scheduled": sum(1 for j in queued if j.score > now_ms)}  # fmt: skip
        assert {k: api[name][k] for k in expected} == expected, name
        row = rows[f"redis/arq/{name}"]
        assert {k: number(row[k]) for k in expected} == expected
        page = counts(client.get(f"/queues/{q_path(name)}").get_data(as_text=True))
        assert {k: number(page[k]) for k in expected} == expected
        one = client.get(f"/api/v1/queues/{q_path(name)}").get_json()
        assert (one["depth"], one["failed"]) == (expected["depth"], expected["failed"])


def test_a_job_requeued_through_the_api_is_run_by_a_real_worker(app, client, r, redis_url, tmp_path) -> None:
    [job_id] = make_failed(redis_url, "team/api-q", 1, tmp_path / "flag")
    settle(app)
    assert client.get(f"/api/v1/queues/{q_path('team/api-q')}").get_json()["failed"] == 1
    (tmp_path / "flag").touch()
    answer = client.post(f"/api/v1/queues/{q_path('team/api-q')}/failed/requeue", json={"ids": [job_id]})
    assert answer.status_code == 200
    assert answer.get_json() == {"requeued": 1, "not_found": []}
    queue = client.get(f"/api/v1/queues/{q_path('team/api-q')}").get_json()
    assert (queue["failed"], queue["depth"]) == (0, 1)
    run_arq_worker(redis_url, "team/api-q")
    assert succeeded(redis_url, "team/api-q", job_id)


def test_a_job_requeued_through_the_page_is_run_by_a_real_worker(app, client, r, redis_url, tmp_path) -> None:
    job_id, other = make_failed(redis_url, "page-q", 2, tmp_path / "flag")
    settle(app)
    (tmp_path / "flag").touch()
    page = client.get(f"/queues/{q_path('page-q')}").get_data(as_text=True)
    assert f'value="{job_id}"' in page and "FileNotFoundError" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(f"/queues/{q_path('page-q')}/failed/requeue", data={"csrf_token": token, "ids": [job_id], "next": "/"})
    assert answer.status_code == 303
    assert "Requeued 1 job." in client.get(answer.headers["Location"]).get_data(as_text=True)
    run_arq_worker(redis_url, "page-q")
    assert succeeded(redis_url, "page-q", job_id) and not succeeded(redis_url, "page-q", other)


def test_a_double_clicked_requeue_enqueues_once(app, client, r, redis_url, tmp_path) -> None:
    [job_id] = make_failed(redis_url, "dbl", 1, tmp_path / "flag")
    settle(app)
    form = {"csrf_token": csrf_token(client), "ids": [job_id]}
    client.post(f"/queues/{q_path('dbl')}/failed/requeue", data=form)
    second = client.post(f"/queues/{q_path('dbl')}/failed/requeue", data=form, follow_redirects=True)
    assert "Requeued 0 jobs. 1 could not be: already moved or gone" in second.get_data(as_text=True)
    assert r.zrange("dbl", 0, -1) == [job_id.encode()]


def test_api_delete_and_purge_do_what_they_say_and_nothing_more(app, client, r, redis_url, tmp_path) -> None:
    ids = make_failed(redis_url, "dp", 3, tmp_path / "flag")
    waiting = ArqClient(redis_url, "dp").enqueue([("add", (i, i), {}) for i in range(4)])
    [other] = ArqClient(redis_url, "other").enqueue([("add", (1, 1), {})])
    settle(app)
    deleted = client.post(f"/api/v1/queues/{q_path('dp')}/failed/delete", json={"ids": [ids[0], "gone-id"]})
    assert deleted.get_json() == {"deleted": 1, "not_found": ["gone-id"]}
    assert not r.exists(f"arq:result:{ids[0]}") and r.exists(f"arq:result:{ids[1]}")
    assert client.post(f"/api/v1/queues/{q_path('dp')}/purge", json={}).get_json() == {"purged": 4}
    assert r.zcard("dp") == 0 and not any(r.exists(f"arq:job:{w}") for w in waiting)
    assert r.zscore("other", other) is not None and r.exists(f"arq:job:{other}")
    rest = client.post(f"/api/v1/queues/{q_path('dp')}/failed/delete", json={"all": True})
    assert rest.get_json() == {"deleted": 2, "not_found": []}
    assert client.get(f"/api/v1/queues/{q_path('dp')}").get_json()["failed"] == 0


def test_a_requeue_that_cannot_be_done_is_refused_with_409_and_changes_nothing(app, client, r) -> None:
    put_result(r, "legacy", None)  # no queue name: an older arq wrote it
    settle(app)
    before = redis_digest(r)
    answer = client.post(f"/api/v1/queues/{q_path('arq:queue')}/failed/requeue", json={"all": True})
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "unsupported"
    assert "does not name its queue" in answer.get_json()["error"]["message"]
    assert redis_digest(r) == before


def test_a_pickle_that_would_run_a_command_is_displayed_and_never_executed(app, client, r, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    put_result(r, "evil", "bad", args=(Evil(),), result=Evil())
    settle(app)
    for url in ("/queues/redis/arq/bad", "/queues/redis/arq/bad/jobs/evil", "/api/v1/queues/redis/arq/bad/jobs/evil",
                "/api/v1/queues/redis/arq/bad/failed"):  # fmt: skip
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert f"touch {marker}" in answer.get_data(as_text=True), url
    assert not marker.exists()


def test_the_workers_page_shows_one_worker_per_queue_from_its_report(app, client, r, redis_url) -> None:
    with arq_worker(redis_url, "wq", health_interval=1):
        wait_for(lambda: r.exists("wq:health-check"))
        settle(app)
        [worker] = [w for w in client.get("/api/v1/workers").get_json()["workers"] if w["system"] == "arq"]
        assert (worker["name"], worker["alive"], worker["queues"]) == ("arq worker on wq", True, ["wq"])
        assert "arq worker on wq" in client.get("/workers").get_data(as_text=True)
        page = client.get(f"/queues/{q_path('wq')}").get_data(as_text=True)
        assert "Worker report" in page and "no per-worker identity" in page


def test_the_failed_list_is_paged_newest_first(app, client, r) -> None:
    for i in range(120):
        put_result(r, f"job-{i:03}", "paged", finished_ms=1_700_000_000_000 + i * 1000)
    settle(app)
    first = client.get("/queues/redis/arq/paged").get_data(as_text=True)
    assert first.count('name="ids"') == 50 and "1–50 of 120" in first
    assert first.index('value="job-119"') < first.index('value="job-118"')
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert "51–100 of 120" in second and 'rel="prev"' in second and 'value="job-069"' in second
    seen, cursor = [], None
    while True:
        query = "limit=50" + (f"&cursor={quote(cursor)}" if cursor else "")
        api = client.get(f"/api/v1/queues/redis/arq/paged/failed?{query}").get_json()
        seen += [j["id"] for j in api["jobs"]]
        cursor = api["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"job-{i:03}" for i in range(119, -1, -1)] and api["total"] == 120
    assert client.get("/api/v1/queues/redis/arq/paged/failed?cursor=bogus").status_code == 404


def test_reads_never_write_a_crawl_of_every_page_and_get_route(app, client, r, redis_url, tmp_path) -> None:
    ids = make_failed(redis_url, "crawl", 3, tmp_path / "flag")
    ArqClient(redis_url, "crawl").enqueue([("add", (1, 2), {}), ("add", (3, 4), {"_defer_by": 3600})])
    report = time.strftime("%b-%d %H:%M:%S") + " j_complete=1 j_failed=3 j_retried=0 j_ongoing=0 queued=2"
    r.set("crawl:health-check", report, px=600_000)
    r.set("arq:result:undecodable", b"\x80\x04junk", px=600_000)
    before = redis_digest(r)
    monitor = app.extensions["queuewatch.monitor"]
    monitor.snapshot(max_age=0)
    monitor.maintain(budget_seconds=1.0)  # the sampler's upkeep reads only
    settle(app)
    qp = q_path("crawl")
    urls = [
        "/", "/workers", f"/queues/{qp}", f"/queues/{qp}?fragment=counts", f"/queues/{qp}?fragment=failed",
        f"/queues/{qp}?limit=1", "/api/v1/backends", "/api/v1/queues", f"/api/v1/queues/{qp}", "/api/v1/workers",
        f"/api/v1/queues/{qp}/failed", f"/api/v1/queues/{qp}/failed?limit=1", "/metrics", "/healthz",
        f"/queues/{qp}/jobs/missing", f"/api/v1/queues/{qp}/jobs/missing", f"/queues/{q_path('missing-queue')}",
        f"/queues/{qp}/jobs/undecodable", f"/api/v1/queues/{q_path('arq:queue')}/jobs/undecodable",
    ] + [f"/queues/{qp}/jobs/{i}" for i in ids] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]  # fmt: skip
    api = client.get(f"/api/v1/queues/{qp}/failed?limit=1").get_json()
    urls.append(f"/api/v1/queues/{qp}/failed?limit=1&cursor={quote(api['next_cursor'])}")
    for url in urls:
        assert client.get(url).status_code < 500, url
        assert client.get(url, headers={"HX-Request": "true"}).status_code < 500, url
    assert redis_digest(r) == before


def test_a_result_that_is_not_a_pickle_arq_wrote_is_shown_with_its_size(app, client, r) -> None:
    r.set("arq:result:junk", pickle.dumps(["not", "a", "dict"]))
    r.set("arq:result:garbage", b"\xff\xfe garbage \x00" * 10)
    settle(app)
    for job_id in ("junk", "garbage"):
        answer = client.get(f"/api/v1/queues/{q_path('arq:queue')}/jobs/{job_id}")
        assert answer.status_code == 200 and "bytes" in answer.get_json()["args_preview"]


def test_the_sampler_finds_failed_jobs_and_page_views_never_scan(app, client, r, redis_url, tmp_path) -> None:
    make_failed(redis_url, "sampled", 3, tmp_path / "flag")
    ArqClient(redis_url, "sampled").enqueue([("add", (1, 1), {})])
    for _ in range(3):  # page views read the index; they do not scan for results
        assert client.get(f"/api/v1/queues/{q_path('sampled')}").get_json()["failed"] == 0
    assert "partial" in client.get(f"/queues/{q_path('sampled')}").get_data(as_text=True)
    sampler = app.extensions["queuewatch.sampler"]
    sampler.tick()  # snapshot, then upkeep: the scan finds the failures
    assert client.get(f"/api/v1/queues/{q_path('sampled')}").get_json()["failed"] == 3
    assert "partial" not in client.get(f"/queues/{q_path('sampled')}").get_data(as_text=True)
