"""Control of Arq's live work through its own keys, never ``import arq``.

Stopping a job is arq's ``Job.abort`` (arq/jobs.py, 0.28): ``ZADD arq:abort
{job_id: now_ms}``. A worker started with ``allow_abort_jobs=True`` reads that set
on every poll and cancels the job's task, which then ends failed with
``CancelledError`` as its result; a worker without it never reads the set, and
the job runs to its end (the worker removes the entry when it finishes the job).
Arq records neither which worker runs a job nor whether its workers allow aborts,
so the request is answered at once and the page says when the job did not stop.

Arq cannot pause a queue: its workers poll the queue's sorted set with no switch
to stop taking jobs.
"""

from __future__ import annotations

import time
from typing import Any

from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.redis_errors import redis_errors

ABORT_KEY = "arq:abort"  # arq.constants.abort_jobs_ss: one set for every queue


class ArqControl:
    """The mixin ArqAdapter takes: stop (abort). Needs ``client`` and ``job``."""

    client: Any

    # Methods here that only refuse, with the reason: the pages offer no button for them.
    unsupported_controls = frozenset({"pause"})

    stop_hint = ("Arq aborts a job only when its worker runs with allow_abort_jobs=True (in WorkerSettings); "
                 "without it the abort request waits in arq:abort and the job runs to its end.")  # fmt: skip

    def stop(self, queue: str, job_id: str) -> str | None:
        """Ask arq's workers to abort the running job (as ``Job.abort`` does). NotFound when it is not running."""
        detail = self.job(queue, job_id)  # type: ignore[attr-defined]
        if detail.state != "in_progress":
            raise NotFound(f"Arq job {job_id!r} is {(detail.state or 'in no known state').replace('_', ' ')}, not running")
        with redis_errors():
            self.client.zadd(ABORT_KEY, {job_id: int(time.time() * 1000)})
        return detail.worker

    def pause(self, queue: str, paused: bool) -> bool:
        raise Unsupported("Arq cannot pause a queue: its workers poll the queue with no switch to stop taking jobs")
