"""Requeue, delete and purge: the one path every write takes, from page or API.

It calls the adapter, tells the monitor that cached reads are stale, and
writes the audit entry (app/audit.py: the state store and one JSON line on
``queuewatch.security.audit``) whether the action succeeded or failed.
"""

from __future__ import annotations

from queuewatch.adapters.base import ALL, ActionResult, Selection

from queuewatch.security import audit
from queuewatch.snapshots.monitor import Monitor

ACTIONS = ("requeue", "delete", "purge")


def perform(monitor: Monitor, backend: str, system: str, queue: str, action: str, ids: Selection = ALL) -> ActionResult:
    """Run ``action`` on a queue and audit it. Raises the adapter's errors."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    where = {"backend": backend, "system": system, "queue": queue, "ids": "all" if ids is ALL else list(ids)}
    try:
        adapter = monitor.adapter(backend, system)
        if action == "purge":
            result = adapter.purge(queue)
        else:
            result = getattr(adapter, action)(queue, ids)
    except Exception as exc:
        audit.record(action, **where, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        monitor.changed()
    audit.record(action, **where, affected=result.affected)
    return result
