"""Bulk operations (app/failures/operations.py) in the browser and in the API.

Pages: ``POST /operations`` starts counting what a form selected (all failed
jobs of a queue, or those a filter or group matches, or a group across every
queue) and redirects to the operation's page, which shows the count to
confirm, then a progress bar with a cancel button. The page refreshes itself
while the operation is active; any viewer sees the same.

API: ``POST /api/v1/operations`` → 202 and the operation; ``GET`` one or the
list; ``POST .../confirm`` with ``{"total": N}``; ``POST .../cancel``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, flash, g, jsonify, redirect, request, url_for

from queuewatch.failures.operations import Operation, Operations, Target
from queuewatch.failures.triage import Filter

from . import htmx, monitor
from .params import BadRequest, json_body

bp = Blueprint("operations", __name__)
api = Blueprint("operations_api", __name__, url_prefix="/api/v1")


def operations() -> Operations:
    return current_app.extensions["queuewatch.operations"]


@bp.app_context_processor
def _active_operations() -> dict[str, Any]:
    """``active_ops()`` for the navigation: operations counting, waiting or running, as every viewer sees them."""

    def active_ops() -> list[Operation]:
        try:
            return [op for op in operations().recent(20) if op.active]
        except Exception:  # the state store is down: the page still renders (the operations page says why)
            return []

    return {"active_ops": active_ops}


def _user() -> str:
    principal = g.get("principal")
    return principal.name if principal else "anonymous"


def failing_targets() -> list[Target]:
    """Every queue with failed jobs in the snapshot, most first, on Redis backends (reading RabbitMQ dead letters is an inspection)."""
    snapshot = monitor().snapshot()
    redis_backends = {b.name for b in snapshot.backends if b.kind == "redis"}
    failing = [q for q in snapshot.queues if q.failed and q.backend in redis_backends]
    failing.sort(key=lambda q: -(q.failed or 0))  # the largest first: a grouping short of time reads them first
    return [(q.backend, q.system, q.name) for q in failing]


def _targets(form: Any) -> list[Target]:
    if form.get("scope") == "everywhere":
        return failing_targets()
    names = [form.get("backend"), form.get("system"), form.get("queue")]
    if not all(isinstance(n, str) and n for n in names):
        raise BadRequest("name the queue (backend, system, queue) or send scope=everywhere")
    return [tuple(names)]  # type: ignore[list-item]


@bp.post("/operations")
def start() -> Response:
    """Count what the form selected; the operator confirms the exact count on the next page."""
    form = request.form
    flt = Filter.from_args({k: v for k, v in form.items() if k in Filter.PARAMS.values()})
    op = operations().create(form.get("action", ""), _targets(form), flt, _user())
    return redirect(url_for("operations.show", op_id=op.id), code=303)


@bp.get("/operations")
def index() -> Response:
    return htmx.render("operations.html", "partials/operations_table.html", ops=operations().recent(50),
                       snapshot=monitor().snapshot())  # fmt: skip


@bp.get("/operations/active")
def active() -> Response:
    """The navigation's count of active operations (a fragment that refreshes itself)."""
    return htmx.render("partials/active_ops.html", "partials/active_ops.html")


@bp.get("/operations/<op_id>")
def show(op_id: str) -> Response:
    return htmx.render("operation.html", "partials/operation.html", op=operations().get(op_id), snapshot=monitor().snapshot())


@bp.post("/operations/<op_id>/confirm")
def confirm(op_id: str) -> Response:
    raw = request.form.get("total", "")
    if not raw.isdigit():
        raise BadRequest("confirm the count shown: total must be a whole number")
    op = operations().confirm(op_id, int(raw), _user())
    flash(f"{op.action.capitalize()} of {op.total:,} jobs started.", "success")
    return redirect(url_for("operations.show", op_id=op.id), code=303)


@bp.post("/operations/<op_id>/cancel")
def cancel(op_id: str) -> Response:
    op = operations().cancel(op_id, _user())
    flash("Discarded." if op.state == "cancelled" else "Cancelling: the chunk in flight finishes, the rest stay failed."
          if op.active else f"Nothing to cancel: the operation is {op.state}.", "warning")  # fmt: skip
    return redirect(url_for("operations.show", op_id=op.id), code=303)


# -- API -------------------------------------------------------------------------


def _json(op: Operation, status: int = 200) -> tuple[Response, int]:
    return jsonify(op.to_json()), status


@api.post("/operations")
def api_start() -> tuple[Response, int]:
    """Start counting: {"action": "requeue"|"delete", "backend", "system", "queue" | "scope": "everywhere", "filter": {...}}."""
    body = json_body()
    flt = body.get("filter") or {}
    if not isinstance(flt, dict):
        raise BadRequest('"filter" must be an object such as {"exception": "Timeout", "q": "invoice"}')
    op = operations().create(str(body.get("action", "")), _targets(body), Filter.from_args(flt), _user())
    return _json(op, 202)


@api.get("/operations")
def api_index() -> Response:
    return jsonify({"operations": [op.to_json() for op in operations().recent(50)]})


@api.get("/operations/<op_id>")
def api_show(op_id: str) -> tuple[Response, int]:
    return _json(operations().get(op_id))


@api.post("/operations/<op_id>/confirm")
def api_confirm(op_id: str) -> tuple[Response, int]:
    total = json_body().get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        raise BadRequest('send {"total": N}, the count the operation shows')
    return _json(operations().confirm(op_id, total, _user()))


@api.post("/operations/<op_id>/cancel")
def api_cancel(op_id: str) -> tuple[Response, int]:
    return _json(operations().cancel(op_id, _user()))
