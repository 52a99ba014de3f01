"""Logging in and out through the login page (API clients send a bearer token instead)."""

from __future__ import annotations

from flask import Blueprint, Response, make_response, redirect, render_template, request, session, url_for

from queuewatch.security import audit
from queuewatch.security import sessions
from queuewatch.security.auth import auth, client

from .params import safe_next

bp = Blueprint("auth", __name__)


def _next_url(raw: str | None) -> str:
    """Where to go after logging in: a path on this dashboard, never another site."""
    return safe_next(raw, url_for("pages.overview"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """The login form; a correct name and password start a session."""
    state = auth()
    target = _next_url(request.values.get("next"))
    if not state.credentials.users:
        # Nobody to log in as: say what the dashboard is instead of "wrong password" to every guess.
        open_mode = not state.required
        return render_template("login.html", next=target, error=None, no_users=True, open_mode=open_mode,
                               user_header=state.user_header), 200 if request.method == "GET" else 409  # fmt: skip
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    name = request.form.get("username", "").strip()[:200]
    address = client()
    wait = state.limiter.reserve(address, name)  # counted before the password is checked: concurrent guesses wait too
    if wait:
        audit.record_login(name, None, "refused (too many attempts)")
        answer = make_response(render_template("login.html", next=target, error=f"Too many attempts: try again in {wait} s."), 429)
        answer.headers["Retry-After"] = str(wait)
        return answer
    who = state.check_password(name, request.form.get("password", ""))
    if who is None:
        audit.record_login(name, None, "refused")
        return render_template("login.html", next=target, error="Wrong user name or password."), 401
    state.limiter.succeeded(address, name)
    sessions.begin(who.name)  # a new session (and CSRF token) for the new identity
    audit.record_login(who.name, who.role, "ok")
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Response:
    """End the session, and every other session of the same user (a copied cookie too)."""
    user = session.get("user")
    sessions.end(user if isinstance(user, str) else None)
    return redirect(url_for("auth.login"), code=303)
