"""Jobs in every state in headless Chromium, at desktop width and at 390 px: open a queue,
click a state tab, delete a waiting job after confirming, find a job by id from the header."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import serve_queuewatch
from playwright.sync_api import expect
from test_arq_adapter import ArqClient

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(15)]
SHOTS = Path(os.environ.get("QW_JOBS_SHOTS") or Path(tempfile.gettempdir()) / "queuewatch-shots-jobs")


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        yield base


@pytest.mark.parametrize("width", [1360, 390])
def test_operator_switches_tabs_deletes_a_waiting_job_and_finds_one_by_id(server, browser, r, redis_url, width) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    arq = ArqClient(redis_url, "arq:queue")
    with ThreadPoolExecutor(1) as thread:  # Playwright runs an event loop in this one: arq's asyncio client runs beside it
        waiting = thread.submit(arq.enqueue, [("add", (i, i), {}) for i in range(3)]).result()
        [later] = thread.submit(arq.enqueue, [("add", (40, 2), {"_defer_by": 3600})]).result()
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server + "/queues/redis/arq/arq%3Aqueue")
    tabs = page.locator("[data-state-tabs]")
    expect(tabs.locator('[data-state="waiting"] .state-count')).to_have_text("3", timeout=15_000)
    assert "finished" in page.locator("[data-states-hidden]").inner_text()
    page.screenshot(path=str(SHOTS / f"queue-tabs-{width}.png"), full_page=True)

    tabs.locator('[data-state="scheduled"]').click()
    page.wait_for_url("**/jobs?state=scheduled")
    expect(page.locator(f'tr[data-job-id="{later}"]')).to_be_visible()
    tabs = page.locator("[data-state-tabs]")
    tabs.locator('[data-state="waiting"]').click()
    page.wait_for_url("**/jobs?state=waiting")
    rows = page.locator("#state-jobs tbody tr")
    expect(rows).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1  # nothing wider than the screen
    page.screenshot(path=str(SHOTS / f"waiting-{width}.png"), full_page=True)

    victim = waiting[1]
    page.locator(f'tr[data-job-id="{victim}"] input[name="ids"]').check()
    page.get_by_role("button", name="Delete selected").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    assert "Delete 1 selected" in dialog.inner_text()
    page.screenshot(path=str(SHOTS / f"delete-confirm-{width}.png"))
    page.locator("#confirm-ok").click()
    expect(page.locator(".flash")).to_contain_text("Deleted 1 job.")
    expect(page.locator(f'tr[data-job-id="{victim}"]')).to_have_count(0)
    assert r.zscore("arq:queue", victim) is None and not r.exists(f"arq:job:{victim}")
    page.screenshot(path=str(SHOTS / f"deleted-{width}.png"), full_page=True)

    search = page.get_by_label("Find a job by its id")
    search.fill(later)
    search.press("Enter")
    page.wait_for_url(f"**/jobs/{later}")
    expect(page.locator("[data-job-state]")).to_have_text("scheduled")
    assert "40" in page.locator(".args-table").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    page.screenshot(path=str(SHOTS / f"job-{width}.png"), full_page=True)

    search = page.get_by_label("Find a job by its id")
    search.fill("no-such-job")
    search.press("Enter")
    expect(page.locator("[data-not-found]")).to_contain_text("Not found on any backend")
    page.screenshot(path=str(SHOTS / f"not-found-{width}.png"), full_page=True)
    assert [p for p in problems if "status of 404" not in p] == []  # the not-found page answers 404, as it should
