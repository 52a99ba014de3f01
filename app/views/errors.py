"""Every error a view answers, in one place: the status and code each kind of
error gets (one table), and how it is answered — JSON ``{"error": {"code",
"message"}}`` under ``/api/``, the error page (or its htmx fragment) elsewhere.

Views raise; they never build error answers of their own.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from queuewatch.adapters.errors import AdapterError, Interrupted, NotFound, StoreUnavailable, Unsupported
from queuewatch.failures.operations import OperationError
from queuewatch.failures.triage import FilterError
from queuewatch.snapshots.monitor import Busy

from . import htmx
from .params import BadRequest

class Refused(Exception):
    """A request that cannot be done as sent (409 by default): the message says why and what to send instead."""

    def __init__(self, message: str, code: str = "conflict", status: int = 409) -> None:
        super().__init__(message)
        self.code, self.status = code, status


# The code an HTTP status gets when nothing more specific is known.
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "too_large", 429: "too_many_requests", 500: "error", 503: "unavailable"}  # fmt: skip
TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
          409: "Not possible", 413: "Too large", 429: "Too many requests", 503: "Unavailable"}  # fmt: skip
STORE_TITLE = "The dashboard's own store is unavailable"


def classify(error: Exception) -> tuple[int, str]:
    """(HTTP status, error code) of an error a view let out."""
    if isinstance(error, NotFound):
        return 404, "not_found"
    if isinstance(error, Unsupported):
        return 409, "unsupported"
    if isinstance(error, StoreUnavailable):
        return 503, "store_unavailable"
    if isinstance(error, AdapterError):  # BackendUnavailable, or any other: the backend's fault, not ours
        return 503, "backend_unavailable"
    if isinstance(error, (BadRequest, FilterError)):
        return 400, "bad_request"
    if isinstance(error, Busy):
        return 503, "busy"
    if isinstance(error, Refused):
        return error.status, error.code
    if isinstance(error, OperationError):
        return error.status, CODES.get(error.status, "error")
    if isinstance(error, HTTPException):
        status = error.code or 500
        return status, CODES.get(status, "error")
    return 500, "error"


def json_error(status: int, code: str, message: str) -> tuple[Response, int]:
    """The API's error answer."""
    return jsonify({"error": {"code": code, "message": message}}), status


def answer(error: Exception) -> Response | tuple[Response, int]:
    """The answer to ``error`` as the request's side expects it."""
    status, code = classify(error)
    message = (error.description or error.name) if isinstance(error, HTTPException) else str(error)
    if request.path.startswith("/api/"):
        response = json_error(status, code, message)
        if isinstance(error, Interrupted):  # what was done before the backend stopped answering
            done = error.done
            response[0].set_data(jsonify({"error": {"code": "interrupted", "message": message},
                                          "done": {"affected": done.affected, "not_found": list(done.not_found)}}).get_data())  # type: ignore[attr-defined]  # fmt: skip
    else:
        title = STORE_TITLE if code == "store_unavailable" else TITLES.get(status, error.name if isinstance(error, HTTPException) else "Error")
        response = htmx.render("error.html", "partials/error_body.html", status=status, title=title, message=message, code=code)
    if isinstance(error, Busy):
        answered = response[0] if isinstance(response, tuple) else response
        answered.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, HTTPException):  # keep what the exception says of itself (Allow, Retry-After, WWW-Authenticate)
        answered = response[0] if isinstance(response, tuple) else response
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                answered.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    for kind in (AdapterError, BadRequest, FilterError, OperationError, Refused, Busy, HTTPException):
        app.register_error_handler(kind, answer)
