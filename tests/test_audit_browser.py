"""In headless Chromium, as an operator: log in through the login page, requeue a
failed job, and find the action in the audit log with who did it, as what role,
to which queue and job, and how many jobs it moved."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import run_rq_worker, serve_queuewatch
from werkzeug.security import generate_password_hash

from queuewatch.security.auth import hash_token

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(3)]
ADMIN_TOKEN = "qw_test_admin_token"


def test_the_audit_log_records_an_operators_requeue_from_the_browser(browser, r, redis_url, tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.otto]\nrole = "operator"\npassword_hash = "{generate_password_hash("otto-pass")}"\n')
    tokens = tmp_path / "tokens.jsonl"
    tokens.write_text(json.dumps({"name": "auditor", "role": "admin", "token_hash": hash_token(ADMIN_TOKEN)}) + "\n")
    emails = rq.Queue("emails", connection=r)
    jobs = [emails.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "flag"), i) for i in range(2)]
    run_rq_worker(redis_url, "emails")
    target = jobs[0].id

    args = ("--redis", redis_url, "--rabbitmq", "none", "--poll", "1", "--users", str(users), "--tokens", str(tokens))
    with serve_queuewatch(tmp_path, *args) as base:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            page.goto(base + "/queues/redis/rq/emails")
            page.wait_for_url(lambda url: "/login?next=" in url)
            page.get_by_label("User name").fill("otto")
            page.get_by_label("Password").fill("otto-pass")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/queues/redis/rq/emails")
            assert "otto" in page.locator(".whoami").inner_text()
            assert page.get_by_role("link", name="Audit").count() == 0  # an operator is not an admin
            page.locator(f'tr[data-job-id="{target}"] input[type=checkbox]').check()
            page.get_by_role("button", name="Requeue selected").click()
            page.locator("#confirm-ok").click()
            page.get_by_text("Requeued 1 job.").wait_for()
            assert page.goto(base + "/audit").status == 403
        finally:
            page.close()
        request = urllib.request.Request(base + "/api/v1/audit", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        entries = json.load(urllib.request.urlopen(request, timeout=10))["entries"]
    assert problems == []
    requeue = next(e for e in entries if e["action"] == "requeue")
    assert {k: requeue[k] for k in ("user", "role", "backend", "system", "queue", "ids", "id_count", "affected", "result")} == {
        "user": "otto", "role": "operator", "backend": "redis", "system": "rq", "queue": "emails",
        "ids": [target], "id_count": 1, "affected": 1, "result": "ok"}  # fmt: skip
    assert requeue["client"] == "127.0.0.1"
    assert [e["action"] for e in entries] == ["requeue", "login"]
    assert (entries[1]["user"], entries[1]["result"]) == ("otto", "ok")
    assert emails.failed_job_registry.count == 1 and emails.count == 1
