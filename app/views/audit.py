"""The audit log, for admins: a page and ``GET /api/v1/audit`` (newest first, paged by cursor)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from queuewatch.security import audit

from .params import BadRequest, page_limit

bp = Blueprint("audit", __name__)


def _page() -> tuple[list[audit.Entry], str | None, int, str | None]:
    limit = page_limit(request.args.get("limit"), 50)
    cursor = request.args.get("cursor") or None
    try:
        found, next_cursor = audit.entries(current_app.extensions["queuewatch.store"], limit, cursor)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return found, next_cursor, limit, cursor


@bp.get("/audit")
def page() -> str:
    """Every action and login, newest first."""
    found, next_cursor, limit, cursor = _page()
    return render_template("audit.html", entries=found, next_cursor=next_cursor, limit=limit, cursor=cursor)


@bp.get("/api/v1/audit")
def api() -> Response:
    """The audit log as JSON: ``{"entries": [...], "next_cursor"}``."""
    found, next_cursor, _, _ = _page()
    return jsonify({"entries": [audit.entry_json(e) for e in found], "next_cursor": next_cursor})
