"""Discovery is bounded: a Redis whose RQ queue set holds 100,000 bogus members
(leftovers, or a client writing there by mistake) costs the dashboard bounded
memory and time, the overview answers, the sampler keeps its lease, and the
backend says how many queues it left out."""

from __future__ import annotations

import time
import urllib.request

import pytest
from conftest import get_json, wait_for
from test_hostile_routes import rss_mib, worker_pid

pytestmark = pytest.mark.redis_db(13)


def test_a_hundred_thousand_bogus_queue_names_are_capped_and_said(tmp_path, redis_url, r) -> None:
    from conftest import start_queuewatch

    with r.pipeline(transaction=False) as pipe:
        for start in range(0, 100_000, 10_000):
            pipe.sadd("rq:queues", *(f"rq:queue:bogus-{n}" for n in range(start, start + 10_000)))
        pipe.execute()
    with start_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "2") as (base, proc):
        worker = worker_pid(proc.pid)
        started = time.monotonic()
        assert get_json(base + "/api/v1/backends")["backends"]  # type: ignore[index]
        assert time.monotonic() - started < 10

        def capped() -> list[str]:  # said from the first snapshot that has read the backend in full
            return [n for n in get_json(base + "/api/v1/backends")["backends"][0]["notes"] if "rq:queues holds" in n]

        [note] = wait_for(capped, 10, what="the note on the capped set")
        assert "100,000" in note and "10,000" in note and "90,000 are not" in note
        queues = get_json(base + "/api/v1/queues")["queues"]  # type: ignore[index]
        assert len(queues) == 10_000
        wait_for(lambda: get_json(base + "/api/v1/sampler")["this_process"], 10, what="the sampler's lease")  # type: ignore[index]
        for _ in range(3):  # a few snapshots: the overview answers, memory stays bounded, the lease stays put
            started = time.monotonic()
            with urllib.request.urlopen(base + "/", timeout=30) as page:
                assert page.status == 200 and b"Showing 1" in page.read()
            assert time.monotonic() - started < 10
            time.sleep(2)  # the next poll interval's snapshot
        assert rss_mib(worker) < 400, rss_mib(worker)  # 803 MB before the cap
        assert get_json(base + "/api/v1/sampler")["this_process"] is True  # type: ignore[index]
