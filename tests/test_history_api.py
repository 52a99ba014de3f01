"""The history API over real RQ data: what the sampler records, rates from a
real worker's counters, the shapes DESIGN.md promises, and history that
survives a restart. RQ data in Redis database 7."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import TESTS, get_json, redis_digest, rq_bin, run_rq_worker, serve_queuewatch

from queuewatch import create_app

from queuewatch.snapshots import lease

pytestmark = pytest.mark.redis_db(7)


@pytest.fixture
def app(redis_url: str, tmp_path):
    """The app with a 1-second poll: the sampler's interval decides which tier a range reads."""
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"],
                      "STATE": str(tmp_path / "state.sqlite3"), "POLL": 1})  # fmt: skip
    yield app
    app.extensions["queuewatch.monitor"].close()


def recent_slots(n: int, step: int = 5000) -> list[int]:
    """n sample times ending a few seconds ago, as the sampler would stamp them."""
    last = lease.slot(int(time.time() * 1000) - 2000, step)
    return [last - (n - 1 - i) * step for i in range(n)]


def tick(app, t: int) -> None:
    app.extensions["queuewatch.monitor"].changed()  # the test's own changes are seen at once
    app.extensions["queuewatch.sampler"].tick(t)


@contextmanager
def rq_worker(redis_url: str, *queues: str, name: str) -> Iterator[rq.Worker]:
    """A real, long-lived `rq worker` (its counters are what rates are made of)."""
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [rq_bin(), "worker", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker", "--name", name, *queues]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_each_sample_is_a_point_with_the_queues_counts(client, app, r, redis_url, tmp_path) -> None:
    q = rq.Queue("team/emails", connection=r)
    q.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), 1)
    run_rq_worker(redis_url, "team/emails")
    slots = recent_slots(4)
    for i, t in enumerate(slots):
        q.enqueue(rq_tasks.add, i, i)
        tick(app, t)
    path = f"/api/v1/queues/redis/rq/{quote('team/emails', safe='')}/history"
    answer = client.get(path + "?minutes=60").get_json()
    assert answer["tier"] == "raw" and answer["step_seconds"] == 1
    assert [(p["depth"], p["in_progress"], p["failed"]) for p in answer["points"]] == [(1, 0, 1), (2, 0, 1), (3, 0, 1), (4, 0, 1)]
    first = answer["points"][0]
    assert first["t"] == history_time(slots[0])
    assert {"scheduled", "workers", "oldest_age_seconds", "processed_per_minute", "failed_per_minute"} <= set(first)
    newer = client.get(path + f"?since={answer['points'][1]['t']}").get_json()["points"]
    assert [p["depth"] for p in newer] == [3, 4]
    assert client.get(path + f"?since={answer['points'][-1]['t']}").get_json()["points"] == []


def history_time(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t / 1000))


def test_one_request_answers_for_every_queue_and_backend(client, app, r) -> None:
    for name in ("a", "b"):
        rq.Queue(name, connection=r).enqueue(rq_tasks.add, 1, 1)
    for t in recent_slots(3):
        tick(app, t)
    # points=4000: every raw sample (fewer would read per-minute buckets when the samples straddle a minute)
    answer = client.get("/api/v1/history?minutes=30&fields=depth&points=4000").get_json()
    assert [(q["backend"], q["system"], q["name"]) for q in answer["queues"]] == [("redis", "rq", "a"), ("redis", "rq", "b")]
    assert all(set(p) == {"t", "depth"} and p["depth"] == 1 for q in answer["queues"] for p in q["points"])
    [backend] = answer["backends"]
    assert backend["name"] == "redis" and [p["up"] for p in backend["points"]] == [1, 1, 1]
    assert len(client.get("/api/v1/history?minutes=30&points=2").get_json()["queues"][0]["points"]) == 2
    # The overview's sparklines ask for their page's queues only: one request, whatever the number of rows.
    only_b = client.get("/api/v1/history?minutes=30&fields=depth&points=4000&series=redis/rq/b").get_json()
    assert [q["name"] for q in only_b["queues"]] == ["b"] and only_b["backends"] == []
    assert [q["name"] for q in client.get("/api/v1/history?series=redis/rq/a,redis/rq/b,redis/rq/gone").get_json()["queues"]] == ["a", "b"]


@pytest.mark.parametrize(
    "query, message",
    [("minutes=0", "minutes"), ("minutes=abc", "minutes"), ("minutes=200000", "90 days"), ("since=yesterday", "ISO 8601"),
     ("points=0", "points"), ("fields=depth,bogus", "bogus"), ("series=redis/rq", "backend/system/queue")],
)  # fmt: skip
def test_bad_history_requests_get_a_clear_400(client, r, query, message) -> None:
    rq.Queue("q", connection=r).enqueue(rq_tasks.add, 1, 1)
    for path in ("/api/v1/queues/redis/rq/q/history", "/api/v1/history"):
        if ("fields" in query or "series" in query) and path != "/api/v1/history":
            continue
        answer = client.get(f"{path}?{query}")
        assert answer.status_code == 400, (path, query)
        assert message in answer.get_json()["error"]["message"]


def test_history_of_a_queue_that_never_existed_is_404(client, r) -> None:
    rq.Queue("q", connection=r).enqueue(rq_tasks.add, 1, 1)
    assert client.get("/api/v1/queues/redis/rq/nope/history").status_code == 404
    assert client.get("/api/v1/queues/nobackend/rq/q/history").status_code == 404
    assert client.get("/api/v1/queues/redis/nosystem/q/history").status_code == 404
    assert client.get("/api/v1/queues/redis/rq/q/history").get_json()["points"] == []


def test_rates_come_from_a_real_workers_counters(client, app, r, redis_url, tmp_path) -> None:
    q = rq.Queue("rated", connection=r)
    with rq_worker(redis_url, "rated", name="rated-worker"):
        wait_until(lambda: r.sismember("rq:workers", "rq:worker:rated-worker"))
        t0, t1 = recent_slots(2, step=30_000)
        tick(app, t0)
        for i in range(5):
            q.enqueue(rq_tasks.add, i, i)
        q.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), 1)
        wait_until(lambda: int(r.hget("rq:worker:rated-worker", "successful_job_count") or 0) == 5
                   and int(r.hget("rq:worker:rated-worker", "failed_job_count") or 0) == 1)  # fmt: skip
        tick(app, t1)
    answer = client.get("/api/v1/queues/redis/rq/rated/history?minutes=5").get_json()
    latest = answer["points"][-1]
    assert (latest["processed_per_minute"], latest["failed_per_minute"]) == (12.0, 2.0)  # 6 and 1 in 30 s
    assert answer["rates"]["processed"] == {"source": "worker_counters", "estimate": False,
                                            "description": "the counters of the workers serving this queue"}  # fmt: skip
    assert answer["rates"]["failed"]["estimate"] is False


def test_a_worker_serving_several_queues_gives_estimates_and_says_so(client, app, r, redis_url, tmp_path) -> None:
    high, low = rq.Queue("high", connection=r), rq.Queue("low", connection=r)
    with rq_worker(redis_url, "high", "low", name="shared-worker"):
        wait_until(lambda: r.sismember("rq:workers", "rq:worker:shared-worker"))
        t0, t1 = recent_slots(2, step=60_000)
        tick(app, t0)
        for i in range(4):
            high.enqueue(rq_tasks.add, i, i)
        low.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), 1)
        wait_until(lambda: int(r.hget("rq:worker:shared-worker", "successful_job_count") or 0) == 4
                   and low.failed_job_registry.count == 1)  # fmt: skip
        tick(app, t1)
    high_answer = client.get("/api/v1/queues/redis/rq/high/history?minutes=5").get_json()
    low_answer = client.get("/api/v1/queues/redis/rq/low/history?minutes=5").get_json()
    # Five jobs done by one worker serving two queues: split evenly. Failures by the failed lists' growth.
    assert high_answer["points"][-1]["processed_per_minute"] == low_answer["points"][-1]["processed_per_minute"] == 2.5
    assert (high_answer["points"][-1]["failed_per_minute"], low_answer["points"][-1]["failed_per_minute"]) == (0, 1.0)
    assert high_answer["rates"]["processed"]["source"] == "shared_worker_counters"
    assert high_answer["rates"]["processed"]["estimate"] is True
    assert low_answer["rates"]["failed"] == {
        "source": "failed_list_growth", "estimate": True,
        "description": "growth of the failed list (requeues and deletes in the same interval hide failures)",
    }  # fmt: skip


def test_recording_and_reading_history_never_write_to_the_monitored_redis(client, app, r, redis_url, tmp_path) -> None:
    q = rq.Queue("quiet", connection=r)
    q.enqueue(rq_tasks.add, 1, 1)
    before = redis_digest(r)
    for t in recent_slots(3):
        tick(app, t)
    for url in ("/api/v1/history", "/api/v1/queues/redis/rq/quiet/history", "/api/v1/sampler", "/", "/queues/redis/rq/quiet"):
        assert client.get(url).status_code == 200, url
    assert redis_digest(r) == before


def test_history_survives_a_restart(tmp_path, r, redis_url) -> None:
    rq.Queue("durable", connection=r).enqueue(rq_tasks.add, 1, 1)
    args = ("--redis", redis_url, "--rabbitmq", "none", "--poll", "0.5")
    url = "/api/v1/queues/redis/rq/durable/history?minutes=10"
    with serve_queuewatch(tmp_path, *args) as base:
        wait_until(lambda: len(get_json(base + url)["points"]) >= 3, timeout=15)
        before = get_json(base + url)["points"]
    with serve_queuewatch(tmp_path, *args) as base:
        after = get_json(base + url)["points"]
        assert after[: len(before)] == before
        # The restarted process takes the lease at its first tick (the old one gave it up on SIGTERM).
        wait_until(lambda: get_json(base + "/api/v1/sampler")["this_process"], timeout=10)
        assert get_json(base + "/api/v1/sampler")["interval_seconds"] == 0.5


def test_the_queue_page_and_overview_carry_the_charts(client, r) -> None:
    rq.Queue("charted", connection=r).enqueue(rq_tasks.add, 1, 1)
    page = client.get("/queues/redis/rq/charted").get_data(as_text=True)
    assert 'data-history-url="/api/v1/queues/redis/rq/charted/history"' in page
    assert [f'data-range="{m}"' in page for m in (15, 60, 360, 1440, 10080)] == [True] * 5
    overview = client.get("/").get_data(as_text=True)
    assert 'data-history-url="/api/v1/history"' in overview
    assert 'hx-preserve data-series="redis/rq/charted"' in overview
    for html in (page, overview):
        assert "/static/vendor/plotly-basic.min.js" in html and "<script>" not in html
    with client.get("/static/vendor/plotly.css") as css:
        assert css.status_code == 200 and b".js-plotly-plot .plotly" in css.data
    assert "'unsafe-eval'" not in client.get("/").headers["Content-Security-Policy"]
