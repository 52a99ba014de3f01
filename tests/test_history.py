"""History's pure rules: downsampling keeps min/max/last, tiers, reading plans,
rates from counter deltas, the lease's timing. No Redis, no Flask."""

from __future__ import annotations


import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuewatch.snapshots import history, lease
from queuewatch.snapshots.history import (
    MINUTE_MS, QUEUE_METRICS, TIERS, TIER_BY_NAME, QueueCounts, RateSource, Stat, WorkerCounts,
)  # fmt: skip

DEPTH = QUEUE_METRICS.index("depth")
RATE = QUEUE_METRICS.index("processed_per_minute")


def queue_sample(t: int, depth: float | None, rate: float | None = None) -> history.Bucket:
    values = [None] * len(QUEUE_METRICS)
    values[DEPTH], values[RATE] = depth, rate
    return history.sample(t, values)


def test_downsampling_keeps_min_max_and_last_so_a_spike_survives() -> None:
    depths = [5, 7, 900, 6, 4, 3]  # a spike of 900 for one 5-second sample
    raw = [queue_sample(10 * MINUTE_MS + i * 5000, d) for i, d in enumerate(depths)]
    [bucket] = history.downsample(raw, MINUTE_MS, QUEUE_METRICS)
    assert bucket.t == 10 * MINUTE_MS and bucket.n == 6
    assert bucket.stats[DEPTH] == Stat(min=3, max=900, value=3)


def test_downsampling_averages_rates_weighted_by_samples() -> None:
    raw = [queue_sample(i * 10_000, 1, rate) for i, rate in enumerate([60.0, 0.0, 30.0])]
    [bucket] = history.downsample(raw, MINUTE_MS, QUEUE_METRICS)
    assert bucket.stats[RATE] == Stat(min=0.0, max=60.0, value=30.0)
    merged = history.fold([bucket, queue_sample(MINUTE_MS, 1, 90.0)], 0, QUEUE_METRICS)
    assert merged.stats[RATE].value == pytest.approx((30.0 * 3 + 90.0) / 4)


def test_buckets_are_aligned_and_unknown_values_stay_unknown() -> None:
    raw = [queue_sample(t, d) for t, d in [(59_000, 1), (60_000, None), (61_000, 2), (185_000, 4)]]
    buckets = history.downsample(raw, MINUTE_MS, QUEUE_METRICS)
    assert [b.t for b in buckets] == [0, MINUTE_MS, 3 * MINUTE_MS]
    assert [b.value(DEPTH) for b in buckets] == [1, 2, 4]
    assert history.downsample([queue_sample(0, None)], MINUTE_MS, QUEUE_METRICS)[0].stats[DEPTH] is None


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=200))
def test_rolling_up_twice_equals_rolling_up_once(depths: list[int]) -> None:
    raw = [queue_sample(i * 5000, d) for i, d in enumerate(depths)]
    via_minutes = history.downsample(history.downsample(raw, MINUTE_MS, QUEUE_METRICS), 10 * MINUTE_MS, QUEUE_METRICS)
    direct = history.downsample(raw, 10 * MINUTE_MS, QUEUE_METRICS)
    assert [(b.t, b.n, b.stats[DEPTH]) for b in via_minutes] == [(b.t, b.n, b.stats[DEPTH]) for b in direct]
    assert max(b.stats[DEPTH].max for b in direct) == max(depths)
    assert direct[-1].value(DEPTH) == depths[-1]


def same(a: history.Bucket, b: history.Bucket) -> bool:
    """Equal, with fractions to the seven significant digits the codec keeps."""
    if (a.t, a.n, a.flags, len(a.stats)) != (b.t, b.n, b.flags, len(b.stats)):
        return False
    for x, y in zip(a.stats, b.stats):
        if (x is None) != (y is None):
            return False
        if x is not None and not all(u == pytest.approx(v, rel=1e-6) for u, v in zip((x.min, x.max, x.value), (y.min, y.max, y.value))):
            return False
    return True


@given(st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(-1e9, 1e9)), min_size=1, max_size=10),
       st.integers(0, 2**45), st.integers(0, 63))  # fmt: skip
def test_the_codec_round_trips_whole_numbers_exactly_and_fractions_to_seven_digits(values: list, t: int, flags: int) -> None:
    bucket = history.sample(t, values, flags)
    assert same(history.decode(t, history.encode(bucket)), bucket)
    folded = history.fold([bucket, history.sample(t + 1, [None if v is None else v + 1 for v in values])], t, ["x"] * len(values))
    assert same(history.decode(t, history.encode(folded)), folded)
    whole = history.sample(t, [v for v in values if isinstance(v, int)])
    assert history.decode(t, history.encode(whole)) == whole
    assert history.decode(0, history.encode(history.sample(0, [2.5, 0.125, 3600.5]))).stats[0].value == 2.5


def test_an_idle_queue_costs_a_few_bytes_per_point() -> None:
    assert len(history.encode(history.sample(0, [0, 0, 0, 12, 2, None, 0.0, 0.0]))) <= 12


def test_thinning_folds_neighbours_and_keeps_the_spike() -> None:
    raw = [queue_sample(i * 5000, 900 if i == 301 else 1) for i in range(720)]
    thinned = history.thin(raw, 60, QUEUE_METRICS)
    assert len(thinned) == 60
    assert max(b.stats[DEPTH].max for b in thinned) == 900
    assert thinned[-1] == raw[-1]  # the newest sample as it is: clients continue after it
    assert history.thin(raw[:10], 60, QUEUE_METRICS) == raw[:10]
    # An hour of minutes and this minute's raw samples: about one point a minute.
    mixed = [queue_sample(i * MINUTE_MS, 1) for i in range(60)] + [queue_sample(60 * MINUTE_MS + i * 5000, 2) for i in range(12)]
    assert 55 <= len(history.thin(mixed, 60, QUEUE_METRICS)) <= 60


@pytest.mark.parametrize(
    "minutes, poll, tier",
    [(15, 5, "raw"), (60, 5, "raw"), (360, 5, "1m"), (1440, 5, "1m"), (7 * 1440, 5, "10m"), (90 * 1440, 5, "1h"),
     (60, 0.5, "1m"), (15, 0.5, "raw")],
)  # fmt: skip
def test_each_range_reads_the_finest_tier_that_holds_it(minutes, poll, tier) -> None:
    assert history.choose_tier(minutes, poll).name == tier


def test_each_tier_keeps_at_least_a_bucket_of_the_next() -> None:
    for finer, coarser in zip(TIERS, TIERS[1:]):
        assert finer.keep_ms >= 2 * coarser.step_ms
        assert coarser.step_ms % (finer.step_ms or 1) == 0


def test_a_range_is_read_from_its_tier_then_finer_tiers_since_their_last_rollup() -> None:
    hour = 60 * MINUTE_MS
    now = 100 * hour + 25 * MINUTE_MS + 7_000
    rolled = {"1m": 100 * hour + 25 * MINUTE_MS, "10m": 100 * hour + 20 * MINUTE_MS, "1h": 100 * hour}
    plan = history.plan_reads(TIER_BY_NAME["10m"], now - 7 * 24 * hour, now, rolled)
    assert [(tier.name, after, before) for tier, after, before in plan] == [
        ("10m", now - 7 * 24 * hour, rolled["10m"]),
        ("1m", rolled["10m"] - 1, rolled["1m"]),
        ("raw", rolled["1m"] - 1, now + 1),
    ]
    # Only what is newer than the client's last point, from the raw tier.
    assert [(t.name, a, b) for t, a, b in history.plan_reads(TIERS[0], now - 10_000, now, rolled)] == [("raw", now - 10_000, now + 1)]
    # Nothing rolled up yet: all from the raw samples.
    assert [t.name for t, _, _ in history.plan_reads(TIER_BY_NAME["1m"], now - 6 * hour, now, {})] == ["raw"]


def test_a_bucket_closes_when_its_time_is_over_and_the_finer_tier_is_complete() -> None:
    t = 12 * MINUTE_MS + 3_000
    assert history.closed_until(t, TIER_BY_NAME["1m"], None) == 12 * MINUTE_MS
    assert history.closed_until(t, TIER_BY_NAME["10m"], 12 * MINUTE_MS) == 10 * MINUTE_MS
    assert history.closed_until(t, TIER_BY_NAME["10m"], 9 * MINUTE_MS) == 0


def test_counter_increase_treats_a_drop_as_a_restart() -> None:
    assert history.increase(10, 25) == 15
    assert history.increase(1000, 4) == 4
    assert history.increase(None, 4) is None
    assert history.per_minute(15, 30) == 30.0


Q = ("redis", "rq", "emails")
OTHER = ("redis", "rq", "reports")


def rates(before_queues, before_workers, now_queues, now_workers, seconds=60):
    return history.queue_rates((0, before_queues, before_workers), (seconds * 1000, now_queues, now_workers))


def test_the_queues_own_counter_gives_exact_rates() -> None:
    r = rates({Q: QueueCounts(0, 100, 7)}, {}, {Q: QueueCounts(0, 160, 10)}, {})[Q]
    assert (r.processed, r.failed) == (60.0, 3.0)
    assert RateSource.split(r.flags) == (RateSource.QUEUE_COUNTER, RateSource.QUEUE_COUNTER)


def test_workers_serving_only_this_queue_give_exact_rates() -> None:
    w0 = {("redis", "rq", "w1"): WorkerCounts(("emails",), 50, 5), ("redis", "rq", "w2"): WorkerCounts(("emails",), 10, 0)}
    w1 = {("redis", "rq", "w1"): WorkerCounts(("emails",), 80, 6), ("redis", "rq", "w2"): WorkerCounts(("emails",), 12, 0)}
    r = rates({Q: QueueCounts(5)}, w0, {Q: QueueCounts(6)}, w1, seconds=30)[Q]
    assert (r.processed, r.failed) == (64.0, 2.0)
    assert RateSource.split(r.flags) == (RateSource.WORKER_COUNTERS, RateSource.WORKER_COUNTERS)


def test_a_worker_shared_by_queues_is_split_and_said_to_be_an_estimate() -> None:
    w0 = {("redis", "rq", "w"): WorkerCounts(("emails", "reports"), 0, 0)}
    w1 = {("redis", "rq", "w"): WorkerCounts(("emails", "reports"), 40, 4)}
    result = rates({Q: QueueCounts(0), OTHER: QueueCounts(0)}, w0, {Q: QueueCounts(3), OTHER: QueueCounts(1)}, w1)
    assert result[Q].processed == result[OTHER].processed == 20.0
    # Failures are attributed by the failed list's growth rather than split.
    assert (result[Q].failed, result[OTHER].failed) == (3.0, 1.0)
    assert RateSource.split(result[Q].flags) == (RateSource.SHARED_WORKERS, RateSource.FAILED_GROWTH)
    assert {RateSource.SHARED_WORKERS, RateSource.FAILED_GROWTH} <= RateSource.ESTIMATES


def test_worker_restarts_and_new_workers_do_not_make_spikes() -> None:
    key = ("redis", "rq", "w")
    restarted = rates({Q: QueueCounts(0)}, {key: WorkerCounts(("emails",), 5000, 0)}, {Q: QueueCounts(0)},
                      {key: WorkerCounts(("emails",), 12, 0)})[Q]  # fmt: skip
    assert restarted.processed == 12.0
    old = rates({Q: QueueCounts(0)}, {}, {Q: QueueCounts(0)}, {key: WorkerCounts(("emails",), 5000, 0, started_at=-1)})[Q]
    assert old.processed == 0.0  # its baseline is unknown: counted from the next reading
    new = rates({Q: QueueCounts(0)}, {}, {Q: QueueCounts(0)}, {key: WorkerCounts(("emails",), 9, 0, started_at=1)})[Q]
    assert new.processed == 9.0  # started since the last reading: counted from zero


def test_without_an_earlier_reading_or_any_counter_rates_are_unknown() -> None:
    first = history.queue_rates(None, (0, {Q: QueueCounts(1)}, {}))[Q]
    assert (first.processed, first.failed) == (None, None)
    blind = rates({Q: QueueCounts(None)}, {}, {Q: QueueCounts(None)}, {("redis", "rq", "w"): WorkerCounts(("emails",), None, None)})[Q]
    assert (blind.processed, blind.failed) == (None, None)
    assert RateSource.split(blind.flags) == (RateSource.UNKNOWN, RateSource.UNKNOWN)


def test_the_lease_outlives_one_interval_and_expires_within_two() -> None:
    for interval in (0.5, 1, 5, 60):
        assert interval < lease.lease_ttl(interval) < 2 * interval


def test_samples_are_stamped_with_their_intervals_start() -> None:
    assert lease.slot(12_345, 5000) == 10_000
    assert lease.slot(10_000, 5000) == 10_000


def test_the_holder_wakes_just_after_each_interval_starts_and_a_waiter_when_the_lease_expires() -> None:
    interval = 5.0
    for now in (1000.0, 1000.1, 1003.7, 1004.99):
        wake = now + lease.next_wakeup(now, interval, held=True, expires_in=None)
        assert 0 < (wake % interval) <= 0.06 and wake > now
    assert lease.next_wakeup(1001.0, interval, held=False, expires_in=1.5) == pytest.approx(1.52)
    assert lease.next_wakeup(1001.0, interval, held=False, expires_in=30) == pytest.approx(4.05)


def test_series_keys_name_any_queue_unambiguously() -> None:
    names = ["emails", "a/b", 'q"uote', "with,comma", "x\x1fy", "ünï"]
    keys = {history.series_key("redis", "rq", n) for n in names}
    assert len(keys) == len(names)
    for name in names:
        key = history.series_key("redis", "rq", name)
        assert history.series_parts(key) == ("redis", "rq", name)
        assert history.metrics_of(key) == QUEUE_METRICS
    assert history.metrics_of(history.series_key("redis")) == ("up",)
