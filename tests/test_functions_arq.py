"""Per-function metrics from a real Arq worker: counts and runtimes equal Arq's own job
results (start_time, finish_time, success); a restart counts nothing twice."""

from __future__ import annotations

import math
import time

import pytest
from test_arq_adapter import ArqClient, run_arq_worker

from queuewatch import create_app
from queuewatch.functions.sketch import RELATIVE_ERROR

pytestmark = pytest.mark.redis_db(13)
SLEEPS = [round(0.05 * i, 2) for i in range(1, 11)]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def make_app(redis_url, tmp_path):
    return create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                       "POLL": 1.0})  # fmt: skip


def tick(app) -> int:
    """What the sampler does each tick: the snapshot, the upkeep (the index's scan, run to the end here), the timings."""
    monitor = app.extensions["queuewatch.monitor"]
    monitor.refresh()
    monitor.adapter("redis", "arq").settle()
    return app.extensions["queuewatch.functions"].collect(int(time.time() * 1000) // 1000 * 1000)


def test_counts_and_runtimes_equal_arqs_results_and_a_restart_counts_nothing_twice(redis_url, tmp_path) -> None:
    client = ArqClient(redis_url, "fn:arq")
    ids = client.enqueue([("sleep", (s,), {}) for s in SLEEPS] + [("fail_with", ("boom",), {}) for _ in range(2)])
    run_arq_worker(redis_url, "fn:arq")
    results = [client.result_info(i) for i in ids]
    assert [r.success for r in results] == [True] * 10 + [False] * 2
    app = make_app(redis_url, tmp_path)
    try:
        assert tick(app) == 12
        rows = {r["function"]: r for r in app.test_client().get("/api/v1/functions?minutes=60").get_json()["functions"]}
        sleep, fail = rows["sleep"], rows["fail_with"]
        assert (sleep["processed"], sleep["failed"], fail["processed"], fail["failed"]) == (10, 0, 2, 2)
        assert sleep["queue"] == "fn:arq" and sleep["system"] == "arq"
        runtimes = [(r.finish_time - r.start_time).total_seconds() for r in results[:10]]
        waits = [(r.start_time - r.enqueue_time).total_seconds() for r in results[:10]]
        for field, values, q in (("runtime_p50_seconds", runtimes, 0.5), ("runtime_p95_seconds", runtimes, 0.95),
                                 ("wait_p50_seconds", waits, 0.5)):  # fmt: skip
            true = nearest_rank(values, q)
            assert abs(sleep[field] - true) <= RELATIVE_ERROR * true + 2e-3, (field, sleep[field], sorted(values))
        time.sleep(1)
        assert tick(app) == 0  # read again by the scan: not counted again
    finally:
        app.extensions["queuewatch.monitor"].close()
    again = make_app(redis_url, tmp_path)  # a new process: its index decodes every result again
    try:
        time.sleep(1)
        assert tick(again) == 0
        client.enqueue([("sleep", (0.01,), {})])
        run_arq_worker(redis_url, "fn:arq")
        time.sleep(1)
        assert tick(again) == 1
        rows = {r["function"]: r for r in again.test_client().get("/api/v1/functions?minutes=60").get_json()["functions"]}
        assert rows["sleep"]["processed"] == 11 and rows["fail_with"]["failed"] == 2
    finally:
        again.extensions["queuewatch.monitor"].close()
