"""Bulk operations say what they touched in words, show only on the queues they
touched, and never go stale once they end: the navigation's "N active" refreshes
itself, an ended operation shows absolute times (issue 15, item 9). Real RQ failures."""

from __future__ import annotations

import html
import re

import pytest
import rq
import rq_tasks
from conftest import csrf_token, run_rq_worker

from queuewatch.failures.fingerprint import fingerprint

pytestmark = pytest.mark.redis_db(9)


def run_operation(app) -> None:
    runner = app.extensions["queuewatch.runner"]
    while runner.step():
        pass


def fail_in(r, redis_url, queue: str, make, n: int) -> list[str]:
    q = rq.Queue(queue, connection=r)
    ids = [make(q, i).id for i in range(n)]
    run_rq_worker(redis_url, queue)
    return ids


def timeouts(q, i):
    return q.enqueue(rq_tasks.fail_with, f"upstream timed out after {i + 30} s")


def declines(q, i):
    return q.enqueue(rq_tasks.fail_unless_exists, "/nonexistent/flag", i)


def test_a_group_operation_is_described_in_words_and_shown_only_where_it_touched(app, client, r, redis_url) -> None:
    first = fail_in(r, redis_url, "fetch-a", timeouts, 3)
    fail_in(r, redis_url, "fetch-b", timeouts, 2)
    fail_in(r, redis_url, "unrelated", declines, 4)  # failing, but of another cause
    job = app.extensions["queuewatch.monitor"].adapter("redis", "rq").job("fetch-a", first[0])
    group = fingerprint(job.function, job.error_type, job.error_message)
    token = csrf_token(client)
    started = client.post("/operations", data={"csrf_token": token, "action": "requeue", "scope": "everywhere", "group": group})
    op_url = started.headers["Location"]
    run_operation(app)  # counting
    op = client.get("/api/v1/operations/" + op_url.rsplit("/", 1)[1]).get_json()
    assert len(op["targets"]) == 3 and op["total"] == 5
    title = "Requeue 5 jobs failing with RuntimeError in rq_tasks.fail_with, 2 queues"
    page = html.unescape(client.get(op_url).get_data(as_text=True))
    assert (
        f"<h2 data-operation-title>{title}</h2>" in page
        and group not in page.split("<h2 data-operation-title>")[1].split("</h2>")[0]
    )
    assert title in html.unescape(client.get("/operations").get_data(as_text=True))
    assert "fetch-a</a>" in page and "fetch-b</a>" in page and ">unrelated</a>" not in page.split("data-operation-title")[1]
    for queue, shown in (("fetch-a", True), ("fetch-b", True), ("unrelated", False)):
        queue_page = client.get(f"/queues/redis/rq/{queue}").get_data(as_text=True)
        assert ('id="operation-' in queue_page) is shown, queue


def test_a_filtered_single_queue_operation_reads_as_words_before_and_after_counting(app, client, r, redis_url) -> None:
    fail_in(r, redis_url, "emails", declines, 2)
    token = csrf_token(client)
    form = {
        "csrf_token": token,
        "action": "delete",
        "backend": "redis",
        "system": "rq",
        "queue": "emails",
        "exception": "FileNotFound",
    }
    op_url = client.post("/operations", data=form).headers["Location"]
    counting = html.unescape(client.get(op_url).get_data(as_text=True))
    assert "Delete jobs failing with FileNotFound, queue emails (rq on redis)" in counting
    run_operation(app)
    assert "Delete 2 jobs failing with FileNotFound, queue emails (rq on redis)" in html.unescape(
        client.get(op_url).get_data(as_text=True)
    )
    everything = client.post(
        "/operations", data={"csrf_token": token, "action": "requeue", "backend": "redis", "system": "rq", "queue": "emails"}
    )
    run_operation(app)
    assert "Requeue all 2 failed jobs of emails (rq on redis)" in html.unescape(
        client.get(everything.headers["Location"]).get_data(as_text=True)
    )


def test_the_active_count_refreshes_itself_and_an_ended_operation_shows_no_stale_ago(app, client, r, redis_url) -> None:
    fail_in(r, redis_url, "emails", declines, 3)
    token = csrf_token(client)
    op_url = client.post("/operations", data={"csrf_token": token, "action": "requeue", "backend": "redis", "system": "rq",
                                              "queue": "emails"}).headers["Location"]  # fmt: skip
    run_operation(app)
    nav = client.get("/workers").get_data(as_text=True)
    badge = re.search(r'<span id="active-ops"[^>]*>', nav).group(0)
    assert 'hx-get="/operations/active"' in badge and "data-refresh" in badge and 'data-active-ops="1"' in nav
    fragment = client.get("/operations/active", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<span id="active-ops"') and "1 active" in fragment
    live = client.get(op_url).get_data(as_text=True)
    assert "ago</time>" in live or "just now</time>" in live  # while active it refreshes, "ago" stays true
    assert client.post(f"{op_url}/confirm", data={"csrf_token": token, "total": "3"}).status_code == 303
    run_operation(app)
    done = client.get(op_url).get_data(as_text=True)
    assert "Done: 3 of 3 requeued" in done
    ended = done.split('class="operation')[1].split("</section>")[0]
    assert "hx-get" not in ended.split(">")[0]  # it no longer refreshes ...
    assert " ago</time>" not in ended and "just now</time>" not in ended  # ... so nothing on it is relative
    assert re.search(r"Started by \S+ <time[^>]*>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>, ended <time", ended)
    assert "active" not in client.get("/operations/active", headers={"HX-Request": "true"}).get_data(as_text=True).split(">", 1)[1]
