"""CSRF protection for every state-changing request.

Forms and htmx requests carry a per-session token (form field ``csrf_token``
or header ``X-CSRF-Token``). JSON API writes are exempt: ``application/json``
cannot be sent cross-site without a CORS preflight, which we never grant.
Requests with ``Authorization: Bearer`` are exempt too (the token, not a
cookie, is what authorises them). Browsers that send ``Sec-Fetch-Site:
cross-site`` are refused outright.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_token() -> str:
    """This session's token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def is_json_api_request() -> bool:
    # PUT and DELETE, like a JSON body, cannot be sent cross-site without a preflight (a body-less API DELETE).
    return request.path.startswith("/api/") and (request.mimetype == "application/json" or request.method in ("PUT", "DELETE"))


def check_request() -> None:
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        abort(403, description="cross-site requests are refused")
    if is_json_api_request() or request.headers.get("Authorization", "")[:7].lower() == "bearer ":
        return  # a browser sends neither cross-site without a preflight; bearer requests carry no cookie authority
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(403, description="the form has expired or did not come from this dashboard: reload the page and try again")


def init_app(app: Flask) -> None:
    app.before_request(check_request)
    app.jinja_env.globals["csrf_token"] = csrf_token
