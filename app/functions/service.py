"""What the sampler does for per-function metrics each tick, and what pages read.

``FunctionMetrics.collect(t)`` (the lease holder, once per interval): every present
adapter is asked for the jobs that ended since its cursor (``Adapter.timings``),
within a time budget, in that backend's own threads (a slow backend holds up only
its own part). Function names are capped (``MAX_PER_QUEUE`` per queue, ``MAX_SERIES``
in all): past the cap a job counts under ``OTHER``. Each job goes into the raw
point of the interval it ended in, unless that interval was written already (then
into this one): jobs learned at start-up or after a restart are spread over the
time they ended instead of showing as a burst. The cursor is saved before the
points: a crash between the two loses one interval's timings, never counts them
twice; points the store refused are kept and written with the next tick.

``FunctionMetrics.table`` / ``series`` read only the state store (any process).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from queuewatch.adapters.base import Adapter, Timing
from queuewatch.adapters.errors import AdapterError, Unsupported
from queuewatch.adapters.store import StateStore
from queuewatch.snapshots import lease
from queuewatch.snapshots.history import MINUTE_MS, TIERS
from queuewatch.snapshots.monitor import Monitor

from .sketch import FunctionStats
from .store import FunctionHistory, Key, series_key

log = logging.getLogger(__name__)

OTHER = "(other)"
MAX_PER_QUEUE = 200  # function names per queue; more count under OTHER
MAX_SERIES = 2_000  # (queue, function) series in all, OTHER included; past it jobs are dropped (and counted)
MAX_PENDING = 20_000  # points kept in memory while the store refuses them
WINDOWS = (15, 60, 360, 1440, 10080)  # minutes the page offers
METRICS_WINDOW = 5  # minutes the /metrics quantiles cover


@dataclass(frozen=True)
class Row:
    """One function of one queue over a window: what the API and the page show."""

    backend: str
    system: str
    queue: str
    function: str
    processed: int | None
    failed: int | None
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_max: float | None
    wait_p50: float | None
    wait_p95: float | None

    @property
    def failure_rate(self) -> float | None:
        if not self.processed or self.failed is None:
            return None
        return self.failed / self.processed


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def row_of(key: Key, stats: FunctionStats, measures: frozenset[str]) -> Row:
    runtime = stats.runtime if "runtime" in measures and stats.runtime.count else None
    wait = stats.wait if "wait" in measures and stats.wait.count else None
    return Row(*key, processed=stats.processed if "processed" in measures else None,
               failed=stats.failed if "failed" in measures else None,
               runtime_p50=_round(runtime.quantile(0.5)) if runtime else None,
               runtime_p95=_round(runtime.quantile(0.95)) if runtime else None,
               runtime_max=_round(runtime.max) if runtime else None,
               wait_p50=_round(wait.quantile(0.5)) if wait else None,
               wait_p95=_round(wait.quantile(0.95)) if wait else None)  # fmt: skip


class Names:
    """The function names admitted per queue: stable across restarts (kept in the store)."""

    def __init__(self, data: object) -> None:
        self.by_queue: dict[str, set[str]] = {}
        if isinstance(data, dict):
            for queue, names in data.items():
                if isinstance(queue, str) and isinstance(names, list):
                    self.by_queue[queue] = {n for n in names if isinstance(n, str)}
        self.count = sum(len(v) for v in self.by_queue.values())
        self.changed = False

    def admit(self, backend: str, system: str, queue: str, function: str) -> str | None:
        """The name a job counts under: its own, OTHER past the queue's cap, None past MAX_SERIES."""
        key = series_key((backend, system, queue, ""))
        names = self.by_queue.get(key)
        if names is not None and function in names:
            return function
        wanted = function if names is None or len(names) < MAX_PER_QUEUE else OTHER
        if names is not None and wanted in names:
            return wanted
        if self.count >= MAX_SERIES:
            return None
        self.by_queue.setdefault(key, set()).add(wanted)
        self.count += 1
        self.changed = True
        return wanted

    def dump(self) -> dict[str, list[str]]:
        return {queue: sorted(names) for queue, names in self.by_queue.items()}


class FunctionMetrics:
    """Collects timings into the store (lease holder) and reads them back (any process)."""

    def __init__(self, monitor: Monitor, store: StateStore, interval: float) -> None:
        self.monitor = monitor
        self.history = FunctionHistory(store, interval)
        self.interval = interval
        self.budget = max(0.2, min(2.0, interval / 4))
        self._names: Names | None = None
        self._pending: dict[tuple[Key, int], FunctionStats] = {}
        self.dropped = 0  # jobs past MAX_SERIES, since start
        self.errors: dict[tuple[str, str], str] = {}  # (backend, system) -> why its timings were not read

    # -- the sampler's part (lease holder) ---------------------------------------------

    def collect(self, t: int) -> int:
        """Read every adapter's new timings and write them as the interval starting at ``t``; returns jobs counted."""
        if self._names is None:
            self._names = Names(self.history.setting("names", {}))
        cursors: dict[str, Any] = self.history.setting("cursors", {})  # type: ignore[assignment]
        if not isinstance(cursors, dict):
            cursors = {}
        written = self.history.setting("written", 0)
        floor = max(int(written) + 1 if isinstance(written, int) else 0, self.history.rolled().get("1m", 0),
                    t - TIERS[0].keep_ms + MINUTE_MS)  # fmt: skip
        interval_ms = max(1, int(self.interval * 1000))
        points = self._pending
        self._pending = {}
        counted = 0
        totals_delta: dict[str, list[float]] = {}
        # A backend the snapshot shows down (stalled or cut) is not asked: the tick, and with it the
        # sampler's lease, must never wait on it. Each ask is bounded by the interval too.
        up = {b.name for b in self.monitor.snapshot().backends if b.status == "up"}
        timeout = min(self.budget + 2, max(0.5, self.interval))
        for name, backend in self.monitor.backends.items():
            if name not in up:
                continue
            for adapter in backend.present():
                ident = f"{name}/{adapter.system}"
                try:
                    timings, cursor = self.monitor.call(name, self._reader(adapter, cursors.get(ident)), timeout=timeout)
                except Unsupported as exc:
                    self.errors[(name, adapter.system)] = str(exc)
                    continue
                except AdapterError as exc:
                    self.errors[(name, adapter.system)] = str(exc)
                    log.info("timings of %s on %s not read: %s", adapter.system, name, exc)
                    continue
                self.errors.pop((name, adapter.system), None)
                cursors[ident] = cursor
                for timing in timings:
                    function = self._names.admit(name, adapter.system, timing.queue, timing.function)
                    if function is None:
                        self.dropped += 1
                        continue
                    key = (name, adapter.system, timing.queue, function)
                    ended = lease.slot(int(timing.ended_at * 1000), interval_ms)
                    slot = t if not floor <= ended < t else ended
                    stats = points.get((key, slot))
                    if stats is None:
                        stats = points[(key, slot)] = FunctionStats()
                    stats.add(timing.failed, timing.runtime_seconds, timing.wait_seconds)
                    total = totals_delta.setdefault(series_key(key), [0, 0, 0.0, 0.0])
                    total[0] += 1
                    total[1] += 1 if timing.failed else 0
                    total[2] += timing.runtime_seconds or 0.0
                    total[3] += timing.wait_seconds or 0.0
                    counted += 1
        # The cursor first: a crash before the points are stored loses them, never counts them twice.
        self.history.put_setting("cursors", cursors)
        if self._names.changed:
            self.history.put_setting("names", self._names.dump())
            self._names.changed = False
        if totals_delta:
            self._add_totals(totals_delta)
        try:
            self.history.write(points)
            self.history.put_setting("written", t)
        except Exception as exc:  # the store refused: keep them (bounded) for the next tick
            log.warning("per-function points not stored, kept for the next tick: %s", exc)
            self._pending = dict(list(points.items())[-MAX_PENDING:])
            raise
        self.history.rollup(t)
        return counted

    def _reader(self, adapter: Adapter, since: Any):  # type: ignore[no-untyped-def]
        budget = self.budget

        def read() -> tuple[list[Timing], dict]:
            return adapter.timings(since if isinstance(since, dict) else None, budget)

        return read

    def _add_totals(self, delta: dict[str, list[float]]) -> None:
        totals = self.totals()
        for key, (processed, failed, runtime, wait) in delta.items():
            old = totals.get(key, [0, 0, 0.0, 0.0])
            totals[key] = [old[0] + processed, old[1] + failed, round(old[2] + runtime, 6), round(old[3] + wait, 6)]
        self.history.put_setting("totals", totals)

    # -- reading (any process, never the backends) ----------------------------------------

    def totals(self) -> dict[str, list[float]]:
        """Cumulative (processed, failed, runtime seconds, wait seconds) per series key, since the store began."""
        found = self.history.setting("totals", {})
        return found if isinstance(found, dict) else {}

    def measures(self, backend: str, system: str) -> frozenset[str]:
        """What the system measures (Adapter.timings_measure); everything if unknown."""
        try:
            return self.monitor.adapter(backend, system).timings_measure
        except Exception:
            return frozenset({"processed", "failed", "runtime", "wait"})

    def table(self, minutes: float, backend: str | None = None, system: str | None = None,
              queue: str | None = None, until: int | None = None) -> list[Row]:  # fmt: skip
        """Every function over the window, filtered, slowest p95 first."""
        until = int(time.time() * 1000) if until is None else until
        window = self.history.read(minutes, until)
        rows = []
        for key, stats in window.totals.items():
            if (backend and key[0] != backend) or (system and key[1] != system) or (queue is not None and key[2] != queue):
                continue
            rows.append(row_of(key, stats, self.measures(key[0], key[1])))
        rows.sort(key=lambda r: (-(r.runtime_p95 or -1), -(r.processed or 0), r.backend, r.system, r.queue, r.function))
        return rows

    def series(self, key: Key, minutes: float, until: int | None = None, max_points: int = 300) -> list[dict[str, Any]]:
        """One function's points over the window (the chart)."""
        until = int(time.time() * 1000) if until is None else until
        window = self.history.read(minutes, until, keep=[key], over_time=True, max_points=max_points)
        measures = self.measures(key[0], key[1])
        out = []
        for ts, stats in window.points.get(key, []):
            row = row_of(key, stats, measures)
            out.append({"t": ts, "processed": row.processed, "failed": row.failed, "runtime_p50_seconds": row.runtime_p50,
                        "runtime_p95_seconds": row.runtime_p95, "runtime_max_seconds": row.runtime_max,
                        "wait_p50_seconds": row.wait_p50, "wait_p95_seconds": row.wait_p95})  # fmt: skip
        return out

    def notes(self) -> list[str]:
        """What is not measurable where, for the page."""
        seen = set()
        notes = []
        for backend in self.monitor.backends.values():
            for adapter in backend.present():
                note = adapter.timings_note
                if note and (adapter.system, note) not in seen:
                    seen.add((adapter.system, note))
                    notes.append(f"{adapter.label}: {note}")
        return notes


def keys_of(rows: Sequence[Row]) -> list[Key]:
    return [(r.backend, r.system, r.queue, r.function) for r in rows]
