"""Stopping a running RQ job in headless Chromium, at desktop width and at 390 px: the Stop
button of an in-progress row (desktop) or of the job's page (phone), the confirmation, and the
page that follows the job until RQ has recorded it stopped. Screenshots go to $QW_CONTROL_SHOTS (default: queuewatch-shots-control in the temp directory)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import serve_queuewatch, wait_for
from playwright.sync_api import expect
from test_control_rq import rq_worker

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(12)]
SHOTS = Path(os.environ.get("QW_CONTROL_SHOTS") or Path(tempfile.gettempdir()) / "queuewatch-shots-control")


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        yield base


@pytest.mark.parametrize("width", [1360, 390])
def test_operator_stops_a_running_rq_job_and_the_page_follows_it_until_it_stopped(server, browser, r, redis_url, width) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    q = rq.Queue("work", connection=r)
    slow = q.enqueue(rq_tasks.sleep, 60)
    with rq_worker(redis_url, f"browser-{width}"):
        wait_for(lambda: slow.get_status(refresh=True) == "started", what="the worker to start the job")
        page = browser.new_page(viewport={"width": width, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        if width > 600:  # the row's button in the list of jobs in progress
            page.goto(server + "/queues/redis/rq/work/jobs?state=in_progress")
            row = page.locator(f'tr[data-job-id="{slow.id}"]')
            expect(row).to_be_visible(timeout=15_000)
            page.screenshot(path=str(SHOTS / f"in-progress-{width}.png"), full_page=True)
            row.locator("[data-stop-job]").click()
        else:  # the job page's button
            page.goto(server + f"/jobs/{slow.id}?backend=redis&system=rq&queue=work&state=in_progress")
            expect(page.locator("[data-job-state]")).to_have_text("in progress")
            page.screenshot(path=str(SHOTS / f"job-running-{width}.png"), full_page=True)
            page.locator("[data-stop-job]").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        assert f"Stop job {slow.id}" in dialog.inner_text()
        page.screenshot(path=str(SHOTS / f"stop-confirm-{width}.png"))
        page.locator("#confirm-ok").click()
        page.wait_for_url("**/stopping?since=*")
        expect(page.locator(".flash")).to_contain_text(f"Asked browser-{width} to stop job {slow.id}")
        expect(page.locator("#stop-follow")).to_have_attribute("data-stop-outcome", "ended", timeout=15_000)
        expect(page.locator("[data-stopped]")).to_contain_text("failed (stopped)")
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1  # nothing wider than the screen
        page.screenshot(path=str(SHOTS / f"stopped-{width}.png"), full_page=True)
        assert slow.get_status(refresh=True) == "stopped" and slow.id in q.failed_job_registry.get_job_ids()
        assert problems == []
