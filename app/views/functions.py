"""Per-function metrics: ``GET /api/v1/functions``, one function's points over time, and the
Functions page. Everything here reads the state store (what the sampler wrote), never a
backend: a page view costs the monitored Redis nothing. Reads are shared by every viewer
for one poll interval."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from queuewatch.functions.service import WINDOWS, FunctionMetrics, Row

from . import htmx, monitor
from .params import BadRequest, minutes_arg

api = Blueprint("functions", __name__, url_prefix="/api/v1")
bp = Blueprint("functions", __name__)

MAX_TEXT = 512  # characters of a filter or name
SORTS = {
    "p95": lambda r: (-(r.runtime_p95 if r.runtime_p95 is not None else -1), -(r.processed or 0)),
    "failures": lambda r: (-(r.failed or 0), -(r.failure_rate or 0)),
    "busiest": lambda r: (-(r.processed or 0),),
    "wait": lambda r: (-(r.wait_p95 if r.wait_p95 is not None else -1),),
    "name": lambda r: (r.function.lower(),),
}


def init_app(app: Flask) -> None:
    """The service (kept in app.extensions) and its tick in the sampler."""
    metrics = FunctionMetrics(app.extensions["queuewatch.monitor"], app.extensions["queuewatch.store"], float(app.config["POLL"]))
    app.extensions["queuewatch.functions"] = metrics
    app.extensions["queuewatch.sampler"].on_tick(metrics.collect)
    app.register_blueprint(api, name="api.functions")  # api.* and pages.*: the roles of their families
    app.register_blueprint(bp, name="pages.functions")


def functions_service() -> FunctionMetrics:
    return current_app.extensions["queuewatch.functions"]


def _text(name: str, required: bool = False) -> str | None:
    value = request.args.get(name)
    if value in (None, ""):
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _filters() -> tuple[float, str | None, str | None, str | None]:
    return minutes_arg(request.args.get("minutes")), _text("backend"), _text("system"), _text("queue")


def _rows(minutes: float, backend: str | None, system: str | None, queue: str | None) -> list[Row]:
    service = functions_service()
    return monitor().shared(("functions", minutes, backend, system, queue), lambda: service.table(minutes, backend, system, queue))


def row_json(row: Row) -> dict[str, Any]:
    return {"backend": row.backend, "system": row.system, "queue": row.queue, "function": row.function,
            "processed": row.processed, "failed": row.failed,
            "failure_rate": None if row.failure_rate is None else round(row.failure_rate, 4),
            "runtime_p50_seconds": row.runtime_p50, "runtime_p95_seconds": row.runtime_p95,
            "runtime_max_seconds": row.runtime_max, "wait_p50_seconds": row.wait_p50,
            "wait_p95_seconds": row.wait_p95}  # fmt: skip


@api.get("/functions")
def list_functions() -> Response:
    """Per function and queue over the last ``minutes``: processed, failed, runtime and wait percentiles."""
    minutes, backend, system, queue = _filters()
    rows = _rows(minutes, backend, system, queue)
    return jsonify({"minutes": minutes, "functions": [row_json(r) for r in rows], "notes": functions_service().notes()})


@api.get("/functions/series")
def function_series() -> Response:
    """One function's processed, failed and percentiles per step over the last ``minutes`` (its chart)."""
    minutes = minutes_arg(request.args.get("minutes"))
    key = (_text("backend", True), _text("system", True), _text("queue", True), _text("function", True))
    service = functions_service()
    points = monitor().shared(("function-series", minutes, key), lambda: service.series(key, minutes))  # type: ignore[arg-type]
    return jsonify({"backend": key[0], "system": key[1], "queue": key[2], "function": key[3], "minutes": minutes,
                    "points": points})  # fmt: skip


@bp.get("/functions")
def functions_page() -> Response:
    """Every function's throughput, failures, runtime and wait over a window, slowest p95 first."""
    minutes = minutes_arg(request.args.get("minutes"), 60)
    backend, system, queue = _text("backend"), _text("system"), _text("queue")
    search = (_text("q") or "").lower()
    sort = request.args.get("sort") or "p95"
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    rows = [r for r in _rows(minutes, backend, system, queue) if not search or search in r.function.lower()]
    rows.sort(key=SORTS[sort])
    chosen = None
    if request.args.get("function"):
        chosen = {"backend": _text("backend", True), "system": _text("system", True), "queue": _text("queue", True),
                  "function": _text("function", True)}  # fmt: skip
    # From what is known without reading a backend: a page view costs the monitored systems nothing.
    systems = sorted({(name, a.system) for name, b in monitor().backends.items() for a in b.present()})
    args = {k: v for k, v in {"minutes": minutes, "sort": sort, "backend": backend, "system": system, "queue": queue,
                              "q": search or None}.items() if v is not None}  # fmt: skip
    return htmx.render("functions.html", "functions.html", rows=rows, minutes=minutes, windows=WINDOWS, sort=sort,
                       filters={"backend": backend, "system": system, "queue": queue, "q": search}, chosen=chosen,
                       notes=functions_service().notes(), systems=systems, args=args)  # fmt: skip
