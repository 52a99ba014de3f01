"""Blueprints: pages (HTML + htmx fragments), the JSON API v1, health and metrics.

Views are thin: parse the request, call the monitor or one adapter, render.
"""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Flask, Response, current_app, jsonify, request

from queuewatch.adapters.base import ALL, Selection
from queuewatch.adapters.errors import AdapterError, BackendUnavailable, NotFound, Unsupported

from queuewatch.snapshots.history import MAX_MINUTES, QUEUE_METRICS
from queuewatch.snapshots.monitor import Monitor
from queuewatch.snapshots.recorder import Recorder

MAX_IDS = 10_000  # per request; larger selections use "all"
MAX_PAGE = 500


def monitor() -> Monitor:
    return current_app.extensions["queuewatch.monitor"]


def recorder() -> Recorder:
    return current_app.extensions["queuewatch.recorder"]


def status_of(error: AdapterError) -> int:
    """The HTTP status for an adapter error."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Unsupported):
        return 409
    if isinstance(error, BackendUnavailable):
        return 503
    return 500


def code_of(error: AdapterError) -> str:
    return {404: "not_found", 409: "unsupported", 503: "backend_unavailable"}.get(status_of(error), "error")


class BadRequest(ValueError):
    """The request's own fault: answered 400 with the message."""


def selection(ids: object, everything: object) -> Selection:
    """ALL or a list of ids from a request. Raises BadRequest."""
    if everything is True:
        if ids:
            raise BadRequest('send either "ids" or "all": true, not both')
        return ALL
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BadRequest('send "ids": a non-empty list of job ids, or "all": true')
    if len(ids) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS:,} ids per request; use \"all\": true for more")
    return ids


def page_limit(raw: str | None, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def minutes_arg(raw: str | None, default: float = 60) -> float:
    """The span of a history request, in minutes (fractions allowed)."""
    if raw in (None, ""):
        return default
    try:
        minutes = float(raw)
    except ValueError:
        raise BadRequest(f"minutes must be a number, not {raw!r}") from None
    if not 0 < minutes <= MAX_MINUTES:
        raise BadRequest(f"minutes must be more than 0 and at most {MAX_MINUTES:,} (90 days)")
    return minutes


def since_arg(raw: str | None) -> int | None:
    """``since``, an ISO 8601 time (a point's ``t``), as ms since the epoch."""
    if raw in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"since must be an ISO 8601 time such as 2026-11-21T06:48:15Z, not {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def points_arg(raw: str | None, default: int = 4000) -> int:
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise BadRequest("points must be a whole number from 1 to 10000")
    return int(raw)


def fields_arg(raw: str | None) -> tuple[str, ...] | None:
    """Which metrics to answer with (comma-separated); all if absent."""
    if raw in (None, ""):
        return None
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    unknown = [f for f in fields if f not in QUEUE_METRICS]
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(QUEUE_METRICS)}")
    return fields


TITLES = {400: "Bad request", 404: "Not found", 409: "Not possible", 503: "Backend unavailable"}
CODES = {400: "bad_request", 404: "not_found", 409: "conflict", 503: "backend_unavailable"}


def answer_error(status: int, code: str, message: str) -> Response | tuple[Response, int]:
    """An error as the request's side expects it: JSON under /api/, else the error page (or its htmx fragment)."""
    if request.path.startswith("/api/"):
        return jsonify({"error": {"code": code, "message": message}}), status
    from . import htmx

    return htmx.render("error.html", "partials/error_body.html", status=status, title=TITLES.get(status, "Error"), message=message)


def init_errors(app: Flask) -> None:
    """The app-wide answers to the errors views raise, for every blueprint that has no handler of its own:
    adapter errors, bad requests, bad filters (app/triage.py) and impossible operations (app/bulk.py)."""
    from queuewatch.failures.operations import OperationError
    from queuewatch.failures.triage import FilterError

    app.register_error_handler(AdapterError, lambda exc: answer_error(status_of(exc), code_of(exc), str(exc)))
    app.register_error_handler(BadRequest, lambda exc: answer_error(400, "bad_request", str(exc)))
    app.register_error_handler(FilterError, lambda exc: answer_error(400, "bad_request", str(exc)))
    app.register_error_handler(OperationError, lambda exc: answer_error(exc.status, CODES.get(exc.status, "error"), str(exc)))
