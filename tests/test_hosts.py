"""DNS rebinding cannot drive the dashboard: a foreign Host header is refused
(400) before anything runs, and a write from another origin is refused (403).
Against a real `queuewatch serve` in open mode on loopback, the way the attack
came: curl with the rebound name, as a browser on the attacker's page would send it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import rq
import rq_tasks
from conftest import serve_queuewatch

from queuewatch.security.hosts import HostPolicy, split_host

pytestmark = pytest.mark.redis_db(5)
EVIL = "rebind.evil.example"


def send(base: str, method: str, path: str, headers: dict[str, str], body: object | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_rebound_page_can_neither_purge_nor_read_the_audit_nor_set_webhooks(tmp_path, r, redis_url) -> None:
    queue = rq.Queue("emails", connection=r)
    for n in range(3):
        queue.enqueue(rq_tasks.add, n, n)
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none") as base:
        port = base.rsplit(":", 1)[1]
        rebound = {"Host": f"{EVIL}:{port}", "Origin": f"http://{EVIL}:{port}"}
        for method, path, body in (("POST", "/api/v1/queues/redis/rq/emails/purge", {}),
                                   ("PUT", "/api/v1/alerts/webhooks", {"webhooks": [{"url": "http://evil.example/x"}]}),
                                   ("GET", "/api/v1/audit", None), ("GET", "/", None), ("GET", "/healthz", None)):  # fmt: skip
            status, text = send(base, method, path, rebound, body)
            assert status == 400 and EVIL in text and "--allowed-host" in text, (method, path, status, text)
        assert r.llen("rq:queue:emails") == 3
        # The same writes from this dashboard's own origin work; from another origin they are refused.
        own = {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"}
        status, text = send(base, "POST", "/api/v1/queues/redis/rq/emails/purge", {**own, "Origin": f"http://{EVIL}"}, {})
        assert status == 403 and "another origin" in text
        status, text = send(base, "POST", "/api/v1/queues/redis/rq/emails/purge", {**own, "Origin": "null"}, {})
        assert status == 403
        assert r.llen("rq:queue:emails") == 3
        assert send(base, "POST", "/api/v1/queues/redis/rq/emails/purge", own, {})[0] == 200
        assert r.llen("rq:queue:emails") == 0
        assert send(base, "GET", "/", {"Host": f"localhost:{port}"})[0] == 200


def test_allowed_host_names_are_answered_and_nothing_else(tmp_path, redis_url) -> None:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--allowed-host", "dash.internal",
                          "--allowed-host", "*.ops.example") as base:  # fmt: skip
        port = base.rsplit(":", 1)[1]
        for name in ("dash.internal", "a.ops.example", "localhost", "127.0.0.1", "[::1]"):
            assert send(base, "GET", "/healthz", {"Host": f"{name}:{port}"})[0] == 200, name
        for name in ("ops.example", EVIL, "dash.internal.evil.example"):
            assert send(base, "GET", "/healthz", {"Host": f"{name}:{port}"})[0] == 400, name


def test_the_host_policy_in_every_binding() -> None:
    assert split_host("Example.COM:8000") == "example.com" and split_host("[::1]:80") == "::1" and split_host("::1") == "::1"
    open_loopback = HostPolicy("127.0.0.1:8000", [], authenticated=False)
    assert open_loopback.allows("localhost") and open_loopback.allows("127.0.0.2") and not open_loopback.allows(EVIL)
    open_wildcard = HostPolicy("0.0.0.0:8000", [], authenticated=False)  # --insecure-no-auth in a container
    assert open_wildcard.allows("127.0.0.1") and not open_wildcard.allows(EVIL)
    assert HostPolicy("0.0.0.0:8000", [], authenticated=True).allows(EVIL)  # logins are not sent to a rebound origin
    assert not HostPolicy("0.0.0.0:8000", ["dash.example"], authenticated=True).allows(EVIL)
    assert HostPolicy("10.1.2.3:8000", [], authenticated=True).allows("10.1.2.3")
    assert HostPolicy("127.0.0.1:8000", ["*"], authenticated=False).allows(EVIL)
