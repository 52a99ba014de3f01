"""JSON API v1 (DESIGN.md): queues, workers, failed jobs, and the actions on them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from queuewatch.adapters.errors import BackendUnavailable
from queuewatch.failures import actions, triage
from queuewatch.failures.inspections import Held
from queuewatch.snapshots import history

from . import listing, monitor, recorder
from . import shapes as serialize
from .failed_lists import failed_view, require_inspection, run_inspection
from .params import fields_arg, json_body, minutes_arg, page_limit, points_arg, selection, series_arg, since_arg

bp = Blueprint("api", __name__, url_prefix="/api/v1")
QUEUE = "/queues/<backend>/<system>/<segment:queue>"


@bp.get("/backends")
def backends() -> Response:
    """Every configured backend, up or down, and the systems found on it."""
    return jsonify({"backends": [serialize.backend_json(b) for b in monitor().snapshot().backends]})


@bp.get("/queues")
def queues() -> Response:
    """Every queue of every system on every backend; optionally searched, filtered, sorted and paged like the overview."""
    snapshot = monitor().snapshot()
    if not any(name in request.args for name in listing.LISTING_ARGS):
        return jsonify({"queues": [serialize.queue_json(q) for q in snapshot.queues]})
    query = listing.queue_query(request.args, {b.name for b in snapshot.backends})
    paged = "page" in request.args or "per" in request.args
    if not paged:
        query = replace(query, per=max(1, len(snapshot.queues)))
    page = listing.queue_page(snapshot.queues, query, listing.alerting_queues() if query.state == "alerting" else ())
    answer: dict[str, Any] = {"queues": [serialize.queue_json(q) for q in page.rows], "total": page.total,
                              "matched": page.matched}  # fmt: skip
    if paged:
        answer.update(page=page.query.page, pages=page.pages, per=page.query.per)
    return jsonify(answer)


@bp.get(QUEUE)
def queue(backend: str, system: str, queue: str) -> Response:
    """One queue's counts."""
    return jsonify(serialize.queue_json(monitor().queue(backend, system, queue)))


@bp.get("/workers")
def workers() -> Response:
    """Every registered worker, alive or dead."""
    return jsonify({"workers": [serialize.worker_json(w) for w in monitor().snapshot().workers]})


@bp.get(QUEUE + "/failed")
def failed(backend: str, system: str, queue: str) -> Response:
    """One page of a queue's failed jobs, newest first; with a filter, the matches of a walk within a time budget.
    Dead letters (RabbitMQ): a page of the inspection named by ``?inspection=`` (409 without one)."""
    limit = page_limit(request.args.get("limit"), 50)
    cursor = request.args.get("cursor") or None
    adapter = monitor().adapter(backend, system)
    flt = triage.Filter.from_args(request.args)  # FilterError: 400 (views.init_errors)
    require_inspection(backend, system, queue)  # 409 where reading the list would be an inspection
    view = failed_view(backend, system, queue, adapter, flt, limit, cursor)
    assert view.page is not None
    answer: dict[str, Any] = {"jobs": [serialize.failed_json(j) for j in view.page.items], "total": view.page.total,
                              "next_cursor": view.page.next_cursor}  # fmt: skip
    if view.scan is not None:
        answer |= {"examined": view.scan.examined, "partial": view.scan.partial, "elapsed_seconds": round(view.scan.elapsed, 3)}
    else:
        answer |= {"prev_cursor": view.page.prev_cursor, "offset": view.page.offset}
    if view.held is not None:
        answer |= inspection_json(view.held)
    return jsonify(answer)


@bp.get(QUEUE + "/jobs/<segment:job_id>")
def job(backend: str, system: str, queue: str, job_id: str) -> Response:
    """One job in full: decoded args, traceback. A dead letter: from the inspection named by ``?inspection=``."""
    held = require_inspection(backend, system, queue)
    if held is not None:
        return jsonify(serialize.job_json(held.inspection.detail(job_id)) | inspection_json(held))
    adapter = monitor().adapter(backend, system)
    return jsonify(serialize.job_json(monitor().call(backend, lambda: adapter.job(queue, job_id))))


@bp.post(QUEUE + "/inspect")
def inspect(backend: str, system: str, queue: str) -> Response:
    """Read a queue's dead letters once (RabbitMQ counts a delivery): the first page and the inspection's id,
    whose pages and jobs are then read with ``?inspection=ID``. ``{"confirm": true}`` for a quorum queue."""
    body = json_body()
    limit = page_limit(str(body.get("limit", "50")), 50)
    held = run_inspection(backend, system, queue, confirmed=body.get("confirm") is True)
    page = held.inspection.page(None, limit)
    return jsonify({"jobs": [serialize.failed_json(j) for j in page.items], "total": page.total,
                    "next_cursor": page.next_cursor} | inspection_json(held))  # fmt: skip


def inspection_json(held: Held) -> dict[str, Any]:
    inspection = held.inspection
    return {"inspection": {"id": held.id, "taken_at": serialize.time_json(inspection.taken_at), "by": held.user,
                           "read": len(inspection.rows), "truncated": inspection.truncated, "notes": list(inspection.notes)}}  # fmt: skip


@bp.post(QUEUE + "/failed/requeue")
def requeue(backend: str, system: str, queue: str) -> Response:
    """Move failed jobs back to their queue."""
    body = json_body()
    result = actions.perform(monitor(), backend, system, queue, "requeue", selection(body.get("ids"), body.get("all")))
    return jsonify({"requeued": result.affected, "not_found": list(result.not_found)})


@bp.post(QUEUE + "/failed/delete")
def delete(backend: str, system: str, queue: str) -> Response:
    """Delete failed jobs."""
    body = json_body()
    result = actions.perform(monitor(), backend, system, queue, "delete", selection(body.get("ids"), body.get("all")))
    return jsonify({"deleted": result.affected, "not_found": list(result.not_found)})


@bp.post(QUEUE + "/purge")
def purge(backend: str, system: str, queue: str) -> Response:
    """Remove a queue's waiting jobs (never its failed jobs)."""
    json_body()
    result = actions.perform(monitor(), backend, system, queue, "purge")
    return jsonify({"purged": result.affected})


@bp.get(QUEUE + "/history")
def queue_history(backend: str, system: str, queue: str) -> Response:
    """A queue's counts and rates over the last ``minutes``, or only the points after ``since``."""
    minutes = minutes_arg(request.args.get("minutes"))
    after = since_arg(request.args.get("since"))
    max_points = points_arg(request.args.get("points"))
    monitor().adapter(backend, system)  # 404 for an unknown backend or system
    key = history.series_key(backend, system, queue)
    reading = recorder().read([key], minutes, after, max_points)
    buckets = history.thin(reading.series.get(key, []), max_points, history.QUEUE_METRICS)
    if not buckets and after is None:
        try:
            monitor().queue(backend, system, queue)  # 404 if there is no such queue either
        except BackendUnavailable:
            pass  # history is what it is while the backend is down
    return jsonify(
        {
            "backend": backend,
            "system": system,
            "queue": queue,
            "minutes": minutes,
            "tier": reading.tier.name,
            "step_seconds": reading.step_seconds,
            "rates": serialize.rates_json(buckets[-1].flags if buckets else 0),
            "points": [serialize.point_json(b, history.QUEUE_METRICS) for b in buckets],
        }
    )


@bp.get("/history")
def all_history() -> Response:
    """Every queue's and backend's history in one answer; ``series`` (the overview's sparklines: its page's
    queues) and ``fields`` narrow it."""
    minutes = minutes_arg(request.args.get("minutes"))
    after = since_arg(request.args.get("since"))
    max_points = points_arg(request.args.get("points"), default=120)
    fields = fields_arg(request.args.get("fields"))
    series = series_arg(request.args.get("series"))
    reading = monitor().shared(
        ("history", minutes, after, max_points, fields, series),
        lambda: recorder().read(series, minutes, after, max_points, fields=fields),
    )
    queues, backends = [], []
    for key, buckets in sorted(reading.series.items()):
        parts = history.series_parts(key)
        metrics = history.metrics_of(key)
        points = [serialize.point_json(b, metrics, fields if len(parts) == 3 else None, ranges=False)
                  for b in history.thin(buckets, max_points, metrics)]  # fmt: skip
        if len(parts) == 3:
            queues.append({"backend": parts[0], "system": parts[1], "name": parts[2], "points": points})
        else:
            backends.append({"name": parts[0], "points": points})
    return jsonify({"minutes": minutes, "tier": reading.tier.name, "step_seconds": reading.step_seconds,
                    "queues": queues, "backends": backends})  # fmt: skip


@bp.get("/sampler")
def sampler() -> Response:
    """Which dashboard process samples (holds the lease), and how often."""
    return jsonify(current_app.extensions["queuewatch.sampler"].status())
