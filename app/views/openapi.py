"""``GET /api/v1/openapi.json``: the API described as OpenAPI 3.0.

The paths come from the app's own URL map, so every ``/api`` route appears;
what each one takes and answers comes from ``DETAILS`` (tests/test_openapi.py
fails for a route that has no entry there, so the description stays true).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from queuewatch.adapters.backends import BACKENDS, SYSTEM_NAMES

from . import openapi_jobs
from .listing import QUEUE_STATES

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


INT = {"type": "integer"}
NINT = {"type": "integer", "nullable": True}
STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
TIME = {"type": "string", "format": "date-time", "nullable": True}
STRS = {"type": "array", "items": STR}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(("error",), error=_obj(("code", "message"), code=STR, message=STR)),
    "Backend": _obj(("name", "kind", "url", "status"), name=STR, kind={"type": "string", "enum": list(BACKENDS)},
                    url=STR, status={"type": "string", "enum": ["up", "down"]}, error=NSTR, systems=STRS),
    "Queue": _obj(("backend", "system", "name"), backend=STR, system=STR, name=STR, depth=NINT, in_progress=NINT,
                  scheduled=NINT, failed=NINT, workers=NINT, oldest_age_seconds={"type": "number", "nullable": True},
                  workers_unknown=NSTR, dead_letters_of=STRS, failed_in=NSTR),
    "Worker": _obj(("backend", "system", "name"), backend=STR, system=STR, name=STR, hostname=NSTR, pid=NINT,
                   queues=STRS, state=NSTR, alive={"type": "boolean"}, last_heartbeat=TIME, current_job=NSTR),
    "FailedJob": _obj(("id",), id=STR, function=NSTR, args_preview=NSTR, error_type=NSTR, error_message=NSTR,
                      failed_at=TIME, attempts=NINT),
    "Selection": {"type": "object", "description": 'Either {"ids": [...]} or {"all": true}.',
                  "properties": {"ids": {"type": "array", "items": STR, "minItems": 1, "maxItems": 10000},
                                 "all": {"type": "boolean"}}},
    "AuditEntry": _obj(("time", "user", "action", "result"), id=STR, time=STR, user=STR, role=NSTR, action=STR,
                       backend=NSTR, system=NSTR, queue=NSTR, ids={"nullable": True, "oneOf": [STR, STRS]},
                       id_count=NINT, affected=NINT, result=STR, client=NSTR),
}

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
CURSOR = {"name": "cursor", "in": "query", "schema": STR}
INSPECTION = {"name": "inspection", "in": "query", "schema": STR,
              "description": "dead letters (RabbitMQ): the id of the inspection to read, from POST .../inspect"}
HISTORY = [{"name": "minutes", "in": "query", "schema": {"type": "number"}},
           {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
           {"name": "points", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]
OPEN = {"type": "object", "additionalProperties": True}
# GET /api/v1/queues narrowed like the overview's table (app/views/listing.py); without any of these, every queue.
QUEUE_LISTING = [
    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200},
     "description": "case-insensitive substring of the queue's name, backend or system"},
    {"name": "system", "in": "query", "schema": {"type": "string", "enum": list(SYSTEM_NAMES)}},
    {"name": "backend", "in": "query", "schema": STR, "description": "a configured backend's name"},
    {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(QUEUE_STATES)},
     "description": "failing: failed > 0; backlog: waiting > 0; no-workers: waiting > 0 and no live worker; alerting: an alert firing"},
    {"name": "sort", "in": "query", "schema": {"type": "string", "pattern": "^-?(name|system|backend|depth|in_progress|scheduled|failed|workers|oldest)$"},
     "description": "a leading - sorts descending; unknown (null) counts sort last either way"},
    {"name": "dir", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1},
     "description": "with page or per, one page (past the last: the last) and total, matched, page, pages, per"},
    {"name": "per", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
]

# A failed-jobs filter (app/failures/triage.py Filter), as query parameters or a JSON object.
FILTER = [{"name": n, "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": d} for n, d in (
    ("function", "case-insensitive substring of the function name"), ("exception", "case-insensitive substring of the exception type"),
    ("q", "case-insensitive substring of id, function, exception, message or arguments"),
    ("since", "ISO 8601 time: failed at or after (UTC if no offset)"), ("until", "ISO 8601 time: failed before"),
    ("group", "a fingerprint (16 hex digits): exactly one group's jobs"))]
GROUPING = _obj(("groups", "examined", "partial"), groups={"type": "array", "items": OPEN}, examined=INT,
                total=NINT, partial={"type": "boolean"}, elapsed_seconds={"type": "number"},
                errors={"type": "array", "items": STR})
OPERATION = _obj(("id", "action", "state", "total"), id=STR, action=STR, state={"type": "string", "enum": [
    "counting", "ready", "running", "done", "cancelled"]}, total=INT, processed=INT, affected=INT, skipped=INT, unconfirmed=INT,
    examined=INT, percent={"type": "number"}, selection=STR, targets={"type": "array", "items": OPEN}, filter=OPEN)

# endpoint → (query parameters, request body schema or None, 2xx response schema)
DETAILS: dict[str, tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]] = {
    "api.backends": ([], None, _obj(("backends",), backends={"type": "array", "items": _ref("Backend")})),
    "api.queues": (QUEUE_LISTING, None, _obj(("queues",), queues={"type": "array", "items": _ref("Queue")},
                                             total=INT, matched=INT, page=INT, pages=INT, per=INT)),
    "api.queue": ([], None, _ref("Queue")),
    "api.workers": ([], None, _obj(("workers",), workers={"type": "array", "items": _ref("Worker")})),
    "api.failed": ([LIMIT, CURSOR, INSPECTION, *FILTER], None, _obj(("jobs", "total"), jobs={"type": "array", "items": _ref("FailedJob")},
                                               total=NINT, next_cursor=NSTR, prev_cursor=NSTR, offset=NINT,
                                               examined=INT, partial={"type": "boolean"}, elapsed_seconds={"type": "number"})),
    "api.job": ([INSPECTION], None, OPEN),
    "api.inspect": ([], _obj(confirm={"type": "boolean", "description": "required for a quorum queue: reading counts as a delivery"},
                             limit=INT), OPEN),
    "api.requeue": ([], _ref("Selection"), _obj(("requeued", "not_found"), requeued=INT, not_found=STRS)),
    "api.delete": ([], _ref("Selection"), _obj(("deleted", "not_found"), deleted=INT, not_found=STRS)),
    "api.purge": ([], {"type": "object"}, _obj(("purged",), purged=INT)),
    "api.queue_history": (HISTORY, None, OPEN),
    "api.all_history": ([*HISTORY, {"name": "fields", "in": "query", "schema": STR},
                         {"name": "series", "in": "query", "schema": STR,
                          "description": "only these queues: backend/system/queue items, comma-separated, each part percent-encoded (at most 500)"}],
                        None, OPEN),
    "api.sampler": ([], None, OPEN),
    "audit.api": ([LIMIT, CURSOR], None, _obj(("entries", "next_cursor"), entries={"type": "array", "items": _ref("AuditEntry")},
                                              next_cursor=NSTR)),
    "openapi.document": ([], None, OPEN),
    # Alerts (app/views/alerts.py; DESIGN.md's rule shape, extended there).
    "alerts_api.list_alerts": ([], None, _obj(("alerts",), alerts={"type": "array", "items": OPEN})),
    "alerts_api.alert_history": ([{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                                 None, _obj(("alerts",), alerts={"type": "array", "items": OPEN})),
    "alerts_api.list_rules": ([], None, _obj(("rules",), rules={"type": "array", "items": OPEN})),
    "alerts_api.put_rule": ([], _obj(max_depth=NINT, for_seconds={"type": "number"}, max_oldest_age_seconds={"type": "number"},
                                     min_workers=NINT, max_new_failures=NINT, failures_window_seconds={"type": "number"},
                                     max_periodic_lateness={"type": "number", "nullable": True}), OPEN),
    "alerts_api.remove_rule": ([], None, OPEN),
    "alerts_api.list_webhooks": ([], None, _obj(("webhooks",), webhooks={"type": "array", "items": OPEN},
                                                configured={"type": "array", "items": OPEN})),
    "alerts_api.put_webhooks": ([], _obj(("webhooks",), webhooks={"type": "array", "items": _obj(("url",), url=STR,
                                    format={"type": "string", "enum": ["json", "slack"]})}), OPEN),
    "alerts_api.post_test": ([], {"type": "object"}, _obj(("results",), results={"type": "array", "items": OPEN})),
    "alerts_api.api_acknowledge": ([], {"type": "object"}, OPEN),
    "alerts_api.api_silence": ([], _obj(("seconds",), seconds={"type": "number", "minimum": 0, "maximum": 604800}), OPEN),
    # Failure triage and bulk operations (app/failures/triage.py, app/failures/operations.py).
    "triage_api.api_failures": (FILTER, None, GROUPING),
    "triage_api.api_queue_groups": (FILTER, None, GROUPING),
    "operations_api.api_start": ([], _obj(("action",), action={"type": "string", "enum": ["requeue", "delete"]}, backend=STR, system=STR,
                                   queue=STR, scope={"type": "string", "enum": ["everywhere"]},
                                   filter=_obj(**{p["name"]: p["schema"] for p in FILTER})), OPERATION),
    "operations_api.api_index": ([], None, _obj(("operations",), operations={"type": "array", "items": OPERATION})),
    "operations_api.api_show": ([], None, OPERATION),
    "operations_api.api_confirm": ([], _obj(("total",), total=INT), OPERATION),
    "operations_api.api_cancel": ([], None, OPERATION),
}
# The jobs-in-every-state routes are described beside their views (views/jobs.py).
DETAILS |= openapi_jobs.PATHS
SCHEMAS |= openapi_jobs.SCHEMAS

ERRORS = {str(code): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
          for code, text in ((400, "Bad request"), (401, "Not logged in / no valid bearer token"),
                             (403, "The role does not allow it, read-only mode, or a cross-site request"),
                             (404, "No such backend, system, queue or job"), (409, "Not possible for this system"),
                             (503, "The backend is down"))}  # fmt: skip


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def name(match: re.Match[str]) -> str:
        names.append(match.group(2))
        return "{" + match.group(2) + "}"

    return re.sub(r"<(?:([a-z]+):)?(\w+)>", name, rule), names


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for every ``/api`` route of ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        path, names = _openapi_path(rule.rule)
        query, body, answer = DETAILS.get(rule.endpoint, ([], None, OPEN))
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": (view.__doc__ or rule.endpoint).strip().splitlines()[0],
                "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                               for n in names] + ([] if method != "GET" else query),  # fmt: skip
                "responses": {("204" if method == "DELETE" else "200"): {"description": "OK", **(
                    {} if method == "DELETE" else {"content": {"application/json": {"schema": answer}}})}, **ERRORS},
            }  # fmt: skip
            if method in ("POST", "PUT", "PATCH") and body is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "queuewatch", "version": "1", "description": "Queues, workers and failed jobs of RQ, Celery, "
                 "Dramatiq and Arq; send Authorization: Bearer TOKEN when authentication is on."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
    }


@bp.get("/api/v1/openapi.json")
def document() -> Response:
    """This API, described as OpenAPI 3.0."""
    return jsonify(build(current_app))
