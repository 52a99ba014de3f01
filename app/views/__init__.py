"""Blueprints: pages (HTML + htmx fragments), the JSON API v1, health and metrics.

Views are thin: parse the request, call the monitor or one adapter, render.
"""

from __future__ import annotations

from flask import current_app

from queuewatch.adapters.base import ALL, Selection
from queuewatch.adapters.errors import AdapterError, BackendUnavailable, NotFound, Unsupported

from ..monitor import Monitor

MAX_IDS = 10_000  # per request; larger selections use "all"
MAX_PAGE = 500


def monitor() -> Monitor:
    return current_app.extensions["queuewatch.monitor"]


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
