"""The state store's contract, run against every implementation: SQLite (the
default) and Redis (shared by replicas; database 8 here)."""

from __future__ import annotations

import inspect
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from conftest import REDIS_HOST, REDIS_PORT, require_service

from queuewatch.snapshots import history

from queuewatch.adapters import store as state
from queuewatch.adapters.base import QueueStats, Worker
from queuewatch.adapters.store.redis_store import RedisStateStore
from queuewatch.snapshots.monitor import BackendStatus, Snapshot
from queuewatch.snapshots.recorder import Recorder
from queuewatch.adapters.store import SQLiteStateStore, StateStore, open_store

STATE_DB = 8
STATE_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{STATE_DB}"
EMAILS = history.series_key("redis", "rq", "emails")
REPORTS = history.series_key("redis", "rq", "reports")


def payload(depth: int) -> bytes:
    return history.encode(history.sample(0, [depth]))


def snapshot(depth: int, failed: int) -> Snapshot:
    """A snapshot of one RQ queue, as the monitor would take it."""
    now = datetime.now(timezone.utc)
    emails = QueueStats("redis", "rq", "emails", depth, 1, 0, failed, 1, 2.5)
    worker = Worker("redis", "rq", "w1", "host", 1, ("emails",), "busy", True, now, None, successful_jobs=depth, failed_jobs=failed)
    up = BackendStatus("redis", "redis", "redis://x/0", "up", None, ("rq",))
    return Snapshot(now, (up,), (emails,), (worker,))


class StateStoreContract:
    """What every state store does. Subclasses provide a ``store`` fixture."""

    def test_settings_are_kept_and_the_first_default_wins(self, store: StateStore) -> None:
        assert store.get("missing") is None
        assert store.set_default("k", "first") == "first"
        assert store.set_default("k", "second") == "first"
        store.put("k", "third")
        assert store.get("k") == "third"
        assert state.secret_key(store) == state.secret_key(store)

    def test_operations_are_kept_newest_first_with_their_ids_and_the_oldest_go(self, store: StateStore) -> None:
        from queuewatch.adapters.store import OPERATIONS_KEEP as OPS_KEEP

        assert store.operation("nope") is None and store.operations(5) == []
        store.put_operation("a", 1.0, '{"v": 1}')
        store.put_operation("b", 2.0, '{"v": 2}')
        store.put_operation("a", 1.0, '{"v": 3}')  # replaced in place: creation time unchanged
        assert store.operations(5) == ['{"v": 2}', '{"v": 3}'] and store.operation("a") == '{"v": 3}'
        store.put_operation_ids("a", 0, "0\nx\ny")
        store.put_operation_ids("a", 1, "0\nz")
        store.put_operation_ids("a", 1, "0\nw")
        assert (store.operation_ids("a", 0), store.operation_ids("a", 1), store.operation_ids("a", 2)) == ("0\nx\ny", "0\nw", None)
        store.drop_operation_ids("a")
        assert store.operation_ids("a", 0) is None and store.operation("a") == '{"v": 3}'
        store.put_operation_ids("b", 0, "0\nkept")
        for n in range(OPS_KEEP):
            store.put_operation(f"new{n}", 10.0 + n, "{}")
        assert store.operation("a") is None and store.operation("b") is None and store.operation_ids("b", 0) is None  # the oldest went, ids too
        assert len(store.operations(OPS_KEEP + 10)) == OPS_KEEP

    def test_one_holder_at_a_time_and_the_lease_expires(self, store: StateStore) -> None:
        holder, left = store.acquire_lease("sampler", "a", ttl=0.4)
        assert holder == "a" and 0.3 < left <= 0.41
        assert store.acquire_lease("sampler", "b", ttl=0.4)[0] == "a"
        assert store.acquire_lease("sampler", "a", ttl=0.4)[0] == "a"  # renewed
        assert store.lease("sampler")[0] == "a"
        time.sleep(0.5)
        assert store.lease("sampler") == (None, 0.0)
        assert store.acquire_lease("sampler", "b", ttl=5)[0] == "b"
        store.release_lease("sampler", "a")  # not a's to release
        assert store.lease("sampler")[0] == "b"
        store.release_lease("sampler", "b")
        assert store.acquire_lease("sampler", "c", ttl=5)[0] == "c"

    def test_racing_contenders_elect_exactly_one(self, store: StateStore) -> None:
        winners: list[str] = []
        start = threading.Barrier(8)

        def contend(name: str) -> None:
            start.wait()
            if store.acquire_lease("race", name, ttl=5)[0] == name:
                winners.append(name)

        threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1

    def test_points_are_appended_once_per_time_and_read_by_range(self, store: StateStore) -> None:
        written = store.add_points("raw", [(EMAILS, 1000, payload(1)), (EMAILS, 2000, payload(2)), (REPORTS, 1000, payload(9))])
        assert written == 3
        assert store.add_points("raw", [(EMAILS, 2000, payload(99)), (EMAILS, 3000, payload(3))]) == 1
        assert store.points("raw", [EMAILS], 0, 10_000) == {EMAILS: [(1000, payload(1)), (2000, payload(2)), (3000, payload(3))]}
        assert store.points("raw", [EMAILS], 1000, 3000) == {EMAILS: [(2000, payload(2))]}  # exclusive bounds
        assert store.points("raw", None, 0, 10_000)[REPORTS] == [(1000, payload(9))]
        assert store.points("1m", None, 0, 10_000) == {}
        assert store.points("raw", ["nobody"], 0, 10_000) == {}
        assert store.series() == sorted([EMAILS, REPORTS])

    def test_tiers_are_separate_and_pruning_drops_only_old_points(self, store: StateStore) -> None:
        store.add_points("raw", [(EMAILS, t, payload(t)) for t in (1000, 2000, 3000)])
        store.add_points("1m", [(EMAILS, 60, payload(7)), (REPORTS, 60, payload(8))])
        assert store.prune("raw", 2500) == 2
        assert store.points("raw", None, 0, 10_000) == {EMAILS: [(3000, payload(3000))]}
        assert store.points("1m", [EMAILS], 0, 10_000) == {EMAILS: [(60, payload(7))]}
        store.prune("1m", 61)
        assert store.forget_empty_series() == 1
        assert store.series() == [EMAILS]

    def test_any_queue_name_is_a_series(self, store: StateStore) -> None:
        names = ["a/b", "with space", "ünï", 'q"x', "x:y", "rq:queue:z"]
        store.add_points("raw", [(history.series_key("r", "rq", n), 5, payload(i)) for i, n in enumerate(names)])
        found = store.points("raw", None, 0, 10)
        assert {history.series_parts(k)[2] for k in found} == set(names)

    def test_a_recorder_writes_rolls_up_and_reads_back_through_the_store(self, store: StateStore) -> None:
        recorder = Recorder(store, interval=5)
        start = 1_000 * history.HOUR_MS
        for i in range(30):  # two and a half minutes of samples
            recorder.record(snapshot(depth=100 - i, failed=i), start + i * 5000)
        assert store.get("history.rolled.1m") == str(start + 2 * history.MINUTE_MS)
        minutes = store.points("1m", [EMAILS], 0, start + history.HOUR_MS)[EMAILS]
        assert [history.decode(t, p).stats[0] for t, p in minutes] == [history.Stat(89, 100, 89), history.Stat(77, 88, 77)]
        reading = recorder.read([EMAILS], minutes=3, until=start + 29 * 5000)
        depths = [b.value(0) for b in reading.series[EMAILS]]
        assert depths[-1] == 71 and len(depths) == 30

    def test_alert_rules_are_kept_replaced_and_removed(self, store: StateStore) -> None:
        assert store.alert_rules() == {}
        store.put_alert_rule('["redis","rq","emails"]', '{"max_depth": 5}')
        store.put_alert_rule('["redis","rq","emails"]', '{"max_depth": 7}')
        store.put_alert_rule('["*","*","*"]', '{"max_depth": 100}')
        assert store.alert_rules() == {'["*","*","*"]': '{"max_depth": 100}', '["redis","rq","emails"]': '{"max_depth": 7}'}
        assert store.delete_alert_rule('["redis","rq","emails"]') is True
        assert store.delete_alert_rule('["redis","rq","emails"]') is False
        assert list(store.alert_rules()) == ['["*","*","*"]']

    def test_alert_states_are_written_and_dropped_together(self, store: StateStore) -> None:
        store.put_alert_states({"a": "1", "b": "2"}, [])
        store.put_alert_states({"b": "3", "c": "4"}, ["a", "never"])
        assert store.alert_states() == {"b": "3", "c": "4"}
        store.put_alert_states({}, [])
        assert store.alert_states() == {"b": "3", "c": "4"}

    def test_alert_history_is_updated_in_place_and_bounded(self, store: StateStore) -> None:
        for i in range(7):
            store.record_alert(f"e{i}", 1000 + i, f"firing {i}", keep=5)
        store.record_alert("e6", 1006, "resolved 6", keep=5)
        assert store.alert_history(limit=10) == ["resolved 6", "firing 5", "firing 4", "firing 3", "firing 2"]
        assert store.alert_history(limit=2) == ["resolved 6", "firing 5"]

    def test_a_notification_is_claimed_by_exactly_one_of_racing_replicas(self, store: StateStore) -> None:
        winners: list[str] = []
        start = threading.Barrier(8)

        def claim(name: str) -> None:
            start.wait()
            if store.claim("emails#1.2", name):
                winners.append(name)

        threads = [threading.Thread(target=claim, args=(f"p{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert store.claim("emails#1.2", "late") is False
        assert store.claim("emails#1.3", "late") is True


    def test_audit_entries_are_kept_in_order_and_paged_newest_first(self, store: StateStore) -> None:
        assert store.audit(10) == []
        ids = [store.add_audit(f'{{"n": {i}, "text": "<b>\u00e9"}}') for i in range(5)]
        assert len(set(ids)) == 5
        first = store.audit(2)
        assert [entry for _, entry in first] == ['{"n": 4, "text": "<b>\u00e9"}', '{"n": 3, "text": "<b>\u00e9"}']
        assert [i for i, _ in first] == ids[:2:-1][:2]
        rest = store.audit(10, first[-1][0])
        assert [i for i, _ in rest] == [ids[2], ids[1], ids[0]]
        assert store.audit(10, ids[0]) == []
        with pytest.raises(ValueError):
            store.audit(10, "not-a-cursor")


def fill_to_retention(store: StateStore, queues: int, poll: float = 5.0) -> None:
    """Every tier full, written in time order as the recorder writes, for queues
    whose every metric changes all the time: the worst case."""
    rng = random.Random(7)
    now = 2_000_000_000_000

    def values() -> list[float]:
        return [rng.randint(0, 5000), rng.randint(0, 40), rng.randint(0, 100), rng.randint(0, 100_000),
                rng.randint(0, 40), rng.random() * 3600, rng.random() * 600, rng.random() * 20]  # fmt: skip

    times = sorted(((t, tier) for tier in history.TIERS for t in range(now - tier.keep_ms, now, tier.step_ms or int(poll * 1000))),
                   key=lambda pair: pair[0])
    keys = [history.series_key("redis", "rq", f"queue-{q:04d}") for q in range(queues)]
    batches: dict[str, list] = {tier.name: [] for tier in history.TIERS}
    for t, tier in times:
        if tier.step_ms:
            buckets = [history.fold([history.sample(t, values()) for _ in range(3)], t, history.QUEUE_METRICS) for _ in keys]
        else:
            buckets = [history.sample(t, values(), 9) for _ in keys]
        batch = batches[tier.name]
        batch += [(key, t, history.encode(b)) for key, b in zip(keys, buckets)]
        if len(batch) >= 100 * queues:  # still one time after another, as ticks write them
            store.add_points(tier.name, batch)
            batch.clear()
    for name, batch in batches.items():
        store.add_points(name, batch)


class TestSQLiteStateStore(StateStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStateStore:
        return SQLiteStateStore(tmp_path / "state.sqlite3")

    def test_a_busy_queues_full_history_stays_within_the_documented_size(self, store: SQLiteStateStore) -> None:
        def checkpointed_size() -> int:
            with sqlite3.connect(store.path) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
            return store.size_bytes()

        empty = checkpointed_size()  # the schema's own pages (every table and index), whatever the queues
        fill_to_retention(store, queues=2)
        per_queue = (checkpointed_size() - empty) / 2
        assert per_queue < 620_000, per_queue  # docs/architecture.md: about 0.57 MB per busy queue

    def test_it_is_the_default_and_survives_reopening(self, tmp_path: Path) -> None:
        first = open_store(tmp_path / "s.sqlite3")
        assert isinstance(first, SQLiteStateStore)
        first.add_points("raw", [(EMAILS, 1, payload(1))])
        assert open_store(str(tmp_path / "s.sqlite3")).points("raw", None, 0, 2) == {EMAILS: [(1, payload(1))]}


class TestRedisStateStore(StateStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RedisStateStore]:
        require_service(REDIS_PORT, "Redis")
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=STATE_DB)
        client.flushdb()
        store = open_store(STATE_URL)
        assert isinstance(store, RedisStateStore)
        yield store
        store.close()
        client.flushdb()
        client.close()

    def test_a_busy_queues_full_history_stays_within_the_documented_size(self, store: RedisStateStore) -> None:
        fill_to_retention(store, queues=2)
        per_queue = store.memory_bytes() / 2
        assert per_queue < 640_000, per_queue  # docs/architecture.md: about 0.60 MB per busy queue

    def test_every_key_is_under_the_prefix(self, store: RedisStateStore) -> None:
        store.put("k", "v")
        store.acquire_lease("sampler", "a", ttl=5)
        store.add_points("raw", [(EMAILS, 1, payload(1))])
        assert all(key.startswith(b"queuewatch:") for key in store.client.keys("*"))


def test_every_store_implements_the_whole_interface() -> None:
    wanted = {name for name, _ in inspect.getmembers(StateStore, inspect.isfunction) if not name.startswith("_")}
    for cls in (SQLiteStateStore, RedisStateStore):
        assert wanted <= {name for name in dir(cls) if not name.startswith("_")}, cls
        for name in wanted:
            expected = list(inspect.signature(getattr(StateStore, name)).parameters)
            assert list(inspect.signature(getattr(cls, name)).parameters) == expected, (cls, name)


def test_an_unknown_state_url_is_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        open_store("postgres://db/queuewatch")
