"""Per-function sketches in the state store: written by the lease holder, read by any page.

One series per (backend, system, queue, function), in tiers of their own named after
queue history's (``fn.raw``, ``fn.1m``, ``fn.10m``, ``fn.1h``: the same steps and
retention, so the same bounded size per series), each point a ``FunctionStats``
(msgpack). A raw point is written only for an interval in which the function ended
jobs, so an idle function costs nothing. Closed buckets are rolled up by merging
sketches, which is exact; the rollup marks are ``functions.rolled.<tier>``.

The settings kept beside them: ``functions.cursors`` (where each adapter's timings
continue), ``functions.written`` (the newest interval written: nothing is written
at or before it again), ``functions.names`` (the function names admitted per queue,
so the cap stays stable across restarts) and ``functions.totals`` (cumulative
counts per series for /metrics).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from queuewatch.adapters.store import StateStore
from queuewatch.snapshots import history
from queuewatch.snapshots.history import MINUTE_MS, TIERS, Tier

from .sketch import FunctionStats, merged

PREFIX = "fn."
FN_TIERS = tuple(Tier(PREFIX + t.name, t.step_ms, t.keep_ms) for t in TIERS)
Key = tuple[str, str, str, str]  # (backend, system, queue, function)


def tier_name(tier: Tier) -> str:
    return PREFIX + tier.name


def series_key(key: Key) -> str:
    return history.series_key(*key)


def key_of(series: str) -> Key | None:
    try:
        parts = history.series_parts(series)
    except ValueError:
        return None
    return parts if len(parts) == 4 and all(isinstance(p, str) for p in parts) else None  # type: ignore[return-value]


def _rolled_mark(tier: Tier) -> str:
    return f"functions.rolled.{tier.name}"


@dataclass
class Window:
    """What a read of a range found: per series, the merged sketch, and the points over time."""

    tier: Tier
    totals: dict[Key, FunctionStats] = field(default_factory=dict)
    points: dict[Key, list[tuple[int, FunctionStats]]] = field(default_factory=dict)


class FunctionHistory:
    """Sketch points in the state store: write, roll up, prune, read."""

    def __init__(self, store: StateStore, interval: float) -> None:
        self.store = store
        self.interval = interval

    # -- settings ------------------------------------------------------------------

    def setting(self, name: str, default: object) -> object:
        raw = self.store.get(f"functions.{name}")
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default

    def put_setting(self, name: str, value: object) -> None:
        self.store.put(f"functions.{name}", json.dumps(value, separators=(",", ":")))

    def rolled(self) -> dict[str, int]:
        """How far each coarse tier is rolled up (end of its last closed bucket, ms)."""
        return {t.name: int(self.store.get(_rolled_mark(t)) or 0) for t in TIERS[1:]}

    # -- writing (the lease holder) ----------------------------------------------------

    def write(self, points: Mapping[tuple[Key, int], FunctionStats]) -> int:
        rows = [
            (series_key(key), t, stats.encode()) for (key, t), stats in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]
        return self.store.add_points(tier_name(TIERS[0]), rows)

    def rollup(self, t: int) -> None:
        """Merge every closed bucket into the next tier, then prune what each tier no longer keeps."""
        finer_rolled: int | None = None
        for finer, tier in zip(TIERS, TIERS[1:]):
            done = int(self.store.get(_rolled_mark(tier)) or 0)
            end = history.closed_until(t, tier, finer_rolled)
            if end > done:
                start = max(done, end - finer.keep_ms)
                buckets: dict[tuple[str, int], list[FunctionStats]] = {}
                for key, rows in self.store.points(tier_name(finer), None, start - 1, end).items():
                    for ts, payload in rows:
                        buckets.setdefault((key, ts - ts % tier.step_ms), []).append(FunctionStats.decode(payload))
                self.store.add_points(
                    tier_name(tier), [(key, ts, merged(group).encode()) for (key, ts), group in sorted(buckets.items())]
                )
                self.store.put(_rolled_mark(tier), str(end))
                self.store.prune(tier_name(finer), t - finer.keep_ms)
                if tier is TIERS[-1]:
                    self.store.prune(tier_name(tier), t - tier.keep_ms)
                done = end
            finer_rolled = done

    # -- reading (any process) ------------------------------------------------------------

    def read(self, minutes: float, until: int, *, keep: Iterable[Key] | None = None, over_time: bool = False,
             max_points: int = 300) -> Window:  # fmt: skip
        """Every series (or those in ``keep``) over the last ``minutes``: merged totals, and with
        ``over_time`` the points of the tier chosen for a chart of ``max_points``.

        Totals come from the coarsest tier whose step is at most a fifteenth of the window
        (15 m and 1 h: per minute; 6 h: per 10 minutes; 24 h and longer: per hour), plus the finer
        tiers since its last rollup, down to the raw points: a window is whole buckets of
        that tier, so it may start up to one step later than asked."""
        span = int(minutes * MINUTE_MS)
        if over_time:
            tier = history.choose_tier(minutes, self.interval, max_points)
        else:
            tier = TIERS[0]
            for candidate in TIERS[1:]:
                if candidate.step_ms * 15 <= span and candidate.keep_ms >= span:
                    tier = candidate
        wanted = None if keep is None else [series_key(k) for k in keep]
        window = Window(tier)
        for part, lo, hi in history.plan_reads(tier, until - span, until, self.rolled()):
            for series, rows in self.store.points(tier_name(part), wanted, lo, hi).items():
                key = key_of(series)
                if key is None:
                    continue
                for ts, payload in rows:
                    stats = FunctionStats.decode(payload)
                    if over_time:
                        window.points.setdefault(key, []).append((ts, FunctionStats().merge(stats)))
                    window.totals.setdefault(key, FunctionStats()).merge(stats)
        if over_time:
            step = tier.step_ms or int(self.interval * 1000)
            window.points = {key: _rebucket(rows, step) for key, rows in window.points.items()}
        return window


def _rebucket(rows: list[tuple[int, FunctionStats]], step: int) -> list[tuple[int, FunctionStats]]:
    """Finer points (the tail since the last rollup) folded into the chart's step."""
    out: dict[int, FunctionStats] = {}
    for ts, stats in rows:
        slot = ts - ts % step
        if slot in out:
            out[slot].merge(stats)
        else:
            out[slot] = stats
    return sorted(out.items())
