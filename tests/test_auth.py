"""Who may do what (issue 8): every route behind one policy, refused requests change nothing."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import free_port, redis_digest, run_rq_worker
from werkzeug.security import check_password_hash, generate_password_hash

from queuewatch import create_app
from queuewatch.security.auth import POLICY, hash_token, required_role

pytestmark = pytest.mark.redis_db(3)
PASSWORDS = {"vera": ("viewer", "v-pass"), "otto": ("operator", "o-pass"), "ada": ("admin", "a-pass")}
TOKENS = {"viewer": "tok-viewer", "operator": "tok-operator", "admin": "tok-admin"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def users_file(tmp_path: Path) -> str:
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(json.dumps({"name": n, "role": r, "password_hash": generate_password_hash(p)})
                              for n, (r, p) in PASSWORDS.items()))  # fmt: skip
    return str(path)


@pytest.fixture
def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text("".join(f'[[token]]\nname = "{r}-bot"\nrole = "{r}"\ntoken_hash = "{hash_token(t)}"\n' for r, t in TOKENS.items()))
    return str(path)


def make_app(redis_url: str, tmp_path: Path, **extra):
    return create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(tmp_path / "state.sqlite3"),
                       "POLL": 0.01, **extra})  # fmt: skip


@pytest.fixture
def secured(redis_url, tmp_path, users_file, tokens_file):
    app = make_app(redis_url, tmp_path, USERS=users_file, TOKENS=tokens_file)
    yield app
    app.extensions["queuewatch.monitor"].close()


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def login(client, name: str, password: str | None = None):
    client.get("/login")
    with client.session_transaction() as session:
        token = session["csrf"]
    return client.post("/login", data={"username": name, "password": password or PASSWORDS[name][1], "csrf_token": token})


def session_csrf(client) -> str:
    client.get("/")
    with client.session_transaction() as session:
        return session["csrf"]


def sample_url(rule) -> str:
    values = {"backend": "redis", "system": "rq", "queue": "work", "job_id": "job-1"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: quote(values.get(m.group(1), "x"), safe=""), rule.rule)


def mutating_routes(app) -> list[tuple[str, str, str]]:
    """Every (method, url, endpoint) that can change something, from the app's own URL map."""
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & WRITES):
            if required_role(rule.endpoint, method, rule.rule) != "public":
                found.append((method, sample_url(rule), rule.endpoint))
    return found


@pytest.fixture
def populated(r, redis_url, tmp_path) -> list[str]:
    """A queue with waiting jobs and failed jobs, for the refused requests to (not) touch."""
    q = rq.Queue("work", connection=r)
    failed = [q.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), i).id for i in range(2)]
    run_rq_worker(redis_url, "work")
    for i in range(3):
        q.enqueue(rq_tasks.add, i, i)
    return failed


def test_anonymous_and_viewer_requests_to_every_mutating_route_are_refused_and_change_nothing(secured, r, populated) -> None:
    routes = mutating_routes(secured)
    endpoints = {endpoint for _, _, endpoint in routes}
    assert {"pages.requeue", "pages.delete", "pages.purge", "api.requeue", "api.delete", "api.purge"} <= endpoints
    before = redis_digest(r)
    anonymous = secured.test_client()
    viewer = secured.test_client()
    assert login(viewer, "vera").status_code == 303
    viewer_csrf = session_csrf(viewer)
    body = {"ids": populated, "all": None}
    for method, url, endpoint in routes:
        form = {"csrf_token": viewer_csrf, "ids": populated, "all": "1"}
        answer = anonymous.open(url, method=method, json=body)
        assert answer.status_code == 401, (method, url)
        answer = anonymous.open(url, method=method, data=form)
        assert answer.status_code == 401, (method, url)
        for kwargs in ({"json": body}, {"data": form}, {"json": body, "headers": bearer("viewer")}):
            answer = viewer.open(url, method=method, **kwargs)
            assert answer.status_code == 403, (method, url, endpoint, kwargs)
    assert redis_digest(r) == before
    admin = secured.test_client()
    assert login(admin, "ada").status_code == 303
    assert admin.get("/api/v1/audit").get_json()["entries"][0]["action"] == "login"  # and no action entries
    assert {e["action"] for e in admin.get("/api/v1/audit").get_json()["entries"]} == {"login"}


def test_anonymous_page_views_redirect_to_the_login_page_and_api_reads_answer_401(secured) -> None:
    client = secured.test_client()
    answer = client.get("/workers")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=/workers")
    assert client.get("/api/v1/queues").status_code == 401
    assert client.get("/api/v1/queues").get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics").status_code == 401
    htmx = client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login"
    assert client.get("/healthz").status_code == 200 and client.get("/login").status_code == 200
    with client.get("/static/queuewatch.js") as static:
        assert static.status_code == 200


def test_an_operator_may_act_and_the_audit_log_records_who_what_and_how_many(secured, r, populated, caplog) -> None:
    operator = secured.test_client()
    assert login(operator, "otto").status_code == 303
    token = session_csrf(operator)
    assert operator.post("/queues/redis/rq/work/failed/requeue", data={"ids": populated[0]}).status_code == 403  # no CSRF token
    assert rq.Queue("work", connection=r).failed_job_registry.count == 2
    with caplog.at_level(logging.INFO, logger="queuewatch.audit"):
        answer = operator.post("/queues/redis/rq/work/failed/requeue", data={"ids": populated[0], "csrf_token": token})
        assert answer.status_code == 303
        answer = secured.test_client().post("/api/v1/queues/redis/rq/work/failed/delete", json={"all": True}, headers=bearer("operator"))
        assert answer.get_json() == {"deleted": 1, "not_found": []}
    assert rq.Queue("work", connection=r).failed_job_registry.count == 0
    logged = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "queuewatch.audit"]
    assert [(e["user"], e["action"]) for e in logged] == [("otto", "requeue"), ("operator-bot", "delete")]
    for client in (operator, secured.test_client()):
        refused = client.get("/api/v1/audit", headers={} if client is operator else bearer("operator"))
        assert refused.status_code == 403
    entries = secured.test_client().get("/api/v1/audit", headers=bearer("admin")).get_json()["entries"]
    delete, requeue = entries[0], entries[1]
    assert {k: requeue[k] for k in ("user", "role", "action", "backend", "system", "queue", "ids", "id_count", "affected", "result")} == {
        "user": "otto", "role": "operator", "action": "requeue", "backend": "redis", "system": "rq", "queue": "work",
        "ids": [populated[0]], "id_count": 1, "affected": 1, "result": "ok"}  # fmt: skip
    assert (delete["user"], delete["role"], delete["ids"], delete["affected"]) == ("operator-bot", "operator", "all", 1)
    assert requeue["client"] == "127.0.0.1" and requeue["time"].endswith("Z")
    page = secured.test_client().get("/audit", headers=bearer("admin")).get_data(as_text=True)
    assert "operator-bot" in page and populated[0] in page


def test_admin_only_routes_and_unknown_endpoints_need_admin(redis_url, tmp_path, users_file, tokens_file) -> None:
    app = make_app(redis_url, tmp_path, USERS=users_file, TOKENS=tokens_file)
    app.add_url_rule("/added-later", "newcomer.view", lambda: "hello")
    app.add_url_rule("/api/v1/hooks/x", "alerts_api.more_webhooks", lambda: "hook")  # a webhook endpoint, by its name
    try:
        client = app.test_client()
        for url in ("/audit", "/api/v1/audit", "/added-later", "/api/v1/hooks/x"):
            assert client.get(url, headers=bearer("viewer")).status_code == 403, url
            assert client.get(url, headers=bearer("operator")).status_code == 403, url
            assert client.get(url, headers=bearer("admin")).status_code == 200, url
        assert client.get("/api/v1/queues", headers=bearer("viewer")).status_code == 200
        # A queue is not admin-only for its name: the policy goes by endpoint, not by words in the path.
        for name in ("webhooks", "config-updates", "settings"):
            assert client.get(f"/queues/redis/rq/{name}", headers=bearer("viewer")).status_code == 404, name
            assert client.get(f"/api/v1/queues/redis/rq/{name}/history", headers=bearer("viewer")).status_code in (200, 404), name
        assert client.get("/metrics", headers=bearer("viewer")).status_code == 200
        assert client.get("/api/v1/queues", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_the_policy_table_defaults_reads_to_viewer_writes_to_operator_and_the_rest_to_admin() -> None:
    assert required_role("pages.queue", "GET", "/queues/a/b/c") == "viewer"
    assert required_role("api.purge", "POST", "/api/v1/queues/a/b/c/purge") == "operator"
    assert required_role("alerts.rule", "PUT", "/api/v1/alerts/rules/a/b/c") == "operator"
    assert required_role("alerts.webhooks", "GET", "/alerts/webhooks") == "admin"
    assert required_role("someone.new", "GET", "/new") == "admin"
    assert required_role("health.healthz", "GET", "/healthz") == "public"
    assert all(role in ("public", "viewer", "operator", "admin") for _, _, role in POLICY)


def test_the_proxy_user_header_is_trusted_only_when_configured_and_only_from_the_proxy(redis_url, tmp_path, users_file) -> None:
    headers = {"X-Forwarded-User": "pat", "X-Forwarded-Role": "operator"}
    plain = make_app(redis_url, tmp_path, USERS=users_file)
    proxied = make_app(redis_url, tmp_path, TRUST_USER_HEADER="X-Forwarded-User", TRUST_ROLE_HEADER="X-Forwarded-Role",
                       TRUSTED_PROXIES=["10.0.0.9"])  # fmt: skip
    try:
        assert plain.test_client().get("/api/v1/queues", headers=headers).status_code == 401
        client = proxied.test_client()
        from_proxy = {"REMOTE_ADDR": "10.0.0.9"}
        assert client.get("/api/v1/queues", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 401
        assert client.get("/api/v1/queues", headers=headers, environ_base=from_proxy).status_code == 200
        purge = client.post("/api/v1/queues/redis/rq/none/purge", json={}, headers=headers, environ_base=from_proxy)
        assert purge.status_code in (200, 404)
        viewer = client.post("/api/v1/queues/redis/rq/none/purge", json={}, headers={"X-Forwarded-User": "pat"}, environ_base=from_proxy)
        assert viewer.status_code == 403  # no role header: the default role, viewer
    finally:
        plain.extensions["queuewatch.monitor"].close()
        proxied.extensions["queuewatch.monitor"].close()


def test_read_only_mode_refuses_every_write_with_403(redis_url, tmp_path, r, populated) -> None:
    app = make_app(redis_url, tmp_path, READ_ONLY=True)
    try:
        client = app.test_client()
        before = redis_digest(r)
        token = session_csrf(client)
        for method, url, _ in mutating_routes(app):
            assert client.open(url, method=method, json={"all": True}).status_code == 403, url
            assert client.open(url, method=method, data={"all": "1", "csrf_token": token}).status_code == 403, url
        assert redis_digest(r) == before
        page = client.get("/queues/redis/rq/work").get_data(as_text=True)
        assert "Requeue selected" not in page and "Purge" not in page and "read-only" in page
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_buttons_a_viewer_cannot_use_are_not_shown(secured, populated) -> None:
    viewer, operator = secured.test_client(), secured.test_client()
    login(viewer, "vera")
    login(operator, "otto")
    assert "Requeue selected" not in viewer.get("/queues/redis/rq/work").get_data(as_text=True)
    assert "Audit" not in viewer.get("/").get_data(as_text=True)
    assert "Requeue selected" in operator.get("/queues/redis/rq/work").get_data(as_text=True)


def test_login_attempts_are_rate_limited(secured) -> None:
    client = secured.test_client()
    for _ in range(5):
        assert login(client, "otto", "wrong").status_code == 401
    refused = login(client, "otto")
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 300
    other = secured.test_client()  # same address, another user: not locked out (the limit is per address and user)
    assert login(other, "ada").status_code == 303


def test_a_wrong_password_and_an_unknown_user_look_the_same(secured) -> None:
    a, b = login(secured.test_client(), "otto", "nope"), login(secured.test_client(), "nobody", "nope")
    assert a.status_code == b.status_code == 401
    def text(answer) -> str:
        return re.sub(r'[\w-]{40,}', "TOKEN", answer.get_data(as_text=True))

    assert text(a) == text(b) and "Wrong user name or password." in text(a)


def test_session_cookie_is_httponly_samesite_and_secure_over_https(secured) -> None:
    answer = login(secured.test_client(), "otto")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    client = secured.test_client()
    client.get("/login", base_url="https://dash.example")
    with client.session_transaction(base_url="https://dash.example") as session:
        token = session["csrf"]
    answer = client.post("/login", base_url="https://dash.example", data={"username": "otto", "password": "o-pass", "csrf_token": token})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_pages_carry_the_security_headers_and_cross_site_posts_are_refused(secured) -> None:
    client = secured.test_client()
    login(client, "otto")
    answer = client.get("/")
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "<script>" not in answer.get_data(as_text=True)  # no inline script
    token = session_csrf(client)
    cross = client.post("/queues/redis/rq/work/purge", data={"csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    cross_api = client.post("/api/v1/queues/redis/rq/work/purge", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_api.status_code == 403


def queuewatch_cli(*args: str, tmp_path: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    exe = str(Path(sys.executable).with_name("queuewatch"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_serving_beyond_loopback_without_users_refuses_to_start(tmp_path) -> None:
    done = queuewatch_cli("serve", "--bind", f"0.0.0.0:{free_port()}", "--state", str(tmp_path / "s.db"), "--redis", "none",
                          "--rabbitmq", "none", tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "without authentication" in done.stderr and "--insecure-no-auth" in done.stderr
    with pytest.raises(ValueError, match="without authentication"):
        create_app({"BIND": "0.0.0.0:8000", "REDIS": ["none"], "RABBITMQ": ["none"], "STATE": str(tmp_path / "s.db")})


def test_serving_beyond_loopback_starts_with_users_or_the_explicit_flag(tmp_path, users_file) -> None:
    import time
    import urllib.error
    import urllib.request

    exe = str(Path(sys.executable).with_name("queuewatch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    for extra, expected in ((("--users", users_file), 401), (("--insecure-no-auth",), 200)):
        port = free_port()
        cmd = [exe, "serve", "--bind", f"0.0.0.0:{port}", "--state", str(tmp_path / "s.db"), "--redis", "none", "--rabbitmq", "none", *extra]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline, status = time.monotonic() + 30, None
            while status is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    status = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/queues", timeout=2).status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError:
                    time.sleep(0.2)
            assert status == expected, extra
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_hash_password_prints_a_hash_the_login_accepts(tmp_path) -> None:
    done = queuewatch_cli("hash-password", "--password", "s3cret", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert check_password_hash(done.stdout.strip(), "s3cret")
    made = queuewatch_cli("make-token", "prometheus", "viewer", tmp_path=tmp_path)
    token = re.search(r"token: (\S+)", made.stdout).group(1)
    line = json.loads(made.stdout.split("tokens file line: ", 1)[1])
    assert line == {"name": "prometheus", "role": "viewer", "token_hash": hash_token(token)}


def test_users_from_the_environment_need_a_known_role(redis_url, tmp_path) -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        make_app(redis_url, tmp_path, USER_EVE="root:" + generate_password_hash("x"))


def test_the_login_page_without_users_says_no_login_is_needed_not_wrong_password(redis_url, tmp_path, tokens_file) -> None:
    apps = [make_app(redis_url, tmp_path), make_app(redis_url, tmp_path, TOKENS=tokens_file)]
    open_app, tokens_only = (app.test_client() for app in apps)
    page = open_app.get("/login?next=/workers")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "No login is needed" in text and 'href="/workers"' in text and 'name="password"' not in text
    guess = open_app.post("/login", data={"csrf_token": session_csrf(open_app), "username": "ada", "password": "x"})
    assert guess.status_code == 409 and "Wrong user name" not in guess.get_data(as_text=True)
    assert "accepts API tokens only" in tokens_only.get("/login").get_data(as_text=True)
    for app in apps:
        app.extensions["queuewatch.monitor"].close()
