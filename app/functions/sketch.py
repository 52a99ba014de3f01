"""A mergeable sketch of durations: a fixed-bucket log histogram (pure, no I/O).

Bucket ``i >= 1`` holds the values in ``[MIN_VALUE * GAMMA**(i-1), MIN_VALUE * GAMMA**i)``;
bucket 0 holds everything below ``MIN_VALUE`` (0.1 ms, negative waits from clock skew
too); values past the last bucket (about 115 days) go into it. Because the buckets are
the same for every sketch, merging is adding counts: a tier rolled up from a finer one
holds exactly what the finer one held, so a 7-day p95 is as true as a 15-minute one.

A quantile is answered with its bucket's midpoint (in the relative sense), so it is
within ``RELATIVE_ERROR`` (4.8 %) of the true nearest-rank quantile of the values
added, and never above the exact maximum, which is kept beside the buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

GAMMA = 1.1
MIN_VALUE = 1e-4  # seconds: what is shorter reads as 0
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)
MAX_INDEX = math.ceil(math.log(1e7 / MIN_VALUE) / math.log(GAMMA))  # 1e7 s: the last bucket
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(value: float) -> int:
    """The bucket a duration (seconds) falls in."""
    if not value >= MIN_VALUE:  # also NaN
        return 0
    return min(MAX_INDEX, 1 + int(math.log(value / MIN_VALUE) / _LOG_GAMMA))


def bucket_value(index: int) -> float:
    """What a bucket's values are read as: within RELATIVE_ERROR of each of them."""
    if index <= 0:
        return 0.0
    low = MIN_VALUE * GAMMA ** (index - 1)
    return low * 2 * GAMMA / (GAMMA + 1)


@dataclass
class Histogram:
    """Counts per bucket, with the exact count, sum and maximum."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    max: float = 0.0

    def add(self, value: float, n: int = 1) -> None:
        if not math.isfinite(value):
            return
        index = bucket_of(value)
        self.counts[index] = self.counts.get(index, 0) + n
        self.count += n
        self.total += max(0.0, value) * n
        self.max = max(self.max, value)

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q`` quantile (0 < q <= 1), or None when empty."""
        if self.count <= 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_value(index), self.max) if index else 0.0
        return self.max

    def pack(self) -> list:
        """``[count, sum, max, i1, n1, d2, n2, ...]``: bucket indexes delta-coded (small ints)."""
        flat: list = [self.count, self.total, self.max]
        previous = 0
        for index in sorted(self.counts):
            flat += [index - previous, self.counts[index]]
            previous = index
        return flat

    @classmethod
    def unpack(cls, flat: list) -> Histogram:
        count, total, top, *pairs = flat
        counts: dict[int, int] = {}
        index = 0
        for delta, n in zip(pairs[::2], pairs[1::2]):
            index += delta
            counts[index] = n
        return cls(counts, int(count), float(total), float(top))


@dataclass
class FunctionStats:
    """One function on one queue over one interval (or several, merged)."""

    processed: int = 0  # jobs that ended, succeeded or failed
    failed: int = 0
    runtime: Histogram = field(default_factory=Histogram)
    wait: Histogram = field(default_factory=Histogram)

    def add(self, failed: bool, runtime: float | None, wait: float | None) -> None:
        self.processed += 1
        self.failed += 1 if failed else 0
        if runtime is not None:
            self.runtime.add(runtime)
        if wait is not None:
            self.wait.add(wait)

    def merge(self, other: FunctionStats) -> FunctionStats:
        self.processed += other.processed
        self.failed += other.failed
        self.runtime.merge(other.runtime)
        self.wait.merge(other.wait)
        return self

    def encode(self) -> bytes:
        return msgpack.packb([self.processed, self.failed, self.runtime.pack(), self.wait.pack()], use_single_float=True)

    @classmethod
    def decode(cls, payload: bytes) -> FunctionStats:
        processed, failed, runtime, wait = msgpack.unpackb(payload)
        return cls(int(processed), int(failed), Histogram.unpack(runtime), Histogram.unpack(wait))


def merged(stats: Iterable[FunctionStats]) -> FunctionStats:
    total = FunctionStats()
    for s in stats:
        total.merge(s)
    return total
