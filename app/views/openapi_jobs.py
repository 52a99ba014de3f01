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
