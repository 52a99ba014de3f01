"""A queue's failed list as the pages and the API read it: a page of the
adapter's list (shared by viewers for an interval), a filtered walk within a
time budget, or — where reading the list is an inspection (RabbitMQ dead
letters) — a page of the inspection the operator asked for, held in memory.
A GET never inspects: without a held inspection there is no list, only the
offer to inspect (``run_inspection``, a POST).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from queuewatch.adapters.base import Adapter, FailedJob, Page
from queuewatch.failures import triage
from queuewatch.failures.inspections import Held, HeldInspections, Reader
from queuewatch.security import audit

from . import monitor
from .errors import Refused


@dataclass(frozen=True)
class FailedView:
    page: Page[FailedJob] | None  # None: an inspection is needed first
    scan: triage.Scan | None  # a filtered walk, when a filter is active
    inspecting: bool  # reading this list is an inspection
    held: Held | None  # the inspection shown
    warning: str | None  # what to read before inspecting (a quorum queue)


def inspections() -> HeldInspections:
    return current_app.extensions["queuewatch.inspections"]


def held_inspection(backend: str, system: str, queue: str) -> Held | None:
    """The inspection the request names (``?inspection=ID``), if this process holds it."""
    return inspections().get(request.args.get("inspection"), backend, system, queue)


def failed_view(backend: str, system: str, queue: str, adapter: Adapter, flt: triage.Filter, limit: int,
                cursor: str | None) -> FailedView:  # fmt: skip
    inspecting = monitor().call(backend, lambda: adapter.inspects(queue))
    if inspecting:
        held = held_inspection(backend, system, queue)
        if held is None:
            return FailedView(None, None, True, None, monitor().call(backend, lambda: adapter.inspection_warning(queue)))
        reader = Reader(held.inspection, walk_page=adapter.walk_page)
        if flt.active:  # pure: the rows are in memory
            scan = triage.scan(reader, queue, flt, want=limit, cursor=cursor)  # type: ignore[arg-type]
            return FailedView(Page(scan.rows, scan.total, scan.next_cursor), scan, True, held, None)
        return FailedView(held.inspection.page(cursor, limit), None, True, held, None)
    if flt.active:  # walk the list within a time budget; the page says how far it got
        key = ("scan", backend, system, queue, tuple(sorted(flt.args().items())), limit, cursor)
        scan = monitor().read(backend, key, lambda: triage.scan(adapter, queue, flt, want=limit, cursor=cursor), costly=True)
        return FailedView(Page(scan.rows, scan.total, scan.next_cursor), scan, False, None, None)
    page = monitor().read(backend, ("failed", backend, system, queue, limit, cursor), lambda: adapter.failed(queue, limit, cursor))
    return FailedView(page, None, False, None, None)


def require_inspection(backend: str, system: str, queue: str) -> Held | None:
    """For the API: None where the list is read directly; the held inspection where it is one;
    409 ``inspection_required`` when the request names none this process holds."""
    adapter = monitor().adapter(backend, system)
    if not monitor().call(backend, lambda: adapter.inspects(queue)):
        return None
    held = held_inspection(backend, system, queue)
    if held is None:
        raise Refused(f"Reading the dead letters of {queue!r} is an inspection: RabbitMQ takes each message and "
                      "gives it back, and counts that as a delivery. POST …/inspect first, then read the pages of "
                      "that inspection with ?inspection=ID.", code="inspection_required")  # fmt: skip
    return held


def run_inspection(backend: str, system: str, queue: str, *, confirmed: bool) -> Held:
    """One inspection, asked for by the operator: refused (409) on a queue whose warning they
    have not confirmed; audited, since it raises the messages' delivery counts."""
    adapter = monitor().adapter(backend, system)
    warning = monitor().call(backend, lambda: adapter.inspection_warning(queue))
    if warning and not confirmed:
        raise Refused(f"{warning} Confirm to inspect it anyway.", code="confirmation_required")
    try:
        inspection = monitor().call(backend, lambda: adapter.inspect(queue))
    except Exception as exc:
        audit.record("inspect", backend=backend, system=system, queue=queue, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    principal = g.get("principal")
    held = inspections().put(backend, system, queue, inspection, principal.name if principal else "anonymous")
    total = "?" if inspection.total is None else f"{inspection.total:,}"
    audit.record("inspect", backend=backend, system=system, queue=queue, affected=len(inspection.rows),
                 result=f"ok: read {len(inspection.rows):,} of {total} (inspection {held.id})")  # fmt: skip
    return held
