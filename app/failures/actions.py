"""Requeue, delete and purge: the one path every move takes, from a page, the
API or a background operation.

``move`` calls the adapter and tells the monitor that cached reads are stale;
``perform`` (a page's or the API's action) also writes the audit entry
(``security.audit``: the state store and one JSON line on the
``queuewatch.audit`` logger) whether the action succeeded or failed. Bulk
operations (``operations``) audit once at start and end, not per chunk.
"""

from __future__ import annotations

from queuewatch.adapters.base import ALL, ActionResult, Selection
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
    audit.record(action, **where, affected=result.affected)
    return result
