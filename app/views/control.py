"""Control of live work (DESIGN.md "control actions", issue 17): stop a running job and
follow it until it has stopped, pause and resume a queue, suspend every worker of a
system on a backend (RQ's ``rq suspend``), and worker commands (shutdown, pool size).

Three blueprints, named so the auth policy covers them: ``api.control`` and
``pages.control`` (viewers read, operators act) and ``control_admin``, which no policy
row names, so worker commands need admin. Every action is audited with its outcome,
CSRF-checked like every other write, and refused under ``--read-only``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, request, url_for

from queuewatch.adapters.base import Adapter, JobDetail, QueueStats, Worker
from queuewatch.adapters.errors import AdapterError, NotFound, Unsupported
from queuewatch.security import audit
from queuewatch.security.auth import can

from . import htmx, monitor
from .errors import Refused
from .jobs import job_id_arg, supports
from .params import BadRequest, json_body, safe_next

api = Blueprint("control_api", __name__, url_prefix="/api/v1")
bp = Blueprint("control_pages", __name__)
admin_api = Blueprint("control_admin_api", __name__, url_prefix="/api/v1")
admin = Blueprint("control_admin_pages", __name__)
QUEUE = "/queues/<backend>/<system>/<segment:queue>"
JOB = QUEUE + "/jobs/<segment:job_id>"
WORKER = "/workers/<backend>/<system>/<segment:name>/<action>"
STOP_TIMEOUT = 30.0  # seconds the page follows a stopped job before it says it did not stop
MAX_TIMEOUT = 600.0
WORKER_ACTIONS = ("shutdown", "pool_grow", "pool_shrink")
MAX_POOL_STEP = 100
VERBS = {"shutdown": "shut down", "pool_grow": "grow its pool", "pool_shrink": "shrink its pool"}


# -- what a stop has come to (pure) -------------------------------------------------------


@dataclass(frozen=True)
class StopFollow:
    """Where a job stands some time after it was asked to stop."""

    outcome: str  # "stopping" (still running, within the wait) | "ended" | "not_stopped" (still running after it)
    state: str | None  # the job's state now; None when it is gone
    status: str | None  # the system's own word ("stopped", "REVOKED")
    worker: str | None
    waited: float
    timeout: float
    message: str


def follow_stop(detail: JobDetail | None, waited: float, timeout: float, hint: str | None) -> StopFollow:
    """What to tell the operator ``waited`` seconds after asking to stop a job, from its detail now (None: gone)."""
    if detail is None:
        return StopFollow("ended", None, None, None, waited, timeout,
                          "The job is gone: it ended and its record is no longer kept, or it was deleted.")  # fmt: skip
    state, status = detail.state, detail.status
    if state != "in_progress":
        word = (state or "in no known state").replace("_", " ")
        said = f" ({status})" if status and status != state else ""
        return StopFollow(
            "ended", state, status, detail.worker, waited, timeout, f"The job is no longer running: it is {word}{said}."
        )
    if waited < timeout:
        return StopFollow("stopping", state, status, detail.worker, waited, timeout,
                          f"Asked to stop {waited:.0f} s ago; still running{' on ' + detail.worker if detail.worker else ''}…")  # fmt: skip
    message = f"The job did not stop within {timeout:.0f} s: it is still running{' on ' + detail.worker if detail.worker else ''}."
    return StopFollow("not_stopped", state, status, detail.worker, waited, timeout, message + (f" {hint}" if hint else ""))


def controls(adapter: Adapter, method: str) -> bool:
    """Whether the adapter can do ``method`` (its own, not the contract's refusal, nor a mixin's one)."""
    return supports(adapter, method) and method not in getattr(adapter, "unsupported_controls", ())


def can_suspend(adapter: Adapter) -> bool:
    return callable(getattr(adapter, "suspend_workers", None))


# -- arguments ------------------------------------------------------------------------------


def since_arg(raw: str | None) -> float:
    """When the stop was asked (seconds since the epoch, as the 202 answer's ``follow`` link gives it)."""
    try:
        since = float(raw or "")
    except ValueError:
        raise BadRequest("since must be the time the stop was asked, in seconds since the epoch") from None
    now = time.time()
    if not now - 86_400 <= since <= now + 60:
        raise BadRequest("since must be within the last day")
    return since


def timeout_arg(raw: str | None) -> float:
    if raw in (None, ""):
        return STOP_TIMEOUT
    try:
        timeout = float(raw)  # type: ignore[arg-type]
    except ValueError:
        raise BadRequest(f"timeout must be a number of seconds, not {raw[:40]!r}") from None  # type: ignore[index]
    if not 0 < timeout <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return timeout


def step_arg(raw: Any) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_POOL_STEP:
        raise BadRequest(f'"n" must be a whole number from 1 to {MAX_POOL_STEP}')
    return raw


def action_arg(raw: str) -> str:
    if raw not in WORKER_ACTIONS:
        raise BadRequest(f"a worker action is one of {', '.join(WORKER_ACTIONS)}, not {raw[:40]!r}")
    return raw


# -- the actions, audited --------------------------------------------------------------


def _audited(action: str, where: dict[str, Any], run: Any) -> Any:
    try:
        outcome = run()
    except Exception as exc:
        audit.record(action, **where, result=f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        monitor().changed()
    return outcome


def stop_job(backend: str, system: str, queue: str, job_id: str) -> str | None:
    """Ask the system to stop a running job; the worker asked. 404 when there is no such job,
    409 (``not_running``) when it is not running, 409 (``unsupported``) where the system cannot."""
    mon = monitor()
    adapter = mon.adapter(backend, system)
    where = {"backend": backend, "system": system, "queue": queue, "ids": [job_id]}

    def run() -> str | None:
        try:
            return mon.call(backend, lambda: adapter.stop(queue, job_id))
        except NotFound as exc:
            try:
                mon.call(backend, lambda: adapter.job(queue, job_id))
            except NotFound:
                raise exc from None
            raise Refused(str(exc), code="not_running") from None

    worker = _audited("stop", where, run)
    audit.record("stop", **where, affected=1, result=f"ok: asked {worker or 'its worker'} to stop it"[:500])
    return worker


def follow(backend: str, system: str, queue: str, job_id: str, since: float, timeout: float) -> StopFollow:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    try:
        detail: JobDetail | None = mon.call(backend, lambda: adapter.job(queue, job_id))
    except NotFound:
        detail = None
    return follow_stop(detail, max(0.0, time.time() - since), timeout, getattr(adapter, "stop_hint", None))


def pause_queue(backend: str, system: str, queue: str, paused: bool) -> bool:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    where = {"backend": backend, "system": system, "queue": queue}
    action = "pause" if paused else "resume"
    state = _audited(action, where, lambda: mon.call(backend, lambda: adapter.pause(queue, paused)))
    audit.record(action, **where, result=f"ok: {'paused' if state else 'not paused'}")
    return bool(state)


def suspend(backend: str, system: str, suspended: bool) -> bool:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    if not can_suspend(adapter):
        raise Unsupported(f"{adapter.label} has no way to suspend every worker on a backend")
    action = "suspend" if suspended else "resume_workers"
    where = {"backend": backend, "system": system}
    state = _audited(action, where, lambda: mon.call(backend, lambda: adapter.suspend_workers(suspended)))  # type: ignore[attr-defined]
    audit.record(action, **where, result=f"ok: every {adapter.label} worker on {backend} {'suspended' if state else 'resumed'}")
    return bool(state)


def command_worker(backend: str, system: str, name: str, action: str, n: int) -> None:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    where = {"backend": backend, "system": system, "ids": [name]}
    _audited(f"worker_{action}", where, lambda: mon.call(backend, lambda: adapter.control_worker(name, action, n)))
    audit.record(f"worker_{action}", **where, affected=1, result=f"ok: sent {action}" + (f" n={n}" if action != "shutdown" else ""))


# -- template helpers ---------------------------------------------------------------------


def suspended_state(backend: str, system: str, adapter: Adapter) -> bool | None:
    """Whether every worker of the system on the backend is suspended: shared by viewers for an interval."""
    try:
        return monitor().read(backend, ("control", "suspended", backend, system), adapter.workers_suspended, timeout=2.0)  # type: ignore[attr-defined]
    except AdapterError:
        return None


@bp.app_template_global("queue_control")
def queue_control(stats: QueueStats, adapter: Adapter) -> dict[str, Any]:
    """The queue page's pause controls: whether it can pause, and whether its workers are suspended."""
    suspendable = can_suspend(adapter)
    return {"can_pause": controls(adapter, "pause"), "paused": stats.paused, "suspendable": suspendable,
            "suspended": suspended_state(stats.backend, stats.system, adapter) if suspendable else None}  # fmt: skip


@bp.app_template_global("job_control")
def job_control(adapter: Adapter) -> dict[str, Any]:
    return {"can_stop": controls(adapter, "stop")}


@bp.app_template_global("suspensions")
def suspensions(snapshot: Any) -> list[dict[str, Any]]:
    """Every (backend, system) whose workers can be suspended as one, with its state now."""
    found = []
    for status in snapshot.backends:
        if status.status != "up":
            continue
        for system in status.systems:
            adapter = monitor().adapter(status.name, system)
            if can_suspend(adapter):
                found.append({"backend": status.name, "system": system, "label": adapter.label,
                              "suspended": suspended_state(status.name, system, adapter)})  # fmt: skip
    return found


@bp.app_template_global("worker_actions")
def worker_actions(worker: Worker) -> tuple[str, ...]:
    """The commands this principal may send to a live worker."""
    if not worker.alive or not can("admin"):
        return ()
    try:
        adapter = monitor().adapter(worker.backend, worker.system)
    except NotFound:
        return ()
    if not controls(adapter, "control_worker"):
        return ()
    return tuple(getattr(adapter, "worker_actions", ("shutdown",)))


# -- JSON ----------------------------------------------------------------------------------


def follow_json(job_id: str, found: StopFollow) -> dict[str, Any]:
    return {"id": job_id, "outcome": found.outcome, "stopped": found.outcome == "ended", "state": found.state,
            "status": found.status, "worker": found.worker, "waited_seconds": round(found.waited, 1),
            "timeout_seconds": found.timeout, "message": found.message}  # fmt: skip


@api.post(JOB + "/stop")
def stop(backend: str, system: str, queue: str, job_id: str) -> tuple[Response, int]:
    """Stop a running job through the system's own mechanism: 202 with the worker asked, and where to follow it."""
    job_id = job_id_arg(job_id)
    since = time.time()
    worker = stop_job(backend, system, queue, job_id)
    link = url_for("api.control.stop_status", backend=backend, system=system, queue=queue, job_id=job_id, since=f"{since:.3f}")
    return jsonify({"stopping": True, "worker": worker, "follow": link, "timeout_seconds": STOP_TIMEOUT}), 202


@api.get(JOB + "/stop")
def stop_status(backend: str, system: str, queue: str, job_id: str) -> Response:
    """Where a job asked to stop at ``since`` stands: stopping, ended, or not stopped within ``timeout`` seconds."""
    job_id = job_id_arg(job_id)
    found = follow(backend, system, queue, job_id, since_arg(request.args.get("since")), timeout_arg(request.args.get("timeout")))
    return jsonify(follow_json(job_id, found))


@api.post(QUEUE + "/pause")
def pause(backend: str, system: str, queue: str) -> Response:
    """Workers stop taking the queue's jobs; jobs keep arriving and wait."""
    return jsonify({"paused": pause_queue(backend, system, queue, True)})


@api.post(QUEUE + "/resume")
def resume(backend: str, system: str, queue: str) -> Response:
    """Workers take the queue's jobs again."""
    return jsonify({"paused": pause_queue(backend, system, queue, False)})


@api.get("/backends/<backend>/<system>/suspend")
def suspension(backend: str, system: str) -> Response:
    """Whether every worker of the system on the backend is suspended (RQ: ``rq:suspended``)."""
    adapter = monitor().adapter(backend, system)
    if not can_suspend(adapter):
        raise Unsupported(f"{adapter.label} has no way to suspend every worker on a backend")
    return jsonify({"suspended": monitor().call(backend, adapter.workers_suspended)})  # type: ignore[attr-defined]


@api.post("/backends/<backend>/<system>/suspend")
def suspend_workers(backend: str, system: str) -> Response:
    """Suspend every worker of the system on the backend (RQ's ``rq suspend``: every RQ worker on this Redis)."""
    return jsonify({"suspended": suspend(backend, system, True)})


@api.post("/backends/<backend>/<system>/resume")
def resume_workers(backend: str, system: str) -> Response:
    """Resume every worker of the system on the backend (RQ's ``rq resume``)."""
    return jsonify({"suspended": suspend(backend, system, False)})


@admin_api.post(WORKER)
def worker_command(backend: str, system: str, name: str, action: str) -> tuple[Response, int]:
    """Send a worker a command (``shutdown``; Celery: ``pool_grow``/``pool_shrink`` with ``{"n": 1}``): 202."""
    action = action_arg(action)
    body = json_body() if request.content_length or request.mimetype == "application/json" else {}
    command_worker(backend, system, name, action, step_arg(body.get("n")))
    return jsonify({"sent": True, "worker": name, "action": action}), 202


# -- pages -----------------------------------------------------------------------------------


def _job_page(backend: str, system: str, queue: str, job_id: str, **args: Any) -> str:
    return url_for("pages.jobs.job_page", job_id=job_id, backend=backend, system=system, queue=queue, **args)


@bp.post(JOB + "/stop")
def stop_page(backend: str, system: str, queue: str, job_id: str) -> Response:
    """Stop a running job, then follow it on its page."""
    job_id = job_id_arg(job_id)
    since = time.time()
    try:
        worker = stop_job(backend, system, queue, job_id)
    except (Refused, Unsupported, AdapterError) as exc:
        if isinstance(exc, NotFound):
            raise
        flash(f"Job {job_id} was not stopped: {exc}", "error")
        return redirect(safe_next(request.form.get("next"), _job_page(backend, system, queue, job_id)), code=303)  # type: ignore[return-value]
    flash(f"Asked {worker or 'its worker'} to stop job {job_id}.", "success")
    follow_url = url_for("pages.control.stopping", backend=backend, system=system, queue=queue, job_id=job_id, since=f"{since:.3f}")
    return redirect(follow_url, code=303)  # type: ignore[return-value]


@bp.get(JOB + "/stopping")
def stopping(backend: str, system: str, queue: str, job_id: str) -> Response:
    """The fragment that follows a stopped job (it polls itself until the job has stopped or the wait is over)."""
    job_id = job_id_arg(job_id)
    since = since_arg(request.args.get("since"))
    found = follow(backend, system, queue, job_id, since, timeout_arg(request.args.get("timeout")))
    return htmx.render("partials/control_stop_page.html", "partials/control_stopping.html", found=found, since=since,
                       backend=backend, system=system, queue=queue, job_id=job_id,
                       label=monitor().adapter(backend, system).label)  # fmt: skip


def _pause_form(backend: str, system: str, queue: str, paused: bool) -> Response:
    back = url_for("pages.queue", backend=backend, system=system, queue=queue)
    try:
        state = pause_queue(backend, system, queue, paused)
    except (Unsupported, AdapterError) as exc:
        if isinstance(exc, NotFound):
            raise
        flash(f"Nothing was changed: {exc}", "error")
        return redirect(back, code=303)  # type: ignore[return-value]
    flash(f"{queue} is paused: workers take none of its jobs until it is resumed." if state
          else f"{queue} is resumed: workers take its jobs again.", "success")  # fmt: skip
    return redirect(back, code=303)  # type: ignore[return-value]


@bp.post(QUEUE + "/pause")
def pause_page(backend: str, system: str, queue: str) -> Response:
    """Pause the queue from its page."""
    return _pause_form(backend, system, queue, True)


@bp.post(QUEUE + "/resume")
def resume_page(backend: str, system: str, queue: str) -> Response:
    """Resume the queue from its page."""
    return _pause_form(backend, system, queue, False)


@bp.get(QUEUE + "/control")
def queue_fragment(backend: str, system: str, queue: str) -> Response:
    """The queue page's pause controls, refreshed on its own."""
    stats = monitor().queue(backend, system, queue)
    return htmx.render("partials/control_queue.html", "partials/control_queue.html", stats=stats,
                       adapter=monitor().adapter(backend, system))  # fmt: skip


def _suspend_form(backend: str, system: str, suspended: bool) -> Response:
    back = safe_next(request.form.get("next"), url_for("pages.workers"))
    try:
        state = suspend(backend, system, suspended)
    except (Unsupported, AdapterError) as exc:
        if isinstance(exc, NotFound):
            raise
        flash(f"Nothing was changed: {exc}", "error")
        return redirect(back, code=303)  # type: ignore[return-value]
    label = monitor().adapter(backend, system).label
    flash(f"Every {label} worker on {backend} is suspended: none takes a new job until resumed." if state
          else f"Every {label} worker on {backend} is resumed.", "success")  # fmt: skip
    return redirect(back, code=303)  # type: ignore[return-value]


@bp.post("/backends/<backend>/<system>/suspend")
def suspend_page(backend: str, system: str) -> Response:
    """Suspend every worker of the system on the backend, from the workers page."""
    return _suspend_form(backend, system, True)


@bp.post("/backends/<backend>/<system>/resume")
def resume_workers_page(backend: str, system: str) -> Response:
    """Resume every worker of the system on the backend, from the workers page."""
    return _suspend_form(backend, system, False)


@admin.post(WORKER)
def worker_page(backend: str, system: str, name: str, action: str) -> Response:
    """Send a worker a command from the workers page."""
    action = action_arg(action)
    back = url_for("pages.workers")
    try:
        command_worker(backend, system, name, action, 1)
    except (Unsupported, AdapterError) as exc:
        flash(f"Nothing was sent: {exc}", "error")
        return redirect(back, code=303)  # type: ignore[return-value]
    flash(f"Asked {name} to {VERBS[action]}." if action == "shutdown" else f"Asked {name} to {VERBS[action]} by 1.", "success")
    return redirect(back, code=303)  # type: ignore[return-value]
