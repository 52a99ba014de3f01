"""The HTML pages: overview, queue, job, workers, and the action forms.

Each page includes partials that refresh themselves through htmx from the
shared snapshot; the same view answers an htmx request with the partial only.
Actions are POST forms (CSRF-protected) that redirect back with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for

from queuewatch.adapters.base import ALL, JobDetail
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.errors import AdapterError, BackendUnavailable, Interrupted, NotFound, StoreUnavailable
from queuewatch.failures import actions, triage

from . import htmx, monitor
from . import listing as listing_model
from .failed_lists import failed_view, held_inspection, run_inspection
from .params import BadRequest, page_limit, safe_next

bp = Blueprint("pages", __name__)
QUEUE = "/queues/<backend>/<system>/<segment:queue>"


@bp.get("/")
def overview() -> Response:
    """Every backend, one page of its queues (searched, filtered, sorted), and a summary of workers."""
    snapshot = monitor().snapshot()
    query = listing_model.queue_query(request.args, {b.name for b in snapshot.backends})
    alerting = listing_model.alerting_queues() if query.state == "alerting" else set()
    listing = listing_model.queue_page(snapshot.queues, query, alerting)
    response = htmx.render(
        "overview.html", "partials/overview_body.html", snapshot=snapshot, listing=listing, query=listing.query,
        totals=listing_model.queue_totals(snapshot.queues),
        attention=listing_model.attention(snapshot.backends, snapshot.queues),
        systems=listing_model.SYSTEMS, states=listing_model.QUEUE_STATES, sorts=listing_model.QUEUE_SORTS,
        per_page_choices=(50, listing_model.PER_PAGE, 200, listing_model.MAX_PER_PAGE),
    )  # fmt: skip
    if htmx.wants_fragment() and request.headers.get("HX-Trigger") == "queue-filters":
        # The filter form updates the table as the operator types: keep the address bar
        # bookmarkable (the canonical URL, defaults left out) without a history entry per key.
        response.headers["HX-Replace-Url"] = url_for("pages.overview", **listing.query.args())
    return response


@bp.get("/workers")
def workers() -> Response:
    """Every registered worker with its heartbeat."""
    return htmx.render("workers.html", "partials/workers_table.html", snapshot=monitor().snapshot())


@bp.get(QUEUE)
def queue(backend: str, system: str, queue: str) -> Response:
    """A queue's counts and its failed jobs, paged (dead letters: as last inspected, never read on a GET)."""
    stats = monitor().queue(backend, system, queue)
    adapter = monitor().adapter(backend, system)
    limit = page_limit(request.args.get("limit"), 50)
    cursor = request.args.get("cursor") or None
    if triage.has_blanks(request.args):  # the filter form sends its empty fields: bookmark the short URL
        return redirect(triage.with_query(url_for("pages.queue", backend=backend, system=system, queue=queue), request.args))
    flt = triage.Filter.from_args(request.args)  # FilterError: 400 (views.init_errors)
    view = failed_view(backend, system, queue, adapter, flt, limit, cursor)
    fragment = {"counts": "partials/queue_counts.html", "failed": "partials/failed_table.html"}.get(
        request.args.get("fragment", ""), "partials/queue_counts.html"
    )
    # Operations on this queue: shown on the page (each then refreshes itself), not in the refreshing fragments.
    ops = [] if htmx.wants_fragment() else _operations_on(backend, system, queue)
    return htmx.render(
        "queue.html", fragment, stats=stats, page=view.page, limit=limit, cursor=cursor, adapter=adapter,
        snapshot=monitor().snapshot(), flt=flt, scan=view.scan, ops=[op for op in ops if op.active] or ops[:1],
        inspecting=view.inspecting, held=view.held, warning=view.warning,
    )  # fmt: skip


def _operations_on(backend: str, system: str, queue: str) -> list:
    try:
        return current_app.extensions["queuewatch.operations"].touching(backend, system, queue, limit=20)
    except StoreUnavailable:  # the page is still worth showing without them; the banner says why
        return []


@bp.get(QUEUE + "/jobs/<segment:job_id>")
def job(backend: str, system: str, queue: str, job_id: str) -> Response | str:
    """One job: decoded arguments, error and traceback (a dead letter: from the inspection held)."""
    adapter = monitor().adapter(backend, system)
    context = dict(backend=backend, system=system, queue=queue, adapter=adapter, snapshot=monitor().snapshot())
    if monitor().call(backend, lambda: adapter.inspects(queue)):
        held = held_inspection(backend, system, queue)
        if held is None:
            warning = monitor().call(backend, lambda: adapter.inspection_warning(queue))
            return render_template("inspect_first.html", job_id=job_id, warning=warning, **context)
        detail = held.inspection.detail(job_id)
        return render_template("job.html", job=detail, held=held, offer=actions.offer(detail, (), backend=backend, system=system, inspected=True),
                               requeue_to=requeue_destination(detail, queue), **context)  # fmt: skip
    detail = monitor().call(backend, lambda: adapter.job(queue, job_id))
    offer = actions.offer(detail, context["snapshot"].workers, backend=backend, system=system)
    return render_template("job.html", job=detail, held=None, offer=offer, requeue_to=requeue_destination(detail, queue), **context)


# The detail a dead letter's adapter names the queue its requeue publishes to with
# (adapters/rabbitmq/dead_letters.py REQUEUE_TO); other jobs go back to their own queue.
REQUEUE_TO = "requeue goes to"


def requeue_destination(job: JobDetail, queue: str) -> str | None:
    """The queue a requeue of ``job`` sends it to; None when it cannot be known (a dead letter with no x-death)."""
    for label, value in job.details:
        if label == REQUEUE_TO:
            return value or None
    return None if job.status == "in a dead-letter queue" else queue


# Long values (a 20,000-character argument) are cut on the page and shown in full on request, bounded too.
CUT_CHARS = 1_000  # characters of one value shown on a job's page
FULL_CHARS = 1_000_000  # characters of one value "show all" renders (the adapter bounds what it decodes)


@dataclass(frozen=True)
class Cut:
    text: str
    cut: bool  # the value is longer than ``text`` shows


@bp.app_template_filter("cut")
def cut(value: Any, limit: int = CUT_CHARS) -> Cut:
    """A decoded value rendered as at most ``limit`` characters (as ``display`` renders it), and whether it was cut."""
    return cut_text(payload.render(value, limit=limit + 1), limit)


@bp.app_template_filter("cut_text")
def cut_text(text: str | None, limit: int = CUT_CHARS) -> Cut:
    """A text (an error message) as at most ``limit`` characters, and whether it was cut."""
    text = text or ""
    if len(text) <= limit:
        return Cut(text, False)
    return Cut(text[: limit - 1] + "…", True)


def _part(job: JobDetail, part: str) -> Any:
    """The value ``part`` names: ``arg:N``, ``kwarg:NAME`` or ``error`` (the error message)."""
    kind, _, name = part.partition(":")
    if kind == "arg" and name.isdigit() and int(name) < len(job.args):
        return job.args[int(name)]
    if kind == "kwarg" and name in job.kwargs:
        return job.kwargs[name]
    if part == "error" and job.error_message is not None:
        return job.error_message
    raise BadRequest(f"job {job.id} has no value {part[:60]!r}: name arg:N, kwarg:NAME or error")


@bp.get(QUEUE + "/jobs/<segment:job_id>/value")
def job_value(backend: str, system: str, queue: str, job_id: str) -> Response:
    """One argument (or the error message) of a job in full, up to FULL_CHARS characters: the "show all" of a cut value."""
    adapter = monitor().adapter(backend, system)
    if monitor().call(backend, lambda: adapter.inspects(queue)):
        held = held_inspection(backend, system, queue)
        if held is None:
            raise NotFound("this value is in a dead letter: inspect the queue again, then open it from the job's page")
        detail = held.inspection.detail(job_id)
    else:
        detail = monitor().call(backend, lambda: adapter.job(queue, job_id))
    part = request.args.get("part", "")
    value = _part(detail, part)
    shown = cut_text(value, FULL_CHARS) if part == "error" else cut(value, FULL_CHARS)
    return htmx.render("value.html", "partials/value.html", job=detail, part=part, shown=shown, limit=FULL_CHARS,
                       backend=backend, system=system, queue=queue, adapter=adapter)  # fmt: skip


@bp.post(QUEUE + "/inspect")
def inspect(backend: str, system: str, queue: str) -> Response:
    """Read the queue's dead letters once (RabbitMQ counts a delivery) and show what was read."""
    held = run_inspection(backend, system, queue, confirmed=request.form.get("confirm") == "1")
    job_id = request.form.get("job")
    if job_id:
        return redirect(url_for("pages.job", backend=backend, system=system, queue=queue, job_id=job_id, inspection=held.id), 303)
    return redirect(url_for("pages.queue", backend=backend, system=system, queue=queue, inspection=held.id), code=303)


def _back(backend: str, system: str, queue: str) -> str:
    """Where to go after an action: the page the form came from, if it is ours."""
    return safe_next(request.form.get("next"), url_for("pages.queue", backend=backend, system=system, queue=queue))


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
    except Interrupted as exc:
        done = exc.done.affected  # type: ignore[attr-defined]
        verb = {"requeue": "Requeued", "delete": "Deleted", "purge": "Purged"}[action]
        flash(f"{verb} {done:,} {'job' if done == 1 else 'jobs'}, then the backend stopped answering: {exc}. The rest "
              "were not touched; try again when it is back (what was done is not done twice).", "error")  # fmt: skip
        return redirect(_back(backend, system, queue), code=303)
    except BackendUnavailable as exc:
        flash(f"Nothing was changed: {exc}", "error")
        return redirect(_back(backend, system, queue), code=303)
    verb = {"requeue": "Requeued", "delete": "Deleted", "purge": "Purged"}[action]
    noun = "waiting job" if action == "purge" else "job"
    message = f"{verb} {result.affected:,} {noun}{'' if result.affected == 1 else 's'}."
    if result.not_found and not result.affected and ids is not ALL and len(ids) == 1:
        # The job's page offered it, but it left the failed list meanwhile: say where it is now.
        why, readable = _now_where(backend, system, queue, ids[0])
        gone = "could not be: already moved or gone" if action == "requeue" else "was already gone"
        flash(f"{verb} 0 jobs. 1 {gone} — {why}", "warning")
        if not readable:
            return redirect(_back(backend, system, queue), code=303)
        return redirect(url_for("pages.job", backend=backend, system=system, queue=queue, job_id=ids[0]), code=303)
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


def _now_where(backend: str, system: str, queue: str, job_id: str) -> tuple[str, bool]:
    """Why a single job was not requeued or deleted: where it is now, as its page shows it; and
    whether its page can be shown again without a new read of dead letters (an inspection)."""
    adapter = monitor().adapter(backend, system)
    if monitor().call(backend, lambda: adapter.inspects(queue)):  # reading it again would be an inspection
        return f"message {job_id} is no longer among the dead letters (moved or deleted since they were read).", False
    try:
        detail = monitor().call(backend, lambda: adapter.job(queue, job_id))
    except NotFound:
        return f"job {job_id} is gone (deleted, or expired from the failed list).", False
    except AdapterError as exc:
        return f"job {job_id} is no longer in the failed list (its state could not be read: {exc}).", False
    if detail.state in (None, "failed"):
        return f"job {job_id} could not be moved; its page says what the system reports about it.", True
    return (f"job {job_id} is no longer in the failed list: it is {detail.state.replace('_', ' ')} now "
            "(requeued or moved by someone or something else first).", True)  # fmt: skip


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
