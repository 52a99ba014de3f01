"""What the RQ adapter answers beyond the shared values: a job row with RQ's own status,
and RQ 3's cron schedulers and job groups (issue 20), all frozen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from queuewatch.adapters.values import Job


@dataclass(frozen=True)
class RQJob(Job):
    """A row of a list of RQ jobs in one state, with RQ's own status word ("deferred",
    "ready_to_enqueue", "stopped"...) and what else the row should say, as (label, text):
    ("waiting for", "id1, id2") on a deferred job, ("execution", "…") on a running one."""

    status: str | None = None
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CronRun:
    """A job a cron job enqueued, newest first, with its status now (None: expired)."""

    job_id: str
    enqueued_at: datetime | None
    status: str | None


@dataclass(frozen=True)
class CronJob:
    """One cron job RQ knows: from a scheduler's registration (its schedule) and from the
    ``cron_jobs`` registry and its history (its last runs). A job whose scheduler is gone
    keeps its last runs and loses its schedule (``scheduler`` None, ``next_run_at`` None)."""

    name: str
    function: str | None
    queue: str | None
    args_preview: str
    interval_seconds: int | None
    cron: str | None  # a cron expression, in the scheduler's local time
    last_run_at: datetime | None  # when it last enqueued a job
    next_run_at: datetime | None  # when its scheduler will enqueue the next one
    scheduler: str | None  # the live scheduler that runs it
    runs: int  # jobs in its history (RQ keeps the last 1,000, for a year)
    recent: tuple[CronRun, ...] = ()


@dataclass(frozen=True)
class CronScheduler:
    """An ``rq cron`` process as it registered itself."""

    name: str
    hostname: str | None
    pid: int | None
    created_at: datetime | None
    last_heartbeat: datetime | None
    alive: bool  # its hash is still there (rq refreshes it every heartbeat, lets it expire after 120 s)
    config_file: str | None
    jobs: tuple[str, ...]  # names of the cron jobs it runs


@dataclass(frozen=True)
class CronSchedules:
    """Every cron scheduler and cron job, read within bounds (``truncated`` when some were left out)."""

    schedulers: tuple[CronScheduler, ...]
    jobs: tuple[CronJob, ...]
    truncated: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupJob:
    """A job of a group: where it is now (None: its data expired)."""

    id: str
    queue: str | None
    status: str | None
    state: str | None


@dataclass(frozen=True)
class JobGroup:
    """An RQ job group (``Group.create``, 2.x and later) and its jobs, read within bounds."""

    name: str
    size: int  # jobs in its set, expired ones included (rq's maintenance drops those)
    statuses: tuple[tuple[str, int], ...]  # RQ status -> jobs, over the jobs read; "expired" for gone ones
    jobs: tuple[GroupJob, ...]
    truncated: bool  # more jobs than were read


@dataclass(frozen=True)
class Groups:
    """A page of job groups, by name."""

    groups: tuple[JobGroup, ...]
    total: int
    truncated: bool
