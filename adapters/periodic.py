"""Periodic work as the storage reveals it: RQ's cron jobs, Arq's cron jobs, Celery beat
through celery-redbeat. One value for every system, and when a run is late.

Each system keeps something different: RQ 3's cron scheduler registers its jobs with
their last and next enqueue; arq records nothing of its cron jobs but their runs (a
cron job's id is ``cron:NAME:SCHEDULED_MS``), so the interval is learned from the
runs; redbeat keeps each entry's definition, its last run and its next run. Where the
next run is not recorded it is expected one interval after the last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

GRACE_SECONDS = 5.0  # a run this much past due (or a tenth of the interval, if more) is late
OUTCOMES = ("succeeded", "failed", "running", "waiting")


@dataclass(frozen=True)
class Periodic:
    """One periodic schedule and what became of its last run."""

    backend: str
    system: str
    queue: str | None  # the queue its runs go to, where recorded
    name: str
    function: str | None
    schedule: str  # in words: "cron 0 3 * * *", "every 60 s", "every ~2 s (from its runs)"
    interval_seconds: float | None  # the expected time between runs; None: unknown
    last_run: datetime | None  # when it last ran (was enqueued / sent)
    last_outcome: str | None  # one of OUTCOMES, None: unknown (expired, or not recorded)
    next_run: datetime | None  # when it is due next, as recorded (None: one interval after the last)
    runner: str | None  # what schedules it: a cron scheduler's name, "arq worker", "celery beat"
    source: str  # where queuewatch read it, in words
    runs: int | None = None  # runs recorded, where counted
    notes: tuple[str, ...] = ()

    def due(self) -> datetime | None:
        """When the next run is expected."""
        if self.next_run is not None:
            return self.next_run
        if self.last_run is not None and self.interval_seconds:
            return self.last_run + timedelta(seconds=self.interval_seconds)
        return None

    def late_seconds(self, now: datetime) -> float | None:
        """How far past due it is (0 when on time, within the grace); None when nothing says when it is due."""
        due = self.due()
        if due is None:
            return None
        grace = max(GRACE_SECONDS, 0.1 * (self.interval_seconds or 0))
        over = (now - due).total_seconds()
        return over if over > grace else 0.0

    def lateness(self, now: datetime) -> float | None:
        """Intervals since its last run (what a "did not run for N x its interval" alert compares)."""
        if self.last_run is None or not self.interval_seconds:
            return None
        return max(0.0, (now - self.last_run).total_seconds() / self.interval_seconds)


def every(seconds: float | None, learned: bool = False) -> str:
    if not seconds:
        return "unknown interval"
    amount = f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min" if seconds < 7200 else f"{seconds / 3600:g} h"
    return f"every ~{amount} (from its runs)" if learned else f"every {amount}"


def worst_lateness(periodic: list[Periodic], now: datetime) -> dict[tuple[str, str, str], float]:
    """Per (backend, system, queue): the most intervals any of its periodic tasks has gone without a run."""
    worst: dict[tuple[str, str, str], float] = {}
    for p in periodic:
        value = p.lateness(now)
        if value is None or p.queue is None:
            continue
        key = (p.backend, p.system, p.queue)
        worst[key] = max(value, worst.get(key, 0.0))
    return worst
