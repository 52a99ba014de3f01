"""Arq's cron jobs as far as arq records them: nothing but their runs.

A cron job lives in the worker's code (``cron(func, minute=…)``); arq writes no
registration. Each run is a job with the id ``cron:NAME:SCHEDULED_MS`` (unique cron
jobs, arq's default) whose result says when it finished and whether it succeeded,
kept for ``keep_result``. So the last run and its outcome are read from those
results (found by the failure index's scan, never on a page view), and the interval
is learned from the gaps between runs; the next run is one interval after the last.
arq's ``cron()`` keeps no result unless given ``keep_result`` (its default is 0): such
cron jobs leave only a short-lived in-progress lock without their queue, and are not
shown (the periodic page says so).
"""

from __future__ import annotations

from datetime import datetime, timezone

from queuewatch.adapters.periodic import Periodic, every

from .index import ArqFailures


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else None


class ArqPeriodic:
    """Mixed into ArqAdapter."""

    backend: str
    system: str
    index: ArqFailures

    def periodic(self) -> list[Periodic]:
        found = []
        for (queue, name), runs in sorted(self.index.cron_runs().items()):
            scheduled, finished, success = runs.runs[0]
            interval = runs.interval_ms()
            outcome = None if success is None else "succeeded" if success else "failed"
            notes = () if interval else ("One run seen so far: its interval is learned from the gap between two runs.",)
            found.append(Periodic(
                backend=self.backend, system=self.system, queue=queue, name=name, function=name.removeprefix("cron:"),
                schedule=every(interval / 1000 if interval else None, learned=True), interval_seconds=interval / 1000 if interval else None,
                last_run=_time(scheduled), last_outcome=outcome, next_run=None, runner="arq worker (cron_jobs)",
                source="the results of its runs (arq records no cron registration)", runs=runs.seen, notes=notes,
            ))  # fmt: skip
        return found
