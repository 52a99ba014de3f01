"""Viewers cannot load production Redis: searches and groupings that walk a
failed list share one budget per interval, whoever asks, so twenty viewers each
asking something new cost the monitored Redis what one such viewer does, and
the others are told "busy, try again" (503 with Retry-After), never a 500.

Counted with MONITOR on the test's database, against a real `queuewatch serve`."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import CommandCounter, serve_queuewatch

pytestmark = pytest.mark.redis_db(12)
JOBS = 3000


@pytest.fixture
def failed_registry(r) -> None:
    """3,000 failed RQ jobs, written the way RQ writes them (no worker: it would take minutes)."""
    now = time.time()
    with r.pipeline(transaction=False) as pipe:
        pipe.sadd("rq:queues", "rq:queue:load")
        for n in range(JOBS):
            pipe.hset(f"rq:job:j{n}", mapping={"status": "failed", "origin": "load", "description": f"tasks.work({n})",
                                               "ended_at": "2026-12-01T10:00:00.000000Z", "exc_info": f"RuntimeError: {n}"})  # fmt: skip
            pipe.zadd("rq:failed:load", {f"j{n}": now + 86400 + n})
        pipe.execute()


def searches(base: str, viewers: int, seconds: float) -> list[int]:
    """``viewers`` threads, each asking a new search as soon as the last answered, for ``seconds``."""
    statuses: list[int] = []
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    def viewer() -> None:
        while time.monotonic() < stop:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/queues/redis/rq/load/failed?q=needle-{next(counter)}", timeout=30) as a:
                    statuses.append(a.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                assert exc.code != 503 or exc.headers.get("Retry-After"), "a busy answer says when to try again"

    threads = [threading.Thread(target=viewer) for _ in range(viewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_twenty_viewers_searching_cost_what_one_does(tmp_path, redis_url, redis_db, failed_registry) -> None:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        searches(base, 1, 1)  # warm up: discovery, connections
        with CommandCounter(redis_db) as one:
            alone = searches(base, 1, 4)
        with CommandCounter(redis_db) as many:
            crowd = searches(base, 20, 4)
    assert set(alone + crowd) <= {200, 503} and 503 in crowd and 200 in crowd  # busy, never an error
    print("commands: one viewer", one.count, "twenty", many.count, "busy", crowd.count(503), "of", len(crowd))
    assert many.count <= 1.5 * one.count, (one.count, many.count)
