"""Requeue, delete and purge: the one path every move takes, from a page, the
API or a background operation.

``move`` calls the adapter and tells the monitor that cached reads are stale;
``perform`` (a page's or the API's action) also writes the audit entry
(``security.audit``: the state store and one JSON line on the
``queuewatch.audit`` logger) whether the action succeeded or failed. Bulk
operations (``operations``) audit once at start and end, not per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from queuewatch.adapters.base import ALL, ActionResult, JobDetail, Selection, Worker
from queuewatch.adapters.errors import Interrupted
from queuewatch.security import audit
from queuewatch.snapshots.monitor import Monitor

ACTIONS = ("requeue", "delete", "purge")


def move(monitor: Monitor, backend: str, system: str, queue: str, action: str, ids: Selection = ALL,
         forget_reads: bool = True) -> ActionResult:  # fmt: skip
    """Run ``action`` through the queue's adapter. Raises the adapter's errors.

    ``forget_reads``: clear the shared reads so every viewer sees the effect (a
    background operation does it once at the end instead of after every chunk).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    try:
        adapter = monitor.adapter(backend, system)
        return adapter.purge(queue) if action == "purge" else getattr(adapter, action)(queue, ids)
    finally:
        if forget_reads:
            monitor.changed()


def perform(monitor: Monitor, backend: str, system: str, queue: str, action: str, ids: Selection = ALL) -> ActionResult:
    """Run ``action`` on a queue and audit it. Raises the adapter's errors."""
    where = {"backend": backend, "system": system, "queue": queue, "ids": "all" if ids is ALL else list(ids)}
    try:
        result = move(monitor, backend, system, queue, action, ids)
    except Interrupted as exc:  # part of it was done: the audit says how much
        audit.record(action, **where, affected=exc.done.affected, result=f"interrupted: {exc}"[:500])  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        audit.record(action, **where, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    audit.record(action, **where, affected=result.affected, result=outcome(result))
    return result


def outcome(result: ActionResult) -> str:
    """The audit's word for what an action did: "ok" only when it did what was asked."""
    left = len(result.not_found)
    if not left:
        return "ok"
    missed = f"{left:,} not found or not possible"
    return f"nothing done: {missed}" if result.affected == 0 else f"partly done: {missed}"


@dataclass(frozen=True)
class Offer:
    """What a job's page offers: requeue and delete only where the job's state allows them, and why not."""

    requeue: bool
    delete: bool
    why_not: str | None = None  # a sentence for the operator when something is not offered
    orphaned_by: str | None = None  # the dead (or unregistered) worker a running job was left by


def offer(job: JobDetail, workers: Iterable[Worker], *, backend: str, system: str, inspected: bool = False) -> Offer:
    """Requeue and delete act on a failed list: offer them for a failed job (or a dead letter read by an
    inspection), and say why not for a job in another state — a running job, or one its dead worker left
    "running" (``workers``: the snapshot's, to tell a live worker from a dead one)."""
    if inspected or job.state in (None, "failed"):
        return Offer(True, True)
    state = job.state.replace("_", " ")
    if job.state == "in_progress":
        mine = [w for w in workers if (w.backend, w.system, w.name) == (backend, system, job.worker)]
        if job.worker and (not mine or not any(w.alive for w in mine)):
            return Offer(False, False, (
                f"Its worker {job.worker} is {'dead' if mine else 'no longer registered'}: the job was left marked as "
                "running, and is not in the failed list, so it cannot be requeued or deleted here yet. "
                + ORPHANED.get(system, "The system moves such a job to its failed list by itself once its running "
                               "entry expires; then it can be requeued.")), orphaned_by=job.worker)  # fmt: skip
        on = f" on worker {job.worker}" if job.worker else ""
        return Offer(False, False, f"It is running{on}: only a failed job can be requeued or deleted. Wait for it to "
                     "end (or stop it from the in-progress list, where the system allows it).")  # fmt: skip
    return Offer(False, False, f"It is {state}, not failed: requeue and delete act on the failed list only. "
                 "Its page among the jobs in every state shows what can be done with it.")  # fmt: skip


# How each system ends a job whose worker died while running it.
ORPHANED = {
    "rq": (
        'RQ moves it to the failed registry ("abandoned") when its entry in the started registry expires '
        "(the job's timeout after its worker's last heartbeat) and a live worker of this queue cleans the registries "
        "(every 10 minutes by default); then it can be requeued."
    ),
}
