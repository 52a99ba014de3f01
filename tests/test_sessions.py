"""Sessions end when they should, and the login limiter stops guessers, not people.

Logout revokes every cookie of that user (a copy included); an idle session
ends; a token past its ``expires`` is refused; forty concurrent wrong logins
get five password checks, whichever of two gunicorn workers they reach;
another user behind the same address, or behind the same proxy, is not locked
out."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from conftest import csrf_token, serve_queuewatch, wait_for
from test_auth import login, make_app
from werkzeug.security import generate_password_hash

from queuewatch.security.auth import hash_token

pytestmark = pytest.mark.redis_db(8)


@pytest.fixture
def users(tmp_path: Path) -> str:
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(json.dumps({"name": n, "role": r, "password_hash": generate_password_hash(f"{n[0]}-pass")})
                              for n, r in (("otto", "operator"), ("ada", "admin"))))  # fmt: skip
    return str(path)


def test_logout_revokes_a_copied_cookie_and_every_other_session_of_the_user(redis_url, tmp_path, users) -> None:
    app = make_app(redis_url, tmp_path, USERS=users)
    try:
        first, second = app.test_client(), app.test_client()
        login(first, "otto")
        login(second, "otto")  # another browser
        cookie = first.get_cookie("queuewatch_session").value
        assert first.get("/api/v1/queues").status_code == 200
        assert first.post("/logout", data={"csrf_token": csrf_token(first)}).status_code == 303
        thief = app.test_client()
        thief.set_cookie("queuewatch_session", cookie)  # copied before the logout
        assert thief.get("/api/v1/queues").status_code == 401
        assert second.get("/api/v1/queues").status_code == 401  # the other browser's session ended too
        login(second, "otto")
        assert second.get("/api/v1/queues").status_code == 200  # a new login works
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_an_idle_session_ends(redis_url, tmp_path, users) -> None:
    app = make_app(redis_url, tmp_path, USERS=users, SESSION_IDLE_SECONDS=0.5)
    try:
        client = app.test_client()
        login(client, "otto")
        assert client.get("/api/v1/queues").status_code == 200
        wait_for(lambda: client.get("/api/v1/queues").status_code == 401, 5, what="the idle session to end", step=0.6)
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_a_token_past_its_expiry_is_refused(redis_url, tmp_path) -> None:
    tokens = tmp_path / "tokens.jsonl"
    tokens.write_text("\n".join(json.dumps(t) for t in (
        {"name": "old", "role": "viewer", "token_hash": hash_token("tok-old"), "expires": "2020-01-01T00:00:00Z"},
        {"name": "new", "role": "viewer", "token_hash": hash_token("tok-new"), "expires": "2999-01-01"})))  # fmt: skip
    app = make_app(redis_url, tmp_path, TOKENS=str(tokens))
    try:
        client = app.test_client()
        old = client.get("/api/v1/queues", headers={"Authorization": "Bearer tok-old"})
        assert old.status_code == 401 and "expired" in old.get_json()["error"]["message"]
        assert client.get("/api/v1/queues", headers={"Authorization": "Bearer tok-new"}).status_code == 200
    finally:
        app.extensions["queuewatch.monitor"].close()


def _login_over_http(base: str, user: str, password: str, headers: dict[str, str] | None = None) -> int:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    page = opener.open(urllib.request.Request(base + "/login", headers=headers or {}), timeout=30).read().decode()
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode({"username": user, "password": password, "csrf_token": token}).encode()
    try:
        return opener.open(urllib.request.Request(base + "/login", data=body, headers=headers or {}), timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_forty_concurrent_guesses_get_five_password_checks_across_two_workers(tmp_path, redis_url, users) -> None:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--users", users, "--workers", "2") as base:
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda: statuses.append(_login_over_http(base, "otto", "wrong"))) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(statuses) == [401] * 5 + [429] * 35  # five checked the password; the rest were turned away first
        assert _login_over_http(base, "ada", "a-pass") == 303  # another user at the same address is not locked out
        assert _login_over_http(base, "otto", "o-pass") == 429  # the guessed account waits its window out


def test_behind_a_proxy_each_client_is_limited_on_its_own(tmp_path, redis_url, users) -> None:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--users", users) as base:
        for _ in range(5):
            assert _login_over_http(base, "otto", "wrong", {"X-Forwarded-For": "203.0.113.9"}) == 401
        assert _login_over_http(base, "otto", "o-pass", {"X-Forwarded-For": "203.0.113.9"}) == 429
        assert _login_over_http(base, "otto", "o-pass", {"X-Forwarded-For": "198.51.100.7"}) == 303
