"""``GET /healthz``: the dashboard process answers (backends may still be down:
``/api/v1/backends`` says which)."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The dashboard process answers."""
    return Response("ok\n", mimetype="text/plain")
