"""Per-function metrics from real RQ workers: the numbers equal what RQ itself recorded
(runtime = ended_at - started_at, wait = started_at - enqueued_at) within the sketch's
relative error; failures are counted; a restart neither counts twice nor shows a burst;
finished jobs that expire soon after are still counted; a page view reads no backend."""

from __future__ import annotations

import math
import subprocess
import threading
import time

import pytest
import rq
from conftest import CommandCounter, run_rq_worker, wait_for

from queuewatch import create_app
from queuewatch.functions.service import FunctionMetrics
from queuewatch.functions.sketch import MIN_VALUE, RELATIVE_ERROR

pytestmark = pytest.mark.redis_db(11)
SLEEPS = [round(0.02 * i, 2) for i in range(1, 21)]  # 20 jobs: 0.02 s ... 0.40 s


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def close(measured: float | None, true: float) -> bool:
    # The sketch's error, plus float32 storage and RQ's microsecond timestamps; below its resolution
    # (MIN_VALUE, 0.1 ms: a failing job on rq 3.0 takes ~70 us) a value reads as 0.
    if measured is not None and true < MIN_VALUE:
        return 0 <= measured <= MIN_VALUE
    return measured is not None and abs(measured - true) <= RELATIVE_ERROR * true + 1e-5


@pytest.fixture
def app(redis_url, tmp_path):
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                      "POLL": 1.0})  # fmt: skip
    yield app
    app.extensions["queuewatch.monitor"].close()


def collect(app, t: int | None = None) -> int:
    """One sampler tick's share: the snapshot (which finds the systems), then the timings."""
    app.extensions["queuewatch.monitor"].refresh()
    return app.extensions["queuewatch.functions"].collect(t if t is not None else int(time.time() * 1000) // 1000 * 1000)


def rq_timings(r, jobs) -> tuple[list[float], list[float]]:
    runtimes, waits = [], []
    for job in jobs:
        job.refresh()
        runtimes.append((job.ended_at - job.started_at).total_seconds())
        waits.append((job.started_at - job.enqueued_at).total_seconds())
    return runtimes, waits


def functions(client, **params) -> list[dict]:
    answer = client.get("/api/v1/functions", query_string={"minutes": 60, **params})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["functions"]


def test_runtimes_waits_and_failures_equal_what_rq_recorded(app, client, r, redis_url) -> None:
    q = rq.Queue("fn-emails", connection=r)
    jobs = [q.enqueue("rq_tasks.sleep", s) for s in SLEEPS]
    failing = [q.enqueue("rq_tasks.fail") for _ in range(3)]
    run_rq_worker(redis_url, "fn-emails")
    assert collect(app) == 23
    rows = {row["function"]: row for row in functions(client)}
    assert set(rows) == {"rq_tasks.sleep", "rq_tasks.fail"}
    sleep, fail = rows["rq_tasks.sleep"], rows["rq_tasks.fail"]
    assert (sleep["processed"], sleep["failed"], fail["processed"], fail["failed"]) == (20, 0, 3, 3)
    assert (sleep["backend"], sleep["system"], sleep["queue"]) == ("redis", "rq", "fn-emails")
    runtimes, waits = rq_timings(r, jobs)
    assert close(sleep["runtime_p50_seconds"], nearest_rank(runtimes, 0.5)), (sleep, sorted(runtimes))
    assert close(sleep["runtime_p95_seconds"], nearest_rank(runtimes, 0.95)), (sleep, sorted(runtimes))
    assert abs(sleep["runtime_max_seconds"] - max(runtimes)) < 1e-4 * max(runtimes) + 1e-6
    assert close(sleep["wait_p50_seconds"], nearest_rank(waits, 0.5)), (sleep, sorted(waits))
    assert close(sleep["wait_p95_seconds"], nearest_rank(waits, 0.95)), (sleep, sorted(waits))
    assert all(w >= s for w, s in zip(sorted(runtimes), sorted(SLEEPS)))  # what RQ recorded includes the sleep
    # The slowest p95 first; filters narrow; another queue's name finds nothing.
    assert [row["function"] for row in functions(client)][0] == "rq_tasks.sleep"
    assert [row["function"] for row in functions(client, system="rq", queue="fn-emails", backend="redis")] == [
        "rq_tasks.sleep",
        "rq_tasks.fail",
    ]
    assert functions(client, queue="elsewhere") == []
    failed_runtimes, _ = rq_timings(r, failing)
    assert close(fail["runtime_p50_seconds"], nearest_rank(failed_runtimes, 0.5))


def test_a_second_read_and_a_restart_count_nothing_twice(app, client, r, redis_url, tmp_path) -> None:
    q = rq.Queue("fn-restart", connection=r)
    for s in SLEEPS[:5]:
        q.enqueue("rq_tasks.sleep", s)
    q.enqueue("rq_tasks.fail")
    run_rq_worker(redis_url, "fn-restart")
    assert collect(app) == 6
    time.sleep(1)  # ticks are one poll interval (1 s) apart
    assert collect(app) == 0  # the cursor moved on
    # A new dashboard process on the same store: the cursor was persisted.
    again = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                        "POLL": 1.0})  # fmt: skip
    try:
        time.sleep(1)
        assert collect(again) == 0
        q.enqueue("rq_tasks.sleep", 0.01)
        run_rq_worker(redis_url, "fn-restart")
        time.sleep(1)
        assert collect(again) == 1
        rows = {row["function"]: row for row in functions(again.test_client())}
        assert rows["rq_tasks.sleep"]["processed"] == 6 and rows["rq_tasks.fail"]["failed"] == 1
    finally:
        again.extensions["queuewatch.monitor"].close()


def test_jobs_learned_at_start_up_are_placed_when_they_ended_not_as_a_burst(app, r, redis_url) -> None:
    q = rq.Queue("fn-backlog", connection=r)
    jobs = [q.enqueue("rq_tasks.sleep", 0.3) for _ in range(4)]
    run_rq_worker(redis_url, "fn-backlog")
    time.sleep(1.2)  # the dashboard starts later than the jobs ended
    t = int(time.time() * 1000) // 1000 * 1000
    assert collect(app, t) == 4
    store = app.extensions["queuewatch.store"]
    [(_, points)] = store.points("fn.raw", None, 0, t + 10_000).items()
    ended = sorted(int(j.ended_at.timestamp() * 1000) // 1000 * 1000 for j in (rq.job.Job.fetch(j.id, connection=r) for j in jobs))
    assert [ts for ts, _ in points] == sorted(set(ended))  # each in the interval it ended in
    assert all(ts < t for ts, _ in points)  # none in the interval of the first read


def test_finished_jobs_that_expire_soon_are_counted_when_the_sampler_keeps_up(r, redis_url, tmp_path) -> None:
    app = create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                      "POLL": 0.25})  # fmt: skip
    client = app.test_client()
    q = rq.Queue("fn-short", connection=r)
    jobs = [q.enqueue("rq_tasks.sleep", 0.05, result_ttl=1) for _ in range(15)]
    done = threading.Event()

    def work() -> None:
        try:
            run_rq_worker(redis_url, "fn-short")
        except subprocess.CalledProcessError:
            pass
        done.set()

    threading.Thread(target=work, daemon=True).start()
    counted = 0
    while not done.is_set():
        counted += collect(app, int(time.time() * 1000) // 250 * 250)
        time.sleep(0.3)  # a tick per poll interval (0.25 s), as the sampler does
    counted += collect(app, int(time.time() * 1000) // 250 * 250)  # the tick that follows the last job
    wait_for(lambda: not any(r.exists(f"rq:job:{j.id}") for j in jobs), 10, what="the finished jobs to expire")
    time.sleep(0.3)
    counted += collect(app, int(time.time() * 1000) // 250 * 250)
    try:
        assert counted == 15
        assert {row["function"]: row["processed"] for row in functions(client)} == {"rq_tasks.sleep": 15}
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_a_page_view_reads_no_backend(app, client, r, redis_url) -> None:
    q = rq.Queue("fn-page", connection=r)
    q.enqueue("rq_tasks.sleep", 0.01)
    run_rq_worker(redis_url, "fn-page")
    collect(app)
    client.get("/api/v1/functions")  # the first request may set up what every request shares
    with CommandCounter(r.connection_pool.connection_kwargs["db"]) as counter:
        page = client.get("/functions?minutes=60")
        chart = client.get("/functions?minutes=15&backend=redis&system=rq&queue=fn-page&function=rq_tasks.sleep")
        api = client.get("/api/v1/functions?minutes=10080")
        series = client.get("/api/v1/functions/series?minutes=60&backend=redis&system=rq&queue=fn-page&function=rq_tasks.sleep")
    assert counter.count == 0, counter.commands
    assert page.status_code == chart.status_code == api.status_code == series.status_code == 200
    assert "rq_tasks.sleep" in page.get_data(as_text=True) and "data-function-chart" in chart.get_data(as_text=True)
    assert [p["processed"] for p in series.get_json()["points"]] == [1]


def test_bad_requests_are_answered_400(client) -> None:
    assert client.get("/api/v1/functions?minutes=abc").status_code == 400
    assert client.get("/api/v1/functions?minutes=0").status_code == 400
    assert client.get("/api/v1/functions?queue=" + "x" * 600).status_code == 400
    assert client.get("/api/v1/functions/series?minutes=60&backend=redis").status_code == 400
    assert client.get("/functions?sort=nonsense").status_code == 400


def test_the_service_is_what_the_sampler_runs_each_tick(app) -> None:
    sampler = app.extensions["queuewatch.sampler"]
    assert any(getattr(c, "__self__", None) is app.extensions["queuewatch.functions"] for c in sampler.collectors)
    assert isinstance(app.extensions["queuewatch.functions"], FunctionMetrics)


def test_metrics_has_a_summary_per_function_with_bounded_labels(app, client, r, redis_url) -> None:
    q = rq.Queue("fn-metrics", connection=r)
    for s in (0.01, 0.02, 0.03):
        q.enqueue("rq_tasks.sleep", s)
    q.enqueue("rq_tasks.fail")
    run_rq_worker(redis_url, "fn-metrics")
    collect(app)
    text = client.get("/metrics").get_data(as_text=True)
    labels = 'backend="redis",function="rq_tasks.sleep",queue="fn-metrics",system="rq"'
    assert f"queuewatch_function_runtime_seconds_count{{{labels}}} 3.0" in text
    quantile = 'backend="redis",function="rq_tasks.sleep",quantile="0.95",queue="fn-metrics",system="rq"'
    assert f"queuewatch_function_runtime_seconds{{{quantile}}}" in text
    assert 'queuewatch_function_failed_total{backend="redis",function="rq_tasks.fail",queue="fn-metrics",system="rq"} 1.0' in text
    assert "queuewatch_function_dropped_total 0.0" in text
    assert "queuewatch_queue_depth" in text  # the snapshot's families are still there
