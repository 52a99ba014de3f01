"""History: what the sampler keeps of each snapshot, and how it is thinned.

Pure logic, no Flask and no I/O, shared by every state store: the retention
tiers, the point codec, downsampling that keeps min/max/last (so a spike
survives in a coarse tier), the plan for reading a time range across tiers,
and rates from counter deltas. ``recorder.py`` puts it to work. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import NamedTuple

import msgpack

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Tier:
    name: str
    step_ms: int  # 0: one point per sample, at the poll interval
    keep_ms: int


# Each tier is rolled up from the one before it when a bucket closes, so a
# tier must keep at least one bucket of the next. The ranges the queue page
# offers each read one tier: 15 m and 1 h raw, 6 h and 24 h at 1 minute,
# 7 d at 10 minutes; the API reads up to 90 days at 1 hour.
TIERS = (
    Tier("raw", 0, HOUR_MS),
    Tier("1m", MINUTE_MS, DAY_MS),
    Tier("10m", 10 * MINUTE_MS, 7 * DAY_MS),
    Tier("1h", HOUR_MS, 90 * DAY_MS),
)
TIER_BY_NAME = {tier.name: tier for tier in TIERS}
MAX_MINUTES = TIERS[-1].keep_ms // MINUTE_MS

QUEUE_METRICS = ("depth", "in_progress", "scheduled", "failed", "workers", "oldest_age_seconds",
                 "processed_per_minute", "failed_per_minute")  # fmt: skip
BACKEND_METRICS = ("up",)
# Rates are averaged when buckets are merged; every other metric keeps its last value.
MEAN_METRICS = frozenset({"processed_per_minute", "failed_per_minute"})


# -- series --------------------------------------------------------------------


def series_key(*parts: str) -> str:
    """The store's name for a series: ``["redis","rq","emails"]`` for a queue, ``["redis"]`` for a backend."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)


def series_parts(key: str) -> tuple[str, ...]:
    return tuple(json.loads(key))


def metrics_of(key: str) -> tuple[str, ...]:
    return QUEUE_METRICS if len(series_parts(key)) == 3 else BACKEND_METRICS


# -- points and buckets --------------------------------------------------------


class Stat(NamedTuple):
    """One metric over a bucket: ``value`` is the last sample's value (the mean for rates)."""

    min: float
    max: float
    value: float


@dataclass(frozen=True)
class Bucket:
    """A sample (``n`` = 1) or several folded together, starting at ``t``."""

    t: int
    n: int
    stats: tuple[Stat | None, ...]  # one per metric of the series, None where unknown
    flags: int = 0  # where the rates came from (see RateSource); the latest sample's

    def value(self, index: int) -> float | None:
        stat = self.stats[index] if index < len(self.stats) else None
        return None if stat is None else stat.value


def sample(t: int, values: Sequence[float | None], flags: int = 0) -> Bucket:
    """One sample: every metric's min, max and value are the value read."""
    return Bucket(t, 1, tuple(None if v is None else Stat(v, v, v) for v in values), flags)


def fold(buckets: Sequence[Bucket], t: int, metrics: Sequence[str]) -> Bucket:
    """Buckets merged into one: min of mins, max of maxes, the last value (rates: the mean)."""
    ordered = sorted(buckets, key=lambda b: b.t)
    stats: list[Stat | None] = []
    for index, metric in enumerate(metrics):
        known = [(b.n, b.stats[index]) for b in ordered if index < len(b.stats) and b.stats[index] is not None]
        if not known:
            stats.append(None)
            continue
        if metric in MEAN_METRICS:
            weight = sum(n for n, _ in known)
            value = sum(n * s.value for n, s in known) / weight
        else:
            value = known[-1][1].value
        stats.append(Stat(min(s.min for _, s in known), max(s.max for _, s in known), value))
    return Bucket(t, sum(b.n for b in ordered), tuple(stats), ordered[-1].flags if ordered else 0)


def downsample(buckets: Iterable[Bucket], step_ms: int, metrics: Sequence[str]) -> list[Bucket]:
    """Buckets of ``step_ms``, aligned to the epoch, from finer ones."""
    ordered = sorted(buckets, key=lambda b: b.t)
    return [fold(list(group), start, metrics) for start, group in groupby(ordered, key=lambda b: b.t - b.t % step_ms)]


def thin(buckets: Sequence[Bucket], max_points: int, metrics: Sequence[str]) -> list[Bucket]:
    """At most ``max_points`` buckets, folding neighbours into equal slices of time
    (so minutes and the raw samples after them come out evenly spaced). The
    newest stays as it is: a client asks for what came after it."""
    if max_points < 2 or len(buckets) <= max_points:
        return list(buckets)
    older, newest = buckets[:-1], buckets[-1]
    slices = max_points - 1
    first = older[0].t
    width = max(1.0, (newest.t - first) / slices)

    def index(bucket: Bucket) -> int:
        return min(slices - 1, math.floor((bucket.t - first) / width))

    return [fold(group, group[0].t, metrics) for group in (list(g) for _, g in groupby(older, key=index))] + [newest]


def _pack_number(value: float) -> float | int:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return int(value)
    return float(value)


def encode(bucket: Bucket) -> bytes:
    """The stored form: msgpack ``[n, flags, v...]``, each v null, a number, or [min, max, value].

    Whole numbers stay exact; fractions (ages, rates) are kept as 32-bit floats,
    about seven significant digits, which halves a busy queue's history.
    """
    values: list[object] = []
    for stat in bucket.stats:
        if stat is None:
            values.append(None)
        elif stat.min == stat.max == stat.value:
            values.append(_pack_number(stat.value))
        else:
            values.append([_pack_number(stat.min), _pack_number(stat.max), _pack_number(stat.value)])
    return msgpack.packb([bucket.n, bucket.flags, *values], use_single_float=True)


def decode(t: int, payload: bytes, keep: Collection[int] | None = None) -> Bucket:
    """A stored point (fractions as the float32 kept them: round them for display).
    ``keep``: the indexes of the metrics wanted; the others read as unknown (cheaper)."""
    n, flags, *values = msgpack.unpackb(payload)
    if keep is not None:
        values = [v if i in keep else None for i, v in enumerate(values)]
    stats = tuple(None if v is None else Stat(*v) if v.__class__ is list else Stat(v, v, v) for v in values)
    return Bucket(t, n, stats, flags)


# -- reading a range -------------------------------------------------------------


def choose_tier(minutes: float, poll_seconds: float, max_points: int = 4000) -> Tier:
    """The finest tier that still holds the whole range in at most ``max_points`` points."""
    span = minutes * MINUTE_MS
    for tier in TIERS:
        step = tier.step_ms or poll_seconds * SECOND_MS
        if tier.keep_ms >= span and span / step <= max_points:
            return tier
    return TIERS[-1]


def plan_reads(tier: Tier, after: int, until: int, rolled: Mapping[str, int]) -> list[tuple[Tier, int, int]]:
    """(tier, after, before) reads, exclusive bounds, that cover (after, until] without overlap.

    ``tier`` gives the closed buckets; the time since its last rollup
    (``rolled[name]``, the end of the last closed bucket) comes from the next
    finer tier, down to the raw samples: a 24-hour chart at 1 minute still
    ends with this minute's samples.
    """
    plan = []
    cursor = after
    for current in reversed(TIERS[: TIERS.index(tier) + 1]):
        if current.step_ms == 0:
            end = until + 1
        else:
            end = min(rolled.get(current.name, 0), until + 1)
        if end - 1 > cursor:
            plan.append((current, cursor, end))
            cursor = end - 1
    return plan


def closed_until(t: int, tier: Tier, finer_rolled: int | None) -> int:
    """End of the last bucket of ``tier`` that is complete at ``t`` (and whose finer data is complete)."""
    end = t - t % tier.step_ms
    if finer_rolled is not None:
        end = min(end, finer_rolled - finer_rolled % tier.step_ms)
    return end


# -- rates -----------------------------------------------------------------------


def increase(previous: int | None, current: int | None) -> int | None:
    """How much a cumulative counter grew; one that went down was reset, and counts from zero."""
    if previous is None or current is None:
        return None
    return current - previous if current >= previous else current


def per_minute(count: float | None, seconds: float) -> float | None:
    if count is None or seconds <= 0:
        return None
    return round(count * 60.0 / seconds, 3)


class RateSource:
    """Where a queue's rate came from: two bits for processed, three for failed, in a point's flags."""

    UNKNOWN, QUEUE_COUNTER, WORKER_COUNTERS, SHARED_WORKERS, FAILED_GROWTH = range(5)
    CODE = {
        UNKNOWN: "unknown",
        QUEUE_COUNTER: "queue_counter",
        WORKER_COUNTERS: "worker_counters",
        SHARED_WORKERS: "shared_worker_counters",
        FAILED_GROWTH: "failed_list_growth",
    }
    TEXT = {
        UNKNOWN: "not available",
        QUEUE_COUNTER: "counted per queue (the system's own counter, or results found once each: Arq)",
        WORKER_COUNTERS: "the counters of the workers serving this queue",
        SHARED_WORKERS: "worker counters split evenly across the queues each worker serves",
        FAILED_GROWTH: "growth of the failed list (requeues and deletes in the same interval hide failures)",
    }
    ESTIMATES = frozenset({SHARED_WORKERS, FAILED_GROWTH})

    @staticmethod
    def flags(processed: int, failed: int) -> int:
        return processed | (failed << 3)

    @staticmethod
    def split(flags: int) -> tuple[int, int]:
        return flags & 0b111, (flags >> 3) & 0b111


@dataclass(frozen=True)
class QueueCounts:
    """What rates need from a queue's stats."""

    failed: int | None = None
    processed_total: int | None = None
    failed_total: int | None = None
    partial: bool = False  # still being learned: growth is not new failures


@dataclass(frozen=True)
class WorkerCounts:
    """What rates need from a worker: cumulative jobs done (succeeded or failed) and failed."""

    queues: tuple[str, ...]
    done: int | None
    failed: int | None
    started_at: int | None = None  # ms


Key = tuple[str, str, str]  # (backend, system, name)


@dataclass(frozen=True)
class Rates:
    processed: float | None
    failed: float | None
    flags: int


def queue_rates(
    before: tuple[int, Mapping[Key, QueueCounts], Mapping[Key, WorkerCounts]] | None,
    now: tuple[int, Mapping[Key, QueueCounts], Mapping[Key, WorkerCounts]],
) -> dict[Key, Rates]:
    """Jobs processed and failed per minute for each queue, from two readings.

    In order of preference: the queue's own counters; the counters of the
    workers serving it (exact when each serves only this queue, an even split
    across its queues otherwise); for failures, the growth of the failed list.
    Without an earlier reading nothing is known.
    """
    t1, queues1, workers1 = now
    if before is None:
        return {key: Rates(None, None, 0) for key in queues1}
    t0, queues0, workers0 = before
    seconds = (t1 - t0) / SECOND_MS
    done_by_queue: dict[Key, list[tuple[float, float | None, bool]]] = {}
    counting: set[tuple[str, str]] = set()
    for (backend, system, name), worker in workers1.items():
        if worker.done is None:
            continue
        counting.add((backend, system))
        previous = workers0.get((backend, system, name))
        if previous is not None:
            done, failed = increase(previous.done, worker.done), increase(previous.failed, worker.failed)
        elif worker.started_at is not None and worker.started_at > t0:
            done, failed = worker.done, worker.failed  # started since: counted from zero
        else:
            continue  # first seen, baseline unknown: counted from the next reading
        share = len(worker.queues) or 1
        for queue in worker.queues:
            done_by_queue.setdefault((backend, system, queue), []).append(
                ((done or 0) / share, None if failed is None else failed / share, share == 1)
            )
    rates = {}
    for key, counts in queues1.items():
        previous = queues0.get(key, QueueCounts())
        processed, p_source = _processed(key, counts, previous, done_by_queue, counting)
        failed, f_source = _failed(key, counts, previous, done_by_queue)
        rates[key] = Rates(per_minute(processed, seconds), per_minute(failed, seconds), RateSource.flags(p_source, f_source))
    return rates


def _processed(key, counts, previous, done_by_queue, counting) -> tuple[float | None, int]:
    exact = increase(previous.processed_total, counts.processed_total)
    if exact is not None:
        return exact, RateSource.QUEUE_COUNTER
    shares = done_by_queue.get(key)
    if shares:
        exclusive = all(alone for _, _, alone in shares)
        return sum(d for d, _, _ in shares), RateSource.WORKER_COUNTERS if exclusive else RateSource.SHARED_WORKERS
    if key[:2] in counting:
        return 0, RateSource.WORKER_COUNTERS  # the system counts per worker, and none serves this queue
    return None, RateSource.UNKNOWN


def _failed(key, counts, previous, done_by_queue) -> tuple[float | None, int]:
    exact = increase(previous.failed_total, counts.failed_total)
    if exact is not None:
        return exact, RateSource.QUEUE_COUNTER
    shares = done_by_queue.get(key)
    if shares and all(alone and f is not None for _, f, alone in shares):
        return sum(f for _, f, _ in shares), RateSource.WORKER_COUNTERS
    if counts.failed is not None and previous.failed is not None and not counts.partial and not previous.partial:
        return max(0, counts.failed - previous.failed), RateSource.FAILED_GROWTH
    if shares and all(f is not None for _, f, _ in shares):
        return sum(f for _, f, _ in shares), RateSource.SHARED_WORKERS
    return None, RateSource.UNKNOWN
