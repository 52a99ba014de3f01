"""Sessions that logging out revokes and that end when left idle.

The cookie (signed by Flask) carries the user, when the session began and was
last used, and the user's session generation at login. Logging out raises the
generation in the state store, so every cookie of that user made before —
copied, or left in another browser — stops working. A session unused for
``SESSION_IDLE_SECONDS`` (12 h by default, ``--session-idle``) or older than
``PERMANENT_SESSION_LIFETIME`` (7 days) ends as well.
"""

from __future__ import annotations

import logging
import time

from flask import current_app, session

from queuewatch.adapters.errors import StoreUnavailable

log = logging.getLogger(__name__)
TOUCH_SECONDS = 60.0  # "last used" is rewritten at most this often (each rewrite is a new cookie)


def _key(user: str) -> str:
    return f"session-generation:{user}"


def generation(user: str) -> int:
    try:
        return int(current_app.extensions["queuewatch.store"].get(_key(user)) or 0)
    except (StoreUnavailable, ValueError):
        return -1  # unknown while the store is down: see valid()


def begin(user: str) -> None:
    """A new session (and CSRF token) for ``user``."""
    now = time.time()
    session.clear()
    session.permanent = True
    session.update(user=user, gen=generation(user), since=now, seen=now)


def valid(user: str) -> bool:
    """Whether the session's cookie still stands: same generation, used recently, not too old."""
    now = time.time()
    seen, since = session.get("seen"), session.get("since")
    if not isinstance(seen, (int, float)) or not isinstance(since, (int, float)):
        return False
    if now - seen > float(current_app.config["SESSION_IDLE_SECONDS"]):
        return False
    if now - since > current_app.permanent_session_lifetime.total_seconds():
        return False
    current = generation(user)
    if current == -1:  # the store cannot be read: a logout cannot have been recorded either
        log.warning("session generation of %s unknown (state store unavailable): accepting the session", user)
    elif session.get("gen") != current:
        return False
    if now - seen > TOUCH_SECONDS:
        session["seen"] = now
    return True


def end(user: str | None) -> None:
    """Log out: this cookie and every other of the same user stop working."""
    if user:
        try:
            store = current_app.extensions["queuewatch.store"]
            store.put(_key(user), str(max(0, generation(user)) + 1))
        except StoreUnavailable as exc:  # the cookie is still cleared; others of this user stay valid
            log.warning("could not revoke the sessions of %s: %s", user, exc)
    session.clear()
