"""Periodic work on every backend: RQ's cron jobs, Arq's cron jobs, Celery beat (celery-redbeat),
with the last run, its outcome, when the next is due and whether it is late (issue 20); and RQ's
job groups (rq 2.x and 3.0), which are work that belongs together rather than work that repeats.

Read when asked, every system of every backend at once, each within ASK_SECONDS (a slow
backend is listed as unreachable, never waited for), and shared between viewers for a
poll interval. The sampler reads the same to feed the "did not run for N x its interval"
alerts (``snapshots/reading.py``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from queuewatch.adapters.base import Adapter
from queuewatch.adapters.errors import AdapterError
from queuewatch.adapters.periodic import Periodic

from . import monitor
from .fanout import ask_everywhere
from .shapes import _time

api = Blueprint("periodic_api", __name__, url_prefix="/api/v1")
bp = Blueprint("periodic_pages", __name__)
ASK_SECONDS = 3.0


def read_everywhere() -> tuple[list[Periodic], list[dict[str, Any]]]:
    """(every periodic schedule, backends or systems that could not be asked)."""
    answers, unreachable = ask_everywhere(monitor(), lambda a: a.periodic(), ASK_SECONDS, shared="periodic",
                                          asks_too=lambda a: type(a).periodic is not Adapter.periodic)  # fmt: skip
    found = [p for _, _, listed in answers for p in listed]
    return sorted(found, key=lambda p: (p.backend, p.system, p.queue or "", p.name)), unreachable


def periodic_json(p: Periodic, now: datetime) -> dict[str, Any]:
    late = p.late_seconds(now)
    lateness = p.lateness(now)
    return {
        "backend": p.backend, "system": p.system, "queue": p.queue, "name": p.name, "function": p.function,
        "schedule": p.schedule, "interval_seconds": p.interval_seconds, "last_run": _time(p.last_run),
        "last_outcome": p.last_outcome, "next_run": _time(p.due()), "next_run_recorded": p.next_run is not None,
        "late": bool(late), "late_seconds": None if late is None else round(late, 1),
        "intervals_since_last_run": None if lateness is None else round(lateness, 2),
        "runner": p.runner, "source": p.source, "runs": p.runs, "notes": list(p.notes),
    }  # fmt: skip


@api.get("/periodic")
def list_periodic() -> Response:
    """Every periodic schedule the storage reveals, with its last run and whether it is late."""
    found, unreachable = read_everywhere()
    now = datetime.now(timezone.utc)
    return jsonify({"periodic": [periodic_json(p, now) for p in found], "unreachable": unreachable})


@bp.get("/periodic")
def periodic_page() -> str:
    found, unreachable = read_everywhere()
    now = datetime.now(timezone.utc)
    rows = [periodic_json(p, now) | {"value": p} for p in found]
    return render_template("periodic.html", rows=rows, unreachable=unreachable, late=sum(1 for r in rows if r["late"]))


def groups_everywhere() -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """(backend, Groups) of every RQ adapter that has job groups; backends that could not be asked."""
    mon = monitor()
    found: list[tuple[str, Any]] = []
    unreachable: list[dict[str, Any]] = []
    for status in mon.snapshot().backends:
        if status.status != "up" or "rq" not in status.systems:
            continue
        adapter = mon.adapter(status.name, "rq")
        if not hasattr(adapter, "groups"):
            continue
        try:
            found.append((status.name, mon.read(status.name, ("rq-groups", status.name), adapter.groups, timeout=ASK_SECONDS)))
        except AdapterError as exc:
            unreachable.append({"backend": status.name, "system": "rq", "error": str(exc)[:300]})
    return found, unreachable


@api.get("/groups")
def list_groups() -> Response:
    """RQ's job groups on every backend, each with its jobs and where they are (bounded)."""
    found, unreachable = groups_everywhere()
    return jsonify({"groups": [{"backend": backend, "name": g.name, "size": g.size, "statuses": dict(g.statuses),
                                "jobs": [{"id": j.id, "queue": j.queue, "status": j.status, "state": j.state} for j in g.jobs],
                                "truncated": g.truncated} for backend, page in found for g in page.groups],
                    "truncated": any(page.truncated for _, page in found), "unreachable": unreachable})  # fmt: skip


@bp.get("/groups")
def groups_page() -> str:
    found, unreachable = groups_everywhere()
    return render_template("groups.html", found=found, unreachable=unreachable)
