"""The shared cache behind "fifty viewers cost what one does" (pure logic, no backend)."""

from __future__ import annotations

import threading
import time

from queuewatch.snapshots.monitor import SharedCache


def test_values_are_computed_once_per_interval() -> None:
    cache = SharedCache(max_age=60)
    calls = []
    for _ in range(50):
        assert cache.get("k", lambda: calls.append(1) or len(calls)) == 1
    assert len(calls) == 1


def test_concurrent_first_readers_wait_for_one_computation() -> None:
    cache = SharedCache(max_age=60)
    calls, results = [], []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "value"

    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == ["value"] * 20


def test_while_a_slow_refresh_runs_readers_get_the_previous_value_at_once() -> None:
    cache = SharedCache(max_age=0.01)
    cache.put("k", "old")
    time.sleep(0.02)
    release = threading.Event()
    refresher = threading.Thread(target=lambda: cache.get("k", lambda: release.wait(5) and "new"))
    refresher.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert cache.get("k", lambda: "other") == "old"
    assert time.monotonic() - started < 0.5
    release.set()
    refresher.join()
    assert cache.get("k", lambda: "other", max_age=60) == "new"


def test_max_age_zero_always_recomputes_and_entries_are_bounded() -> None:
    cache = SharedCache(max_age=60, max_entries=3)
    assert cache.get("k", lambda: 1) == 1
    assert cache.get("k", lambda: 2, max_age=0) == 2
    for i in range(10):
        cache.put(i, i)
    assert len(cache._entries) == 3
