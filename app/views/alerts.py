"""Alerts: the alerts page, the banner every page shows, the rule and webhook
forms, and API v1's ``/alerts`` routes (DESIGN.md; webhook routes sit under
``/webhooks`` paths, which the authorization policy treats as admin)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, flash, g, jsonify, redirect, render_template, request, url_for

from queuewatch.alerts import rules as alerts
from queuewatch.alerts.rules import Alert
from queuewatch.alerts.service import AlertService, alert_json
from queuewatch.alerts.webhooks import keep_or_parse
from queuewatch.security import audit

from . import htmx
from .errors import json_error
from .jinja import duration
from .params import BadRequest, json_body, safe_next

bp = Blueprint("alerts", __name__)
api = Blueprint("alerts_api", __name__, url_prefix="/api/v1/alerts")
QUEUE = "/<backend>/<system>/<segment:queue>"


def audit_write(response: Response) -> Response:
    """Every change to rules and webhooks goes to the audit log, like every action on jobs."""
    # Requests refused before they ran (401/403) changed nothing and are not audited.
    if request.method in ("POST", "PUT", "DELETE") and request.endpoint and response.status_code not in (401, 403):
        args = request.view_args or {}
        audit.record(
            request.endpoint.rsplit(".", 1)[-1], backend=args.get("backend"), system=args.get("system"),
            queue=args.get("queue"), result="ok" if response.status_code < 400 else f"refused ({response.status_code})",
        )  # fmt: skip
    return response


bp.after_request(audit_write)
api.after_request(audit_write)


def service() -> AlertService:
    return current_app.extensions["queuewatch.alerts"]


def who() -> str:
    """Who acknowledges or silences: the user or token, else the address of an open dashboard's viewer."""
    principal = g.get("principal")
    if principal is not None and principal.name != "anonymous":
        return principal.name
    return f"someone at {request.remote_addr}"


SILENCES = (("15 min", 900), ("1 h", 3600), ("4 h", 14400), ("24 h", 86400))


def _alert(backend: str, system: str, queue: str, condition: str) -> Alert:
    found = service().find(backend, system, queue, condition) if condition in alerts.CONDITIONS else None
    if found is None:
        raise NotFoundAlert(f"no alert {condition} on {backend}/{system}/{queue}")
    return found


class NotFoundAlert(LookupError):
    pass


def parse_rule(backend: str, system: str, queue: str, body: dict) -> alerts.Rule:
    try:
        return alerts.parse_rule(backend, system, queue, body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _form_fields() -> dict:
    fields = ("max_depth", "for_seconds", "max_oldest_age_seconds", "min_workers", "max_new_failures", "failures_window_seconds",
              "max_periodic_lateness")
    return {name: request.form.get(name, "").strip() for name in fields}


def _back(default: str) -> str:
    return safe_next(request.form.get("next"), default)


# -- pages ----------------------------------------------------------------------------


@bp.get("/alerts")
def alerts_page() -> Response:
    """Current and past alerts, the rules, and where notifications go."""
    s = service()
    return htmx.render("alerts.html", "partials/alerts_current.html", current=s.alerts(), history=s.history(200), rules=s.rules(),
                       webhooks=s.webhooks(), configured=s.configured)  # fmt: skip


@bp.get("/alerts/banner")
def banner() -> str:
    """The firing alerts, for the banner on every page (refreshes itself)."""
    return render_template("partials/alert_banner.html", firing=service().firing())


@bp.post("/alerts/acknowledge")
def acknowledge() -> Response:
    """Acknowledge a firing alert (who and when, shown to every viewer, sent to webhooks)."""
    fields = [request.form.get(n, "") for n in ("backend", "system", "queue", "condition")]
    try:
        service().acknowledge(_alert(*fields), who())
    except (NotFoundAlert, ValueError) as exc:
        flash(f"Not acknowledged: {exc}.", "error")
    else:
        flash(f"Acknowledged {fields[2]} ({alerts.CONDITIONS[fields[3]].label}).", "success")
    return redirect(_back(url_for("alerts.alerts_page")), code=303)


@bp.post("/alerts/silence")
def silence() -> Response:
    """Silence an alert's notifications for a while (0 lifts it)."""
    fields = [request.form.get(n, "") for n in ("backend", "system", "queue", "condition")]
    raw = request.form.get("seconds", "")
    try:
        seconds = float(raw) if raw.replace(".", "", 1).isdigit() else -1
        service().silence(_alert(*fields), who(), seconds)
    except (NotFoundAlert, ValueError) as exc:
        flash(f"Not silenced: {exc}.", "error")
    else:
        flash(f"Silenced {fields[2]} for {duration(seconds)}." if seconds else f"Lifted the silence of {fields[2]}.", "success")
    return redirect(_back(url_for("alerts.alerts_page")), code=303)


@bp.post("/queues" + QUEUE + "/alert-rule")
def save_queue_rule(backend: str, system: str, queue: str) -> Response:
    """Set the queue's own rule from the form next to its chart."""
    here = url_for("pages.queue", backend=backend, system=system, queue=queue)
    try:
        rule = service().put_rule(alerts.parse_rule(backend, system, queue, _form_fields()))
    except ValueError as exc:
        flash(f"The rule was not saved: {exc}.", "error")
    else:
        flash(f"Alert when {alerts.summary(rule, duration)}.", "success")
    return redirect(_back(here), code=303)


@bp.post("/queues" + QUEUE + "/alert-rule/delete")
def delete_queue_rule(backend: str, system: str, queue: str) -> Response:
    """Remove the queue's own rule (a default rule may still apply)."""
    removed = service().delete_rule(backend, system, queue)
    flash("Rule removed." if removed else "There was no rule to remove.", "success" if removed else "warning")
    return redirect(_back(url_for("pages.queue", backend=backend, system=system, queue=queue)), code=303)


@bp.post("/alerts/rules")
def save_default_rule() -> Response:
    """Set a rule for every queue a pattern matches (or one queue), from the alerts page."""
    backend, system, queue = (request.form.get(n, "").strip() or "*" for n in ("backend", "system", "queue"))
    try:
        rule = service().put_rule(alerts.parse_rule(backend, system, queue, _form_fields()))
    except ValueError as exc:
        flash(f"The rule was not saved: {exc}.", "error")
    else:
        flash(f"Rule saved for {rule.backend}/{rule.system}/{rule.queue}.", "success")
    return redirect(url_for("alerts.alerts_page"), code=303)


@bp.post("/alerts/rules/delete")
def delete_rule() -> Response:
    """Remove a rule listed on the alerts page."""
    parts = [request.form.get(n, "") for n in ("backend", "system", "queue")]
    removed = service().delete_rule(*parts)
    flash("Rule removed." if removed else "There was no such rule.", "success" if removed else "warning")
    return redirect(url_for("alerts.alerts_page"), code=303)


@bp.post("/alerts/webhooks")
def save_webhooks() -> Response:
    """Replace the stored webhook targets (one [json=|slack=]URL per line)."""
    try:
        kept = service().webhooks()
        targets = [keep_or_parse(line, kept) for line in request.form.get("webhooks", "").splitlines() if line.strip()]
    except ValueError as exc:
        flash(f"Webhooks not saved: {exc}.", "error")
    else:
        service().put_webhooks(targets)
        flash(f"{len(targets)} webhook target{'' if len(targets) == 1 else 's'} saved.", "success")
    return redirect(url_for("alerts.alerts_page"), code=303)


@bp.post("/alerts/webhooks/test")
def test_webhooks() -> Response:
    """Send a test notification to every target now."""
    results = service().send_test()
    if not results:
        flash("No webhook targets: add one first.", "warning")
    for webhook, problem in results:
        flash(f"Test sent to {webhook.shown}." if problem is None else f"Test to {webhook.shown} failed: {problem}",
              "success" if problem is None else "error")  # fmt: skip
    return redirect(_back(url_for("alerts.alerts_page")), code=303)


# -- API v1 -----------------------------------------------------------------------------


@api.get("")
def list_alerts() -> Response:
    """Every alert's current state (one per queue and rule condition), with who acknowledged or silenced it."""
    s, now = service(), int(time.time() * 1000)
    marks = s.marks()
    return jsonify({"alerts": [alert_json(a, marks.get(a.key), now) for a in s.alerts()]})


@api.post(QUEUE + "/<condition>/acknowledge")
def api_acknowledge(backend: str, system: str, queue: str, condition: str) -> Response | tuple[Response, int]:
    """Acknowledge a firing alert: 200 with the alert; 404 if there is none; 409 unless firing."""
    try:
        alert = _alert(backend, system, queue, condition)
        mark = service().acknowledge(alert, who())
    except NotFoundAlert as exc:
        return json_error(404, "not_found", str(exc))
    except ValueError as exc:
        return json_error(409, "not_firing", str(exc))
    return jsonify(alert_json(alert, mark))


@api.post(QUEUE + "/<condition>/silence")
def api_silence(backend: str, system: str, queue: str, condition: str) -> Response | tuple[Response, int]:
    """Silence an alert's notifications: body {"seconds": 3600} (0 lifts it; at most 7 days)."""
    seconds = json_body().get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise BadRequest('send {"seconds": N}: how long to silence it, 0 to lift the silence')
    try:
        alert = _alert(backend, system, queue, condition)
        mark = service().silence(alert, who(), float(seconds))
    except NotFoundAlert as exc:
        return json_error(404, "not_found", str(exc))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return jsonify(alert_json(alert, mark))


@api.get("/history")
def alert_history() -> Response:
    """Past and current firing episodes, newest first, with start, end and peak."""
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise BadRequest("limit must be a whole number from 1 to 1000")
    return jsonify({"alerts": service().history(int(raw))})


@api.get("/rules")
def list_rules() -> Response:
    """Every rule: per queue, and default rules with patterns."""
    return jsonify({"rules": [r.to_json() for r in service().rules()]})


@api.put("/rules" + QUEUE)
def put_rule(backend: str, system: str, queue: str) -> Response:
    """Create or replace a rule; a path with * ? [ is a default rule for every queue it matches."""
    return jsonify(service().put_rule(parse_rule(backend, system, queue, json_body())).to_json())


@api.delete("/rules" + QUEUE)
def remove_rule(backend: str, system: str, queue: str) -> Response | tuple[Response, int]:
    """Remove a rule: 204, or 404 if there was none."""
    if not service().delete_rule(backend, system, queue):
        return json_error(404, "not_found", f"no rule for {backend}/{system}/{queue}")
    return Response(status=204)


@api.get("/webhooks")
def list_webhooks() -> Response:
    """Stored targets (editable) and those from --webhook / QUEUEWATCH_WEBHOOK."""
    s = service()
    return jsonify({"webhooks": [w.shown_json() for w in s.webhooks()], "configured": [w.shown_json() for w in s.configured]})


@api.put("/webhooks")
def put_webhooks() -> Response:
    """Replace the stored targets: {"webhooks": [{"url", "format": "json"|"slack"}]}."""
    body = json_body().get("webhooks")
    if not isinstance(body, list):
        raise BadRequest('send {"webhooks": [{"url": ..., "format": "json" or "slack"}]}')
    try:
        kept = service().webhooks()
        targets = [keep_or_parse(item, kept) for item in body]
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    service().put_webhooks(targets)
    return jsonify({"webhooks": [w.shown_json() for w in targets]})


@api.post("/webhooks/test")
def post_test() -> Response:
    """Send a test notification to every target now; says which answered."""
    json_body()
    return jsonify({"results": [{"url": w.shown, "format": w.format, "ok": p is None, "error": p} for w, p in service().send_test()]})
