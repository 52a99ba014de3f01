"""The headers every answer gets: the Content-Security-Policy (no inline script,
no framing, nothing from elsewhere: the assets are vendored), no sniffing, and
no shared caching of job data; and the limit on request bodies, checked first."""

from __future__ import annotations

from flask import Flask, Response, abort, current_app, request

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def security_headers(response: Response) -> Response:
    """Defaults every page gets; job data never lands in a shared cache."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if response.mimetype in ("text/html", "application/json"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def refuse_large_bodies() -> None:
    """413 for a body over MAX_CONTENT_LENGTH, from its Content-Length alone: before the login
    form or the CSRF check reads it (werkzeug also stops a chunked body at the limit)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is not None and request.content_length > limit:
        abort(413, description=f"the request body is {request.content_length:,} bytes; at most {limit:,} are read")


def init_app(app: Flask) -> None:
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_large_bodies)
    app.after_request(security_headers)
