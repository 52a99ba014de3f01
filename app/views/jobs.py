"""Jobs in every state (DESIGN.md "Jobs in every state"): a queue's list of jobs per
state, a job in any state, finding a job by id on every backend, and deleting or
enqueueing now waiting and scheduled jobs — the JSON API (``api``) and the pages (``bp``).

Both blueprints are registered under the names ``api.jobs`` and ``pages.jobs``, so
the auth policy's ``api.*`` and ``pages.*`` rows (viewer reads, operator writes)
cover them. Reads go through the monitor (shared for an interval, bounded in time);
a list that is an inspection (RabbitMQ's waiting messages) is read only on a POST,
held like a dead-letter inspection; moves are audited like requeue and delete.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, request, url_for

from queuewatch.adapters.base import ALL, STATES, ActionResult, Adapter, FailedJob, Job, JobDetail, Page
from queuewatch.adapters.errors import AdapterError, BackendUnavailable, Interrupted, NotFound, Unsupported
from queuewatch.failures import actions, triage
from queuewatch.failures.inspections import Held
from queuewatch.security import audit

from . import htmx, monitor
from .fanout import ask_everywhere
from . import shapes as serialize
from .errors import Refused
from .failed_lists import failed_view, inspections
from .params import BadRequest, json_body, page_limit, safe_next, selection

api = Blueprint("jobs_api", __name__, url_prefix="/api/v1")
bp = Blueprint("jobs_pages", __name__)
QUEUE = "/queues/<backend>/<system>/<segment:queue>"
LABELS = {"waiting": "Waiting", "scheduled": "Scheduled", "in_progress": "In progress", "finished": "Finished",
          "failed": "Failed", "canceled": "Canceled"}  # fmt: skip
MOVES = {"delete": ("delete_jobs", "deleted"), "enqueue-now": ("enqueue_now", "enqueued"), "revoke": ("revoke", "revoked"),
         "restore": ("restore", "restored")}  # fmt: skip
VERBS = {"delete": "Deleted", "enqueue-now": "Enqueued now", "revoke": "Revoked", "restore": "Restored"}
MISSING = {"delete": "waiting or scheduled", "enqueue-now": "scheduled", "revoke": "there to revoke", "restore": "revoked"}
FIND_SECONDS = 3.0  # a backend that has not answered a find by then is reported, not waited for
MAX_ID = 512


# -- what views share --------------------------------------------------------------------


def state_arg(raw: str | None) -> str:
    if raw not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}" + ("" if raw in (None, "") else f", not {raw[:40]!r}"))
    return raw  # type: ignore[return-value]


def job_id_arg(raw: str | None) -> str:
    job_id = (raw or "").strip()
    if not job_id or len(job_id) > MAX_ID or any(ord(c) < 0x20 for c in job_id):
        raise BadRequest(f"a job id is 1 to {MAX_ID} printable characters")
    return job_id


def as_job(row: FailedJob, state: str) -> Job:
    return row if isinstance(row, Job) else Job(**{f.name: getattr(row, f.name) for f in fields(FailedJob)}, state=state)


def supports(adapter: Adapter, method: str) -> bool:
    """Whether the adapter has its own ``method`` (the contract's default raises Unsupported)."""
    return getattr(type(adapter), method) is not getattr(Adapter, method)


def held_key(queue: str, state: str) -> str:
    """The queue an inspection of a state's list is held under: never mistaken for a dead-letter one."""
    return f"{queue}\x00{state}"


@dataclass(frozen=True)
class StateList:
    state: str
    page: Page[Job] | None  # None: unsupported, or an inspection is needed first
    reason: str | None  # why the system cannot list it
    inspecting: bool  # reading it is an inspection (RabbitMQ)
    held: Held | None
    warning: str | None  # what to read before inspecting


def state_list(backend: str, system: str, queue: str, state: str, limit: int, cursor: str | None) -> StateList:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    if state == "failed":  # the failed list, as the queue page reads it
        view = failed_view(backend, system, queue, adapter, triage.Filter.from_args({}), limit, cursor)
        page = None if view.page is None else Page(tuple(as_job(j, "failed") for j in view.page.items), view.page.total,
                                                   view.page.next_cursor, view.page.prev_cursor, view.page.offset)  # fmt: skip
        return StateList(state, page, None, view.inspecting, view.held, view.warning)
    reason = mon.call(backend, lambda: adapter.job_states(queue)).get(state)
    if reason:
        return StateList(state, None, reason, False, None, None)
    if mon.call(backend, lambda: adapter.inspects_jobs(queue, state)):
        held = inspections().get(request.args.get("inspection"), backend, system, held_key(queue, state))
        if held is None:
            return StateList(state, None, None, True, None, mon.call(backend, lambda: adapter.inspection_warning(queue)))
        page = held.inspection.page(cursor, limit)
        return StateList(state, Page(tuple(as_job(j, state) for j in page.items), page.total, page.next_cursor,
                                     page.prev_cursor, page.offset), None, True, held, None)  # fmt: skip
    key = ("jobs", backend, system, queue, state, limit, cursor)
    return StateList(state, mon.read(backend, key, lambda: adapter.jobs(queue, state, limit, cursor)), None, False, None, None)


def inspect_state(backend: str, system: str, queue: str, state: str, *, confirmed: bool) -> Held:
    """Read a list that is an inspection once, for the operator who asked; audited (it raises delivery counts)."""
    mon = monitor()
    adapter = mon.adapter(backend, system)
    if state == "failed" or not mon.call(backend, lambda: adapter.inspects_jobs(queue, state)):
        raise Refused(f"the {state} jobs of {queue!r} are read without an inspection: GET …/jobs?state={state}")
    warning = mon.call(backend, lambda: adapter.inspection_warning(queue))
    if warning and not confirmed:
        raise Refused(f"{warning} Confirm to inspect it anyway.", code="confirmation_required")
    try:
        inspection = mon.call(backend, lambda: adapter.inspect_jobs(queue, state))
    except Exception as exc:
        audit.record("inspect", backend=backend, system=system, queue=queue, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    principal = g.get("principal")
    held = inspections().put(backend, system, held_key(queue, state), inspection, principal.name if principal else "anonymous")
    audit.record("inspect", backend=backend, system=system, queue=queue, affected=len(inspection.rows),
                 result=f"ok: read {len(inspection.rows):,} {state} (inspection {held.id})")  # fmt: skip
    return held


def move(backend: str, system: str, queue: str, action: str, ids: list[str]) -> ActionResult:
    """Delete or enqueue-now through the adapter, audited like requeue and delete. Raises the adapter's errors."""
    mon = monitor()
    method, _ = MOVES[action]
    audited = method  # "delete_jobs" | "enqueue_now": not to be read as a failed-job delete
    where: dict[str, Any] = {"backend": backend, "system": system, "queue": queue, "ids": list(ids)}
    try:
        adapter = mon.adapter(backend, system)
        result = getattr(adapter, method)(queue, ids)
    except Interrupted as exc:
        audit.record(audited, **where, affected=exc.done.affected, result=f"interrupted: {exc}"[:500])  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        audit.record(audited, **where, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        mon.changed()
    audit.record(audited, **where, affected=result.affected, result=actions.outcome(result))
    return result


def find_everywhere(job_id: str) -> tuple[list[dict[str, str]], list[dict[str, str | None]]]:
    """(matches, backends that could not be asked): every system of every backend asked at once,
    each within FIND_SECONDS, so a slow or down backend costs the answer no more than that."""
    answers, unreachable = ask_everywhere(monitor(), lambda a: a.find(job_id), FIND_SECONDS)
    matches = [{"backend": name, "system": system, "queue": queue, "state": state}
               for name, system, found in answers for queue, state in found]  # fmt: skip
    key = lambda m: (m["backend"], m["system"], m["queue"], STATES.index(m["state"]) if m["state"] in STATES else 99)  # noqa: E731
    return sorted({tuple(m.items()): m for m in matches}.values(), key=key), unreachable


def tabs(stats: Any, adapter: Adapter) -> dict[str, Any]:
    """The queue page's state bar: each state the system lists, with its count from the snapshot,
    and one sentence for those it cannot (said once, not as empty tabs)."""
    try:
        reasons = monitor().call(stats.backend, lambda: adapter.job_states(stats.name), timeout=2.0)
    except AdapterError:
        reasons = {s: None if s == "failed" else "" for s in STATES}
    counts = {"waiting": stats.depth, "scheduled": stats.scheduled, "in_progress": stats.in_progress, "failed": stats.failed}
    shown = [{"state": s, "label": adapter.failed_label if s == "failed" else LABELS[s], "count": counts.get(s)}
             for s in STATES if reasons.get(s) is None]  # fmt: skip
    hidden = [(LABELS[s], reasons[s]) for s in STATES if reasons.get(s)]
    return {"shown": shown, "hidden": hidden}


@bp.app_template_global("job_tabs")
def job_tabs(stats: Any, adapter: Adapter) -> dict[str, Any]:
    return tabs(stats, adapter)


# -- JSON --------------------------------------------------------------------------------


def job_row_json(job: Job) -> dict[str, Any]:
    return serialize.failed_json(job) | {
        "state": job.state,
        "enqueued_at": serialize.time_json(job.enqueued_at),
        "started_at": serialize.time_json(job.started_at),
        "ended_at": serialize.time_json(job.ended_at),
        "scheduled_for": serialize.time_json(job.scheduled_for),
        "worker": job.worker,
    }


def job_detail_json(job: JobDetail) -> dict[str, Any]:
    return serialize.job_json(job) | {
        "state": job.state,
        "ended_at": serialize.time_json(job.ended_at),
        "scheduled_for": serialize.time_json(job.scheduled_for),
        "history": [list(step) for step in job.history],
    }


def held_json(held: Held) -> dict[str, Any]:
    inspection = held.inspection
    return {"inspection": {"id": held.id, "taken_at": serialize.time_json(inspection.taken_at), "by": held.user,
                           "read": len(inspection.rows), "truncated": inspection.truncated, "notes": list(inspection.notes)}}  # fmt: skip


def _ids(body: dict[str, Any]) -> list[str]:
    chosen = selection(body.get("ids"), body.get("all"))
    if chosen is ALL:
        raise BadRequest('send "ids": a list of job ids ("all" is a bulk operation, not this request)')
    return list(chosen)  # type: ignore[arg-type]


@api.get(QUEUE + "/jobs")
def list_jobs(backend: str, system: str, queue: str) -> Response:
    """One page of a queue's jobs in one state (``state=waiting|scheduled|in_progress|finished|failed|canceled``)."""
    state = state_arg(request.args.get("state"))
    limit = page_limit(request.args.get("limit"), 50)
    listed = state_list(backend, system, queue, state, limit, request.args.get("cursor") or None)
    if listed.reason:
        raise Unsupported(listed.reason)
    if listed.page is None:
        raise Refused(f"Listing the {state} messages of {queue!r} is an inspection: RabbitMQ takes each message and "
                      "gives it back, and counts that as a delivery. POST …/jobs/inspect {\"state\": ...} first, then "
                      "read the pages of that inspection with ?inspection=ID.", code="inspection_required")  # fmt: skip
    page = listed.page
    answer: dict[str, Any] = {"state": state, "jobs": [job_row_json(j) for j in page.items], "total": page.total,
                              "next_cursor": page.next_cursor, "prev_cursor": page.prev_cursor, "offset": page.offset}  # fmt: skip
    if listed.held is not None:
        answer |= held_json(listed.held)
    return jsonify(answer)


@api.post(QUEUE + "/jobs/inspect")
def inspect_jobs(backend: str, system: str, queue: str) -> Response:
    """Read a list that is an inspection once (RabbitMQ's waiting messages): its first page and the inspection's id."""
    body = json_body()
    state = state_arg(body.get("state") if isinstance(body.get("state"), str) else None)
    limit = page_limit(str(body.get("limit", "50")), 50)
    held = inspect_state(backend, system, queue, state, confirmed=body.get("confirm") is True)
    page = held.inspection.page(None, limit)
    return jsonify({"state": state, "jobs": [job_row_json(as_job(j, state)) for j in page.items], "total": page.total,
                    "next_cursor": page.next_cursor} | held_json(held))  # fmt: skip


@api.post(QUEUE + "/jobs/delete")
def delete_jobs(backend: str, system: str, queue: str) -> Response:
    """Remove waiting or scheduled jobs so they never run."""
    result = move(backend, system, queue, "delete", _ids(json_body()))
    return jsonify({"deleted": result.affected, "not_found": list(result.not_found)})


@api.post(QUEUE + "/jobs/enqueue-now")
def enqueue_now(backend: str, system: str, queue: str) -> Response:
    """Move scheduled jobs to the front of waiting, now."""
    result = move(backend, system, queue, "enqueue-now", _ids(json_body()))
    return jsonify({"enqueued": result.affected, "not_found": list(result.not_found)})


@api.post(QUEUE + "/jobs/revoke")
def revoke_jobs(backend: str, system: str, queue: str) -> Response:
    """Mark jobs by id so workers skip them (Huey): they stay, listed as canceled, until restored."""
    result = move(backend, system, queue, "revoke", _ids(json_body()))
    return jsonify({"revoked": result.affected, "not_found": list(result.not_found)})


@api.post(QUEUE + "/jobs/restore")
def restore_jobs(backend: str, system: str, queue: str) -> Response:
    """Undo a revoke: the jobs run when a worker reaches them."""
    result = move(backend, system, queue, "restore", _ids(json_body()))
    return jsonify({"restored": result.affected, "not_found": list(result.not_found)})


@api.get("/jobs/<segment:job_id>")
def find_job(job_id: str) -> Response:
    """Where a job id is now, on every backend and system (O(1) lookups each; slow backends are reported, not awaited)."""
    matches, unreachable = find_everywhere(job_id_arg(job_id))
    return jsonify({"id": job_id, "matches": matches, "unreachable": unreachable})


# -- pages -------------------------------------------------------------------------------


@bp.get(QUEUE + "/jobs")
def state_page(backend: str, system: str, queue: str) -> Response:
    """A queue's jobs in one state, paged, with the state bar; the failed list is the queue page itself."""
    state = state_arg(request.args.get("state") or "waiting")
    if state == "failed":
        return redirect(url_for("pages.queue", backend=backend, system=system, queue=queue), code=303)  # type: ignore[return-value]
    stats = monitor().queue(backend, system, queue)
    adapter = monitor().adapter(backend, system)
    limit = page_limit(request.args.get("limit"), 50)
    cursor = request.args.get("cursor") or None
    listed = state_list(backend, system, queue, state, limit, cursor)
    return htmx.render("jobs.html", "partials/jobs_table.html", stats=stats, adapter=adapter, listed=listed,
                       limit=limit, cursor=cursor, can_delete=supports(adapter, "delete_jobs"),
                       can_enqueue=supports(adapter, "enqueue_now"), can_revoke=supports(adapter, "revoke"))  # fmt: skip


@bp.post(QUEUE + "/jobs/inspect")
def inspect_page(backend: str, system: str, queue: str) -> Response:
    """Read a state's list once (RabbitMQ counts a delivery) and show what was read."""
    state = state_arg(request.form.get("state"))
    held = inspect_state(backend, system, queue, state, confirmed=request.form.get("confirm") == "1")
    return redirect(url_for("pages.jobs.state_page", backend=backend, system=system, queue=queue, state=state,
                            inspection=held.id), code=303)  # fmt: skip


def _move_form(backend: str, system: str, queue: str, action: str) -> Response:
    back = safe_next(request.form.get("next"), url_for("pages.jobs.state_page", backend=backend, system=system, queue=queue))
    ids = [i for i in request.form.getlist("ids") if i]
    if not ids:
        flash("Select at least one job first.", "warning")
        return redirect(back, code=303)  # type: ignore[return-value]
    verb = VERBS[action]
    try:
        result = move(backend, system, queue, action, ids)
    except Interrupted as exc:
        done = exc.done.affected  # type: ignore[attr-defined]
        flash(f"{verb}: {done:,}, then the backend stopped answering: {exc}. The rest were not touched.", "error")
        return redirect(back, code=303)  # type: ignore[return-value]
    except (BackendUnavailable, Unsupported) as exc:
        flash(f"Nothing was changed: {exc}", "error")
        return redirect(back, code=303)  # type: ignore[return-value]
    message = f"{verb} {result.affected:,} job{'' if result.affected == 1 else 's'}."
    if result.not_found:
        left = len(result.not_found)
        message += (f" {left:,} {'was' if left == 1 else 'were'} not {MISSING[action]}"
                    " (already taken by a worker, moved or gone).")  # fmt: skip
    flash(message, "success" if result.affected else "warning")
    return redirect(back, code=303)  # type: ignore[return-value]


@bp.post(QUEUE + "/jobs/delete")
def delete_page(backend: str, system: str, queue: str) -> Response:
    """Delete the selected waiting or scheduled jobs."""
    return _move_form(backend, system, queue, "delete")


@bp.post(QUEUE + "/jobs/enqueue-now")
def enqueue_now_page(backend: str, system: str, queue: str) -> Response:
    """Enqueue the selected scheduled jobs now."""
    return _move_form(backend, system, queue, "enqueue-now")


@bp.post(QUEUE + "/jobs/revoke")
def revoke_page(backend: str, system: str, queue: str) -> Response:
    """Revoke the selected jobs (workers skip them until restored)."""
    return _move_form(backend, system, queue, "revoke")


@bp.post(QUEUE + "/jobs/restore")
def restore_page(backend: str, system: str, queue: str) -> Response:
    """Restore the selected revoked jobs."""
    return _move_form(backend, system, queue, "restore")


@bp.get("/jobs")
def find_form() -> Response:
    """The header's search box: go to the job named."""
    raw = (request.args.get("id") or "").strip()
    if not raw:
        flash("Type a job id to find it.", "warning")
        return redirect(url_for("pages.overview"), code=303)  # type: ignore[return-value]
    return redirect(url_for("pages.jobs.job_page", job_id=job_id_arg(raw)), code=303)  # type: ignore[return-value]


@bp.get("/jobs/<segment:job_id>")
def job_page(job_id: str) -> Response:
    """A job in any state: found on every backend (or in the queue named by ``backend``, ``system``,
    ``queue``); several matches are listed, none is said so."""
    job_id = job_id_arg(job_id)
    where = [request.args.get(k) for k in ("backend", "system", "queue")]
    unreachable: list[dict[str, str | None]] = []
    if all(where):
        backend, system, queue = where  # type: ignore[misc]
        matches = [{"backend": backend, "system": system, "queue": queue, "state": request.args.get("state") or ""}]
    else:
        matches, unreachable = find_everywhere(job_id)
    if len(matches) != 1:
        return htmx.render("jobs_found.html", "jobs_found.html", status=200 if matches else 404, job_id=job_id,
                           matches=matches, unreachable=unreachable)  # fmt: skip
    match = matches[0]
    backend, system, queue = match["backend"], match["system"], match["queue"]
    if match["state"] == "failed":  # the failed job's own page, with requeue
        return redirect(url_for("pages.job", backend=backend, system=system, queue=queue, job_id=job_id), code=303)  # type: ignore[return-value]
    mon = monitor()
    adapter = mon.adapter(backend, system)
    state = request.args.get("state") or match["state"]
    held = None
    if state and state in STATES and state != "failed" and mon.call(backend, lambda: adapter.inspects_jobs(queue, state)):
        held = inspections().get(request.args.get("inspection"), backend, system, held_key(queue, state))
        if held is None:
            raise NotFound(f"the {state} messages of {queue!r} are read by an inspection: inspect them from the queue's "
                           f"{LABELS[state].lower()} list first")  # fmt: skip
        detail = held.inspection.detail(job_id)
    else:
        detail = mon.call(backend, lambda: adapter.job(queue, job_id))
    if detail.state == "failed" and not held:
        return redirect(url_for("pages.job", backend=backend, system=system, queue=queue, job_id=job_id), code=303)  # type: ignore[return-value]
    return render_template("jobs_job.html", job=detail, backend=backend, system=system, queue=queue, adapter=adapter,
                           held=held, can_delete=supports(adapter, "delete_jobs") and not held,
                           can_enqueue=supports(adapter, "enqueue_now") and not held)  # type: ignore[return-value]  # fmt: skip
