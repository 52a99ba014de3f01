"""Requeue, delete and purge: the one path every write takes, from page or API.

It calls the adapter, tells the monitor that cached reads are stale, and logs
the action as one JSON line (the audit log will hang off the same call).
"""

from __future__ import annotations

import json
import logging

from queuewatch.adapters.base import ALL, ActionResult, Selection

from .monitor import Monitor

log = logging.getLogger("queuewatch.actions")

ACTIONS = ("requeue", "delete", "purge")


def perform(monitor: Monitor, backend: str, system: str, queue: str, action: str, ids: Selection = ALL) -> ActionResult:
    """Run ``action`` on a queue. Raises the adapter's errors."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    adapter = monitor.adapter(backend, system)
    try:
        if action == "purge":
            result = adapter.purge(queue)
        else:
            result = getattr(adapter, action)(queue, ids)
    finally:
        monitor.changed()
    log.info(
        json.dumps(
            {
                "event": "action",
                "action": action,
                "backend": backend,
                "system": system,
                "queue": queue,
                "ids": "all" if ids is ALL else list(ids)[:100],
                "affected": result.affected,
                "not_found": len(result.not_found),
            }
        )
    )
    return result
