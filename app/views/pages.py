"""The HTML pages: overview, queue, job, workers, and the action forms.

Each page includes partials that refresh themselves through htmx from the
shared snapshot; the same view answers an htmx request with the partial only.
Actions are POST forms (CSRF-protected) that redirect back with a message.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from queuewatch.adapters.base import ALL
from queuewatch.adapters.errors import AdapterError, BackendUnavailable

from .. import actions, htmx
from . import BadRequest, code_of, monitor, page_limit, status_of

bp = Blueprint("pages", __name__)
QUEUE = "/queues/<backend>/<system>/<path:queue>"


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response | tuple[Response, int]:
    if request.path.startswith("/api/"):
        from .api import error

        return error(exc.code or 500, {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 0, "error"), exc.description or exc.name)
    return htmx.render("error.html", "partials/error_body.html", status=exc.code or 500, title=exc.name, message=exc.description)


@bp.errorhandler(AdapterError)
def adapter_error(exc: AdapterError) -> Response:
    title = {404: "Not found", 409: "Not possible", 503: "Backend unavailable"}[status_of(exc)]
    return htmx.render("error.html", "partials/error_body.html", status=status_of(exc), title=title, message=str(exc), code=code_of(exc))


@bp.errorhandler(BadRequest)
def bad_request(exc: BadRequest) -> Response:
    return htmx.render("error.html", "partials/error_body.html", status=400, title="Bad request", message=str(exc))


@bp.get("/")
def overview() -> Response:
    """Every backend, every queue, and a summary of workers."""
    return htmx.render("overview.html", "partials/overview_body.html", snapshot=monitor().snapshot())


@bp.get("/workers")
def workers() -> Response:
    """Every registered worker with its heartbeat."""
    return htmx.render("workers.html", "partials/workers_table.html", snapshot=monitor().snapshot())


@bp.get(QUEUE)
def queue(backend: str, system: str, queue: str) -> Response:
    """A queue's counts and its failed jobs, paged."""
    stats = monitor().queue(backend, system, queue)
    adapter = monitor().adapter(backend, system)
    limit = page_limit(request.args.get("limit"), 50)
    cursor = request.args.get("cursor") or None
    page = monitor().shared(("failed", backend, system, queue, limit, cursor), lambda: adapter.failed(queue, limit, cursor))
    fragment = {"counts": "partials/queue_counts.html", "failed": "partials/failed_table.html"}.get(
        request.args.get("fragment", ""), "partials/queue_counts.html"
    )
    return htmx.render(
        "queue.html", fragment, stats=stats, page=page, limit=limit, cursor=cursor, adapter=adapter,
        snapshot=monitor().snapshot(),
    )  # fmt: skip


@bp.get(QUEUE + "/jobs/<path:job_id>")
def job(backend: str, system: str, queue: str, job_id: str) -> str:
    """One job: decoded arguments, error and traceback."""
    adapter = monitor().adapter(backend, system)
    detail = adapter.job(queue, job_id)
    return render_template("job.html", job=detail, backend=backend, system=system, queue=queue, adapter=adapter, snapshot=monitor().snapshot())


def _back(backend: str, system: str, queue: str) -> str:
    """Where to go after an action: the page the form came from, if it is ours."""
    target = request.form.get("next", "")
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return url_for("pages.queue", backend=backend, system=system, queue=queue)


def _act(backend: str, system: str, queue: str, action: str) -> Response:
    if action == "purge":
        ids = ALL
    elif request.form.get("all") == "1":
        ids = ALL
    else:
        ids = [i for i in request.form.getlist("ids") if i]
        if not ids:
            flash("Select at least one job first.", "warning")
            return redirect(_back(backend, system, queue), code=303)
    try:
        result = actions.perform(monitor(), backend, system, queue, action, ids)
    except BackendUnavailable as exc:
        flash(f"Nothing was changed: {exc}", "error")
        return redirect(_back(backend, system, queue), code=303)
    verb = {"requeue": "Requeued", "delete": "Deleted", "purge": "Purged"}[action]
    noun = "waiting job" if action == "purge" else "job"
    message = f"{verb} {result.affected:,} {noun}{'' if result.affected == 1 else 's'}."
    if result.not_found:
        left = len(result.not_found)
        if action == "requeue":
            message += f" {left:,} could not be: already moved or gone, or not requeueable (the job's page says why)."
        else:
            message += f" {left:,} {'was' if left == 1 else 'were'} already gone."
    flash(message, "success" if result.affected or not result.not_found else "warning")
    if action != "purge" and ids is not ALL and len(ids) == 1 and result.affected == 1:
        # The job page of a job that has just left the failed list: go to its queue.
        return redirect(url_for("pages.queue", backend=backend, system=system, queue=queue), code=303)
    return redirect(_back(backend, system, queue), code=303)


@bp.post(QUEUE + "/failed/requeue")
def requeue(backend: str, system: str, queue: str) -> Response:
    """Requeue the selected failed jobs, or all of them."""
    return _act(backend, system, queue, "requeue")


@bp.post(QUEUE + "/failed/delete")
def delete(backend: str, system: str, queue: str) -> Response:
    """Delete the selected failed jobs, or all of them."""
    return _act(backend, system, queue, "delete")


@bp.post(QUEUE + "/purge")
def purge(backend: str, system: str, queue: str) -> Response:
    """Remove the queue's waiting jobs."""
    return _act(backend, system, queue, "purge")
