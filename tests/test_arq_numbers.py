"""Arq numbers at the moments they are hard: just after a dashboard restart, after a
``kill -9`` of a worker (issue 15)."""

from __future__ import annotations

import pytest
from conftest import get_json, serve_queuewatch, wait_for, wait_for_samples
from test_arq_adapter import ArqClient, arq_worker, failed_results, run_arq_worker
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
                 == ["firing"], 30, what="the alert to fire")  # fmt: skip
