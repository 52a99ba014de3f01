"""``GET /healthz``: the dashboard process answers (backends may still be down:
``/api/v1/backends`` says which). ``GET /readyz``: it can do its work — its own
store can be written (a real write) — with the reason when not (503)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from queuewatch.security.auth import can

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The dashboard process answers."""
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the dashboard's own store can be written; its notices and each backend's status."""
    store = current_app.extensions["queuewatch.store"]
    problem = store.check()
    snapshot = current_app.extensions["queuewatch.monitor"].snapshot()
    body: dict = {"status": "ready" if problem is None else "unready"}
    if can("viewer"):  # probes are anonymous; the details are for those who may see the dashboard
        body |= {"store": {"location": store.location, "ok": problem is None, "error": problem, "notices": list(store.notices)},
                 "backends": {b.name: b.status for b in snapshot.backends}}  # fmt: skip
    return jsonify(body), 200 if problem is None else 503
