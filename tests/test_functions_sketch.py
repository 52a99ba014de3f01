"""The per-function sketch and its caps, as pure functions: quantiles within the stated
relative error, merging equal to adding everything to one sketch, the stored form round-trips,
and 5,000 distinct function names stay within the caps ("(other)")."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from queuewatch.functions import service
from queuewatch.functions.service import MAX_PER_QUEUE, MAX_SERIES, OTHER, Names
from queuewatch.functions.sketch import MAX_INDEX, RELATIVE_ERROR, FunctionStats, Histogram, bucket_of, merged

durations = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(st.lists(durations, min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
def test_a_quantile_is_within_the_relative_error_of_the_true_one(values, q) -> None:
    h = Histogram()
    for v in values:
        h.add(v)
    true = nearest_rank(values, q)
    assert abs(h.quantile(q) - true) <= RELATIVE_ERROR * true * (1 + 1e-9)
    assert h.max == max(values) and h.count == len(values)


@given(st.lists(st.lists(durations, max_size=50), min_size=1, max_size=8))
def test_merging_sketches_equals_one_sketch_of_everything(parts) -> None:
    whole, pieces = Histogram(), []
    for part in parts:
        piece = Histogram()
        for v in part:
            piece.add(v)
            whole.add(v)
        pieces.append(piece)
    combined = Histogram()
    for piece in pieces:
        combined.merge(piece)
    assert combined.counts == whole.counts and combined.count == whole.count and combined.max == whole.max
    assert math.isclose(combined.total, whole.total, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.booleans(), st.none() | durations, st.none() | durations), max_size=100))
def test_the_stored_form_round_trips_and_merges_exactly(jobs) -> None:
    stats = FunctionStats()
    for failed, runtime, wait in jobs:
        stats.add(failed, runtime, wait)
    back = FunctionStats.decode(stats.encode())
    assert (back.processed, back.failed, back.runtime.counts, back.wait.counts) == (
        stats.processed,
        stats.failed,
        stats.runtime.counts,
        stats.wait.counts,
    )
    twice = merged([back, FunctionStats.decode(stats.encode())])
    assert twice.processed == 2 * stats.processed and twice.runtime.count == 2 * stats.runtime.count


def test_what_no_bucket_holds_is_clamped_never_an_error() -> None:
    assert bucket_of(0) == bucket_of(-5) == bucket_of(float("nan")) == 0
    assert bucket_of(1e12) == MAX_INDEX
    h = Histogram()
    h.add(float("inf"))
    h.add(-1.0)  # a negative wait (clocks apart): counted as 0
    assert h.count == 1 and h.quantile(0.5) == 0.0
    assert Histogram().quantile(0.5) is None


def test_five_thousand_function_names_stay_within_the_caps() -> None:
    names = Names({})
    counted = {}
    for i in range(5_000):
        name = names.admit("redis", "rq", f"q{i % 3}", f"tasks.f{i}")
        counted[name] = counted.get(name, 0) + 1
    assert names.count <= MAX_SERIES
    per_queue = {q: len(v) for q, v in names.by_queue.items()}
    assert all(n == MAX_PER_QUEUE + 1 for n in per_queue.values()), per_queue  # 200 names + "(other)"
    assert counted[OTHER] == 5_000 - 3 * MAX_PER_QUEUE
    # Stable: the same name keeps its place after a restart (the names are kept in the store).
    again = Names(names.dump())
    assert again.admit("redis", "rq", "q0", "tasks.f0") == "tasks.f0"
    assert again.admit("redis", "rq", "q0", "tasks.f4999") == OTHER


def test_past_the_series_cap_jobs_are_dropped_not_kept(monkeypatch) -> None:
    monkeypatch.setattr(service, "MAX_SERIES", 10)
    names = Names({})
    admitted = [names.admit("redis", "rq", f"queue{i}", "f") for i in range(20)]
    assert admitted[:10] == ["f"] * 10 and admitted[10:] == [None] * 10 and names.count == 10
