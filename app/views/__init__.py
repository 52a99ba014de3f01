"""The views: HTML pages (with their htmx fragments), the JSON API v1, alerts,
bulk operations, triage, audit, login, health and metrics — a blueprint each —
and what they share: request parsing (``params``), one set of error answers
(``errors``), page-or-fragment (``htmx``), template helpers (``jinja``), the
JSON shapes (``shapes``), the overview's listing model (``listing``) and the
OpenAPI description (``openapi``).

Views are thin: parse the request, call the monitor, one adapter or one
service, render. ``init_app`` registers everything.
"""

from __future__ import annotations

from flask import Flask, current_app, g

from queuewatch.adapters.decoding import payload

from queuewatch.snapshots.monitor import Monitor
from queuewatch.snapshots.recorder import Recorder


def monitor() -> Monitor:
    return current_app.extensions["queuewatch.monitor"]


def recorder() -> Recorder:
    return current_app.extensions["queuewatch.recorder"]


def init_app(app: Flask) -> None:
    """Template helpers, every blueprint, and the error answers."""
    from . import alerts, api, audit, auth, control, errors, health, jinja, jobs, metrics, openapi, operations, pages, paths, triage
    from . import functions, periodic

    app.url_map.converters["segment"] = paths.SegmentConverter
    app.wsgi_app = paths.RawSegments(app.wsgi_app)  # type: ignore[method-assign]
    jinja.init_app(app)
    for blueprint in (pages.bp, api.bp, health.bp, metrics.bp, auth.bp, audit.bp, openapi.bp, alerts.bp, alerts.api,
                      operations.bp, operations.api, triage.bp, triage.api):  # fmt: skip
        app.register_blueprint(blueprint)
    app.register_blueprint(jobs.api, name="api.jobs")  # named into api.* and pages.*: the same roles
    app.register_blueprint(jobs.bp, name="pages.jobs")
    app.register_blueprint(periodic.api, name="api.periodic")  # periodic work (issue 20): reads only
    app.register_blueprint(periodic.bp, name="pages.periodic")
    functions.init_app(app)  # per-function metrics (issue 18): API, page, and the sampler's tick
    app.register_blueprint(control.api, name="api.control")
    app.register_blueprint(control.bp, name="pages.control")
    # Worker commands: a name no policy row matches, so they need admin.
    app.register_blueprint(control.admin_api, name="control_admin_api")
    app.register_blueprint(control.admin, name="control_admin")
    errors.init_app(app)

    @app.before_request
    def _decode_time_box() -> None:  # payloads decoded for one request share a time budget
        g.decode_box = payload.start_time_box(float(app.config["DECODE_SECONDS"]))

    @app.teardown_request
    def _end_decode_time_box(_exc: BaseException | None) -> None:
        token = g.pop("decode_box", None)
        if token is not None:
            payload.end_time_box(token)
