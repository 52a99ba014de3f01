"""Failure triage in headless Chromium, as an on-call engineer would use it:
see failures grouped by cause, requeue one cause's jobs after confirming the
exact count, filter a queue's failed jobs by URL, discard an operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import run_rq_worker, serve_queuewatch
from playwright.sync_api import expect
from rq.job import Job

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(9)]


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1", "--bulk-chunk", "3") as base:
        yield base


def test_operator_requeues_one_cause_and_filters_the_rest(server, browser, shots, r, redis_url, tmp_path) -> None:
    flag = tmp_path / "flag"
    q = rq.Queue("payments", connection=r)
    missing = [q.enqueue(rq_tasks.fail_unless_exists, str(flag), i).id for i in range(20)]
    declined = [q.enqueue(rq_tasks.fail_with, f"card {4000 + i} declined for order 'A-{i}'").id for i in range(10)]
    run_rq_worker(redis_url, "payments")

    page = browser.new_page(viewport={"width": 1360, "height": 860})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server + "/failures")
        # The snapshot that lists the queue may be one poll interval behind the jobs.
        for _ in range(20):
            if page.locator("tr[data-fingerprint]").count() == 2:
                break
            page.wait_for_timeout(500)
            page.reload()
        rows = page.locator("tr[data-fingerprint]")
        assert rows.count() == 2
        first = rows.nth(0)
        assert first.locator("td.num").inner_text() == "20" and "FileNotFoundError" in first.inner_text()
        assert "card <n> declined for order '<str>'" in rows.nth(1).inner_text()
        page.screenshot(path=str(shots / "failures.png"), full_page=True)

        first.get_by_role("button", name="Requeue group…").click()
        page.wait_for_url("**/operations/*")
        confirm = page.get_by_role("button", name="Requeue 20 jobs")
        confirm.wait_for(timeout=15_000)
        assert "Exactly 20 jobs" in page.locator(".operation").inner_text()
        page.screenshot(path=str(shots / "operation-confirm.png"), full_page=True)
        confirm.click()
        expect(page.locator(".operation")).to_contain_text("Done: 20 of 20 requeued", timeout=15_000)
        page.screenshot(path=str(shots / "operation-done.png"), full_page=True)
        assert [Job.fetch(i, connection=r).get_status() for i in declined] == ["failed"] * 10

        page.goto(server + "/queues/redis/rq/payments")
        page.get_by_label("Exception").fill("RuntimeError")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/queues/redis/rq/payments?exception=RuntimeError")  # empty fields dropped: a short URL to share
        expect(page.locator(".failed-table tbody tr")).to_have_count(10)
        assert "10 matching failed jobs among 10 examined of 10" in page.locator("#failed-jobs .scan-note").inner_text()
        page.screenshot(path=str(shots / "queue-filtered.png"), full_page=True)

        page.get_by_role("button", name="Delete matching…").click()
        page.wait_for_url("**/operations/*")
        page.get_by_role("button", name="Discard").click()
        expect(page.locator(".operation")).to_contain_text("Discarded before anything was changed")
        assert q.failed_job_registry.count == 10

        flag.touch()
        run_rq_worker(redis_url, "payments")
        assert [Job.fetch(i, connection=r).get_status() for i in missing] == ["finished"] * 20
    finally:
        page.close()
    assert problems == []
