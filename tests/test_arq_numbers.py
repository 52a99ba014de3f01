"""Arq numbers at the moments they are hard: just after a dashboard restart, after a
``kill -9`` of a worker (issue 15)."""

from __future__ import annotations

import os
from datetime import datetime
import signal
import time
import urllib.parse
import urllib.request

import pytest
from conftest import get_json, serve_queuewatch, wait_for, wait_for_samples
from test_arq_adapter import ArqClient, arq_worker, failed_results, run_arq_worker, run_async
from test_numbers import failed_count, put_json


@pytest.mark.redis_db(11)
def test_a_restart_that_rebuilds_the_arq_failure_index_does_not_fire_new_failures(r, redis_url, tmp_path) -> None:
    """446 old failures, no traffic, a rule "more than 5 new failures in 60 s": restarting
    the dashboard (which learns the 446 by scanning) must not fire it, however the scan is paced."""
    queue = "arq:old-failures"
    client = ArqClient(redis_url, queue)
    client.enqueue([("fail_unless_exists", ("/no/such/flag", i), {}) for i in range(446)])
    run_arq_worker(redis_url, queue)
    assert len(failed_results(client)) == 446
    client.enqueue([("add", (1, 1), {"_defer_by": 3600})])  # the queue is there from the first sample on
    # A keyspace shared with other applications, as in production: the scan takes several samples.
    r.eval("for i = 1, 400000 do redis.call('SET', 'cache:' .. i, 'x') end", 0)
    path = "redis/arq/arq%3Aold-failures"
    args = ("--redis", redis_url, "--rabbitmq", "none", "--poll", "1")
    for start in range(2):
        with serve_queuewatch(tmp_path, *args) as base:
            if start == 0:
                put_json(base + f"/api/v1/alerts/rules/{path}", {"max_new_failures": 5, "failures_window_seconds": 60,
                                                                 "for_seconds": 0})  # fmt: skip
            wait_for(lambda: failed_count(base, path) == 446, 30, what="the index")
            wait_for_samples(base, path, 4)
            assert get_json(base + "/api/v1/alerts/history")["alerts"] == []
            [alert] = [a for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
            assert (alert["rule"], alert["state"]) == ("max_new_failures", "ok")
    # The window is real: six new failures while it runs fire it.
    with serve_queuewatch(tmp_path, *args) as base, arq_worker(redis_url, queue):
        wait_for_samples(base, path, 2)
        client.enqueue([("fail_unless_exists", ("/no/such/flag", i), {}) for i in range(6)])
        wait_for(lambda: [a["state"] for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
                 == ["firing"], 60, what="the alert to fire")  # fmt: skip


@pytest.mark.redis_db(12)
def test_a_killed_arq_worker_at_the_default_interval_is_unknown_not_alive(r, redis_url, tmp_path) -> None:
    """``kill -9`` of an arq worker that reports hourly (arq's default), looked at 8 minutes later:
    its health key still lives for 52 minutes, but it is no evidence of a live worker. Workers are
    unknown on every page, a min-workers rule says so, and "waiting, no workers" lists the queue."""
    queue = "arq:killed"
    key = queue + ":health-check"
    with arq_worker(redis_url, queue, health_interval=3600) as worker:
        wait_for(lambda: r.exists(key), 30, what="the worker's first health report")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    # What the operator found 8 minutes later: the dead worker's last report, its key alive for the rest of the hour.
    value = r.get(key).decode()
    stamp = time.strftime("%b-%d %H:%M:%S", time.localtime(time.time() - 480))  # arq writes local time, this format
    assert len(stamp) == value.index(" j_")
    r.set(key, stamp + value[len(stamp):], px=(3600 - 480) * 1000)
    ArqClient(redis_url, queue).enqueue([("add", (i, i), {}) for i in range(3)])
    path = "redis/arq/" + urllib.parse.quote(queue, safe="")
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        put_json(base + f"/api/v1/alerts/rules/{path}", {"min_workers": 1, "for_seconds": 0})
        wait_for_samples(base, path, 2)
        stats = get_json(base + f"/api/v1/queues/{path}")
        assert stats["depth"] == 3
        assert stats["workers"] is None
        assert "last report 8 min ago" in stats["workers_unknown"]
        assert "health_check_interval" in stats["workers_unknown"]
        [worker_row] = [w for w in get_json(base + "/api/v1/workers")["workers"] if queue in w["queues"]]
        assert (worker_row["state"], worker_row["alive"]) == ("unknown", False)
        [alert] = [a for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
        assert alert["rule"] == "min_workers"
        assert "last report 8 min ago" in alert["unknown"]
        unworked = get_json(base + "/api/v1/queues?state=no-workers")["queues"]
        assert [q["name"] for q in unworked] == [queue]
        with urllib.request.urlopen(base + "/?state=no-workers", timeout=10) as page:
            html = page.read().decode()
        assert queue in html and "unknown" in html
        with urllib.request.urlopen(base + f"/queues/{path}", timeout=10) as page:
            assert "last report 8 min ago" in page.read().decode()
        # A fresh report is evidence again: a live worker counts as 1 and the warning goes.
        with arq_worker(redis_url, queue, health_interval=30):
            wait_for(lambda: get_json(base + f"/api/v1/queues/{path}")["workers"] == 1, 30, what="a live worker")
            [alert] = [a for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
            wait_for(lambda: [a["unknown"] for a in get_json(base + "/api/v1/alerts")["alerts"] if a["queue"] == queue]
                     == [None], 30, what="the warning to go")  # fmt: skip


def arq_results(client: ArqClient) -> list:
    """Every result arq itself reports for the client's queue."""

    async def go():
        pool = await client._pool()
        try:
            return [i for i in await pool.all_job_results() if i.queue_name == client.queue]
        finally:
            await pool.aclose()

    return run_async(go())


@pytest.mark.redis_db(13)
def test_arq_throughput_is_counted_per_queue_from_its_results_and_a_restart_draws_no_spike(r, redis_url, tmp_path) -> None:
    """arq counts jobs only per worker, in a report written hourly by default: the charts drew 0 while
    jobs ran. Results name their queue; each is counted once, and what the first pass finds is the past."""
    queue = "arq:throughput"
    client = ArqClient(redis_url, queue)
    client.enqueue([("add", (i, i), {}) for i in range(30)])
    run_arq_worker(redis_url, queue)  # 30 results from before the dashboard started
    path = "redis/arq/" + urllib.parse.quote(queue, safe="")
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        def processed() -> int | None:  # the queue is known once the first pass has read its results
            found = [q for q in get_json(base + "/api/v1/queues?system=arq")["queues"] if q["name"] == queue]
            return found[0]["processed_total"] if found else None

        wait_for(lambda: processed() == 30, 30, what="the first pass")
        wait_for_samples(base, path, 3)
        client.enqueue([("add", (i, i), {}) for i in range(10)] + [("fail_unless_exists", ("/no/such", i), {}) for i in range(5)])
        run_arq_worker(redis_url, queue)
        done = len(arq_results(client))
        assert done == 45
        wait_for(lambda: processed() == done, 30, what="the new results")
        stats = get_json(base + f"/api/v1/queues/{path}")
        assert stats["failed_total"] == len([x for x in arq_results(client) if not x.success]) == 5
        wait_for_samples(base, path, 2)
        history = get_json(base + f"/api/v1/queues/{path}/history?minutes=60")
        points = [p for p in history["points"] if p.get("processed_per_minute") is not None]
        times = [datetime.fromisoformat(p["t"].replace("Z", "+00:00")).timestamp() for p in history["points"]]
        # Sum of rate x interval over the points: the 15 jobs run while it watched, none of the 30 before.
        by_time = dict(zip((p["t"] for p in history["points"]), times))
        ran = 0.0
        for before, point in zip(history["points"], history["points"][1:]):
            if point.get("processed_per_minute") is not None:
                ran += point["processed_per_minute"] * (by_time[point["t"]] - by_time[before["t"]]) / 60
        assert 14 <= ran <= 16, ran
        assert max(p["processed_per_minute"] for p in points) > 0
        assert history["rates"]["processed"]["source"] == "queue_counter" and not history["rates"]["processed"]["estimate"]
