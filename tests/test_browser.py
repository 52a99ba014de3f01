"""End to end in headless Chromium, as an operator would: open the dashboard,
open a queue's failed jobs, requeue one, confirm, watch the count drop, and
see a real worker run the job. Screenshots go to $QUEUEWATCH_SCREENSHOTS
(docs/screenshots when refreshing the README's pictures) or a temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
from playwright.sync_api import expect
import rq_tasks
from conftest import run_rq_worker, serve_queuewatch
from rq.job import Job

pytestmark = pytest.mark.browser


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        yield base


def test_operator_requeues_a_failed_job_from_the_browser(server, browser, shots, r, redis_url, tmp_path) -> None:
    flag = tmp_path / "flag"
    emails = rq.Queue("emails", connection=r)
    failing = [emails.enqueue(rq_tasks.fail_unless_exists, str(flag), i, to=f"user{i}@example.com") for i in range(3)]
    run_rq_worker(redis_url, "emails")
    reports = rq.Queue("reports", connection=r)
    for day in range(4):
        reports.enqueue(rq_tasks.add, day, day)
    worker = rq.Worker(["emails", "reports"], connection=r, name="worker-1")
    worker.register_birth()
    worker.set_state("idle")

    page = browser.new_page(viewport={"width": 1360, "height": 820})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server + "/")
        # The snapshot may predate the jobs by one poll interval; the page refreshes itself.
        row = page.locator('tr[data-queue="redis/rq/emails"]')
        expect(row.locator('[data-col="failed"]')).to_have_text("3", timeout=10_000)
        expect(page.locator('tr[data-queue="redis/rq/reports"] [data-col="depth"]')).to_have_text("4")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        row.get_by_role("link", name="emails").click()
        page.wait_for_url("**/queues/redis/rq/emails")
        assert page.locator('[data-count="failed"]').inner_text() == "3"
        assert page.locator(".failed-table tbody tr").count() == 3
        page.screenshot(path=str(shots / "queue.png"), full_page=True)

        target = failing[0].id
        requeue = page.get_by_role("button", name="Requeue selected")
        assert requeue.is_disabled()
        page.locator(f'tr[data-job-id="{target}"] input[type=checkbox]').check()
        assert requeue.is_enabled()
        requeue.click()
        dialog = page.locator("#confirm-dialog")
        dialog.wait_for(state="visible")
        assert "Requeue 1 selected job(s) of emails?" in dialog.inner_text()
        assert "refresh-paused" in (page.locator("html").get_attribute("class") or "")
        page.screenshot(path=str(shots / "confirm.png"))
        page.locator("#confirm-ok").click()

        page.get_by_text("Requeued 1 job.").wait_for()
        assert page.locator('[data-count="failed"]').inner_text() == "2"
        assert page.locator('[data-count="depth"]').inner_text() == "1"
        assert page.locator(f'tr[data-job-id="{target}"]').count() == 0

        flag.touch()
        run_rq_worker(redis_url, "emails")
        assert Job.fetch(target, connection=r).get_status() == "finished"
        # The page refreshes itself from the shared snapshot: the queue drained.
        expect(page.locator('[data-count="depth"]')).to_have_text("0", timeout=10_000)

        page.locator(f'tr[data-job-id="{failing[1].id}"] a').click()
        page.wait_for_url(f"**/jobs/{failing[1].id}")
        assert "FileNotFoundError" in page.locator(".error-box").inner_text()
        assert "user1@example.com" in page.locator(".args-table").inner_text()
        assert "Traceback (most recent call last)" in page.locator("pre.traceback").inner_text()
        page.screenshot(path=str(shots / "job.png"), full_page=True)

        page.get_by_role("link", name="Workers").click()
        page.wait_for_url("**/workers")
        assert page.locator('tr[data-worker="worker-1"]').count() == 1
        page.screenshot(path=str(shots / "workers.png"), full_page=True)
    finally:
        worker.register_death()
        page.close()
    assert problems == []
