"""The OpenAPI description of the jobs-in-every-state routes (``views.jobs``), in the style of
``openapi.DETAILS``: endpoint -> (query parameters, request body, answer), and the schemas they name.
``openapi`` merges both (``DETAILS |= openapi_jobs.PATHS``, ``SCHEMAS |= openapi_jobs.SCHEMAS``)."""

from __future__ import annotations

from typing import Any

from queuewatch.adapters.base import STATES


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


INT = {"type": "integer"}
NINT = {"type": "integer", "nullable": True}
STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
TIME = {"type": "string", "format": "date-time", "nullable": True}
STATE = {"type": "string", "enum": list(STATES)}
IDS = _obj(("ids",), ids={"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 10000})
INSPECTION = _obj(("id",), id=STR, taken_at=TIME, by=STR, read=INT, truncated={"type": "boolean"},
                  notes={"type": "array", "items": STR})  # fmt: skip

SCHEMAS: dict[str, Any] = {
    "Job": _obj(
        ("id", "state"),
        id=STR,
        function=NSTR,
        args_preview=NSTR,
        error_type=NSTR,
        error_message=NSTR,
        failed_at=TIME,
        attempts=NINT,
        state=STATE,
        enqueued_at=TIME,
        started_at=TIME,
        ended_at=TIME,
        scheduled_for=TIME,
        worker=NSTR,
    ),  # fmt: skip
    "JobMatch": _obj(("backend", "system", "queue", "state"), backend=STR, system=STR, queue=STR, state=STATE),
}

JOB_PAGE = _obj(("state", "jobs", "total", "next_cursor"), state=STATE, jobs={"type": "array", "items": _ref("Job")},
                total=NINT, next_cursor=NSTR, prev_cursor=NSTR, offset=INT, inspection=INSPECTION)  # fmt: skip

PATHS: dict[str, tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]] = {
    "api.jobs.list_jobs": (
        [
            {"name": "state", "in": "query", "required": True, "schema": STATE},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "cursor", "in": "query", "schema": STR},
            {"name": "inspection", "in": "query", "schema": STR},
        ],
        None,
        JOB_PAGE,
    ),  # fmt: skip
    "api.jobs.inspect_jobs": (
        [],
        _obj(("state",), state=STATE, confirm={"type": "boolean"}, limit={"type": "integer", "minimum": 1, "maximum": 500}),
        JOB_PAGE,
    ),  # fmt: skip
    "api.jobs.delete_jobs": ([], IDS, _obj(("deleted", "not_found"), deleted=INT, not_found={"type": "array", "items": STR})),
    "api.jobs.enqueue_now": ([], IDS, _obj(("enqueued", "not_found"), enqueued=INT, not_found={"type": "array", "items": STR})),
    "api.jobs.revoke_jobs": ([], IDS, _obj(("revoked", "not_found"), revoked=INT, not_found={"type": "array", "items": STR})),
    "api.jobs.restore_jobs": ([], IDS, _obj(("restored", "not_found"), restored=INT, not_found={"type": "array", "items": STR})),
    "api.jobs.find_job": (
        [],
        None,
        _obj(
            ("matches",),
            id=STR,
            matches={"type": "array", "items": _ref("JobMatch")},
            unreachable={"type": "array", "items": _obj(("backend", "error"), backend=STR, system=STR, error=NSTR)},
        ),
    ),  # fmt: skip
}

# Control of live work (views/control.py): stop and follow a job, pause a queue, suspend a
# system's workers on a backend, worker commands (admin).
ANY_BODY = {"type": "object", "description": "send {} (a JSON body: API writes need no CSRF token)"}
PAUSED = _obj(("paused",), paused={"type": "boolean"})
SUSPENDED = _obj(("suspended",), suspended={"type": "boolean"})
STOP_FOLLOW = _obj(
    ("id", "outcome", "stopped", "state", "message"),
    id=STR,
    outcome={"type": "string", "enum": ["stopping", "ended", "not_stopped"]},
    stopped={"type": "boolean"},
    state={"type": "string", "enum": list(STATES), "nullable": True},
    status=NSTR,
    worker=NSTR,
    waited_seconds={"type": "number"},
    timeout_seconds={"type": "number"},
    message=STR,
)  # fmt: skip
PATHS |= {
    "api.control.stop": (
        [],
        ANY_BODY,
        _obj(
            ("stopping", "worker", "follow"),
            stopping={"type": "boolean"},
            worker=NSTR,
            follow=STR,
            timeout_seconds={"type": "number"},
        ),
    ),  # fmt: skip
    "api.control.stop_status": (
        [
            {
                "name": "since",
                "in": "query",
                "required": True,
                "schema": {"type": "number"},
                "description": "when the stop was asked, in seconds since the epoch (the stop answer's follow link has it)",
            },
            {
                "name": "timeout",
                "in": "query",
                "schema": {"type": "number", "minimum": 0, "maximum": 600},
                "description": "seconds after which a job still running did not stop (30 by default)",
            },
        ],
        None,
        STOP_FOLLOW,
    ),  # fmt: skip
    "api.control.pause": ([], ANY_BODY, PAUSED),
    "api.control.resume": ([], ANY_BODY, PAUSED),
    "api.control.suspension": ([], None, SUSPENDED),
    "api.control.suspend_workers": ([], ANY_BODY, SUSPENDED),
    "api.control.resume_workers": ([], ANY_BODY, SUSPENDED),
    "control_admin_api.worker_command": (
        [],
        _obj(
            n={
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "processes to add or remove (pool_grow, pool_shrink)",
            }
        ),
        _obj(("sent",), sent={"type": "boolean"}, worker=STR, action=STR),
    ),  # fmt: skip
}

# -- per-function metrics (issue 18: views.functions) ----------------------------------------
NFLOAT = {"type": "number", "nullable": True}
_FN_QUERY = [
    {"name": "minutes", "in": "query", "schema": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 129600}},
    {"name": "backend", "in": "query", "schema": {"type": "string", "maxLength": 512}},
    {"name": "system", "in": "query", "schema": {"type": "string", "maxLength": 512}},
    {"name": "queue", "in": "query", "schema": {"type": "string", "maxLength": 512}},
]
SCHEMAS["FunctionStats"] = _obj(
    ("backend", "system", "queue", "function", "processed", "failed", "runtime_p50_seconds", "runtime_p95_seconds",
     "runtime_max_seconds", "wait_p50_seconds", "wait_p95_seconds"),
    backend=STR, system=STR, queue=STR, function=STR, processed=NINT, failed=NINT, failure_rate=NFLOAT,
    runtime_p50_seconds=NFLOAT, runtime_p95_seconds=NFLOAT, runtime_max_seconds=NFLOAT, wait_p50_seconds=NFLOAT,
    wait_p95_seconds=NFLOAT,
)  # fmt: skip
PATHS["api.functions.list_functions"] = (
    _FN_QUERY,
    None,
    _obj(("functions",), minutes={"type": "number"}, functions={"type": "array", "items": _ref("FunctionStats")},
         notes={"type": "array", "items": STR}),
)  # fmt: skip
PATHS["api.functions.function_series"] = (
    [dict(p, required=p["name"] != "minutes") for p in _FN_QUERY]
    + [{"name": "function", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 512}}],
    None,
    _obj(("points",), backend=STR, system=STR, queue=STR, function=STR, minutes={"type": "number"},
         points={"type": "array", "items": _obj(("t",), t=INT, processed=NINT, failed=NINT, runtime_p50_seconds=NFLOAT,
                                                runtime_p95_seconds=NFLOAT, runtime_max_seconds=NFLOAT,
                                                wait_p50_seconds=NFLOAT, wait_p95_seconds=NFLOAT)}),
)  # fmt: skip

# -- periodic work (issue 20: views.periodic) ---------------------------------------------

PERIODIC = _obj(("backend", "system", "name", "schedule", "late"), backend=STR, system=STR, queue=NSTR, name=STR, function=NSTR,
                schedule=STR, interval_seconds={"type": "number", "nullable": True}, last_run=TIME,
                last_outcome={"type": "string", "nullable": True, "enum": ["succeeded", "failed", "running", "waiting", None]},
                next_run=TIME, next_run_recorded={"type": "boolean"}, late={"type": "boolean"},
                late_seconds={"type": "number", "nullable": True}, intervals_since_last_run={"type": "number", "nullable": True},
                runner=NSTR, source=STR, runs=NINT, notes={"type": "array", "items": STR})  # fmt: skip
PATHS["api.periodic.list_periodic"] = (
    [], None, _obj(("periodic", "unreachable"), periodic={"type": "array", "items": PERIODIC},
                   unreachable={"type": "array", "items": _obj(backend=STR, system=NSTR, error=STR)}),
)  # fmt: skip
PATHS["api.periodic.list_groups"] = (
    [], None, _obj(("groups", "truncated", "unreachable"), groups={"type": "array", "items": _obj(
        backend=STR, name=STR, size=INT, statuses={"type": "object"}, truncated={"type": "boolean"},
        jobs={"type": "array", "items": _obj(id=STR, queue=NSTR, status=NSTR, state=NSTR)})},
        truncated={"type": "boolean"}, unreachable={"type": "array", "items": _obj(backend=STR, system=NSTR, error=STR)}),
)  # fmt: skip
