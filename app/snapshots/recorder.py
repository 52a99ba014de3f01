"""Recording history, and reading it back.

The sampler that holds the lease hands each snapshot to ``Recorder.record``:
one raw point per queue (depth, in progress, scheduled, failed, workers,
oldest age, processed and failed per minute) and per backend (up or down),
stamped with the poll interval's start so an interval holds one sample
however many processes sample. As each 1-minute, 10-minute and 1-hour bucket
closes it is rolled up from the tier below, and points past their tier's
retention are pruned. The pure rules live in ``history.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from queuewatch.adapters.store import StateStore

from . import history
from .history import TIERS, Bucket, QueueCounts, Tier, WorkerCounts
from .monitor import Snapshot

# Rates over a longer gap than this (a sampler that lost and regained the
# lease) would average over time nobody watched: they start afresh instead.
MAX_RATE_GAP_MS = 10 * history.MINUTE_MS


def now_ms() -> int:
    return int(time.time() * 1000)


def _rolled_mark(tier: Tier) -> str:
    return f"history.rolled.{tier.name}"


@dataclass(frozen=True)
class Reading:
    """Points of several series over one range, and the tier they mostly come from."""

    tier: Tier
    step_seconds: float
    series: dict[str, list[Bucket]]


class Recorder:
    """Writes snapshots into the state store's history and reads ranges back."""

    def __init__(self, store: StateStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._previous: tuple[int, dict, dict] | None = None

    # -- writing (the lease holder only) ------------------------------------------

    def record(self, snapshot: Snapshot, t: int) -> int:
        """Store the snapshot as the sample of the interval starting at ``t``; roll up and prune."""
        current = self._counts(snapshot, t)
        previous = self._previous
        if previous is not None and not 0 < t - previous[0] <= MAX_RATE_GAP_MS:
            previous = None
        rates = history.queue_rates(previous, current)
        points = []
        for q in snapshot.queues:
            rate = rates[(q.backend, q.system, q.name)]
            values = (q.depth, q.in_progress, q.scheduled, q.failed, q.workers,
                      None if q.oldest_age_seconds is None else round(q.oldest_age_seconds, 3),
                      rate.processed, rate.failed)  # fmt: skip
            key = history.series_key(q.backend, q.system, q.name)
            points.append((key, t, history.encode(history.sample(t, values, rate.flags))))
        for backend in snapshot.backends:
            up = history.sample(t, (1 if backend.status == "up" else 0,))
            points.append((history.series_key(backend.name), t, history.encode(up)))
        written = self.store.add_points(TIERS[0].name, points)
        self._previous = current
        self.rollup(t)
        return written

    @staticmethod
    def _counts(snapshot: Snapshot, t: int) -> tuple[int, dict, dict]:
        queues = {
            (q.backend, q.system, q.name): QueueCounts(q.failed, q.processed_total, q.failed_total, q.partial) for q in snapshot.queues
        }
        workers = {}
        for w in snapshot.workers:
            done = None if w.successful_jobs is None and w.failed_jobs is None else (w.successful_jobs or 0) + (w.failed_jobs or 0)
            started = None if w.started_at is None else int(w.started_at.timestamp() * 1000)
            workers[(w.backend, w.system, w.name)] = WorkerCounts(w.queues, done, w.failed_jobs, started)
        return t, queues, workers

    def rollup(self, t: int) -> None:
        """Roll every closed bucket up into the next tier, then prune what each tier no longer keeps."""
        finer_rolled: int | None = None
        for finer, tier in zip(TIERS, TIERS[1:]):
            done = int(self.store.get(_rolled_mark(tier)) or 0)
            end = history.closed_until(t, tier, finer_rolled)
            if end > done:
                start = max(done, end - finer.keep_ms)
                buckets = []
                for key, rows in self.store.points(finer.name, None, start - 1, end).items():
                    metrics = history.metrics_of(key)
                    folded = history.downsample((history.decode(ts, p) for ts, p in rows), tier.step_ms, metrics)
                    buckets += [(key, b.t, history.encode(b)) for b in folded]
                self.store.add_points(tier.name, buckets)
                self.store.put(_rolled_mark(tier), str(end))
                self.store.prune(finer.name, t - finer.keep_ms)
                if tier is TIERS[-1]:
                    self.store.prune(tier.name, t - tier.keep_ms)
                    self.store.forget_empty_series()
                done = end
            finer_rolled = done

    # -- reading --------------------------------------------------------------------

    def read(self, series: Sequence[str] | None, minutes: float, after: int | None = None,
             max_points: int = 4000, until: int | None = None, fields: Sequence[str] | None = None) -> Reading:  # fmt: skip
        """Points of ``series`` (all if None) over the last ``minutes``, or only those after ``after``.

        The tier is the finest that holds the span in ``max_points``; the time
        since its last rollup comes from finer tiers, so the newest point is
        always the latest sample. ``fields`` limits the queue metrics decoded
        (the others read as unknown): what keeps 1,000 sparklines cheap.
        """
        keep = None if fields is None else {history.QUEUE_METRICS.index(f) for f in fields}
        until = now_ms() if until is None else until
        start = until - int(minutes * history.MINUTE_MS)
        after = start if after is None else max(start, after)
        tier = history.choose_tier((until - after) / history.MINUTE_MS, self.interval, max_points)
        rolled = {t.name: int(self.store.get(_rolled_mark(t)) or 0) for t in TIERS[1:]}
        found: dict[str, list[Bucket]] = {}
        for part, lo, hi in history.plan_reads(tier, after, until, rolled):
            for key, rows in self.store.points(part.name, series, lo, hi).items():
                wanted = keep if keep is not None and history.metrics_of(key) is history.QUEUE_METRICS else None
                found.setdefault(key, []).extend(history.decode(ts, p, wanted) for ts, p in rows)
        step = tier.step_ms / 1000 if tier.step_ms else self.interval
        return Reading(tier, step, found)
