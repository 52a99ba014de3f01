"""History charts in headless Chromium, under the real Content-Security-Policy:
the queue page draws the stored history and extends it live without losing
the zoom; ranges switch tiers; the overview draws a sparkline per queue; dark
mode follows the OS. Screenshots go to $QUEUEWATCH_SCREENSHOTS (docs/screenshots
when refreshing the docs) or a temp dir.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import run_rq_worker, serve_queuewatch
from playwright.sync_api import Page, expect

from queuewatch.snapshots import history
from queuewatch.adapters.base import QueueStats, Worker
from queuewatch.snapshots.monitor import BackendStatus, Snapshot
from queuewatch.snapshots.recorder import Recorder
from queuewatch.adapters.store.sqlite_store import SQLiteStateStore

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(7)]


def seed_last_hour(path: Path, end: int) -> int:
    """An hour of history from before this dashboard started: a backlog that builds, spikes and drains."""
    recorder = Recorder(SQLiteStateStore(path), interval=5)
    up = BackendStatus("redis", "redis", "redis://127.0.0.1:6379/7", "up", None, ("rq",))
    start = end - 60 * history.MINUTE_MS
    done = failed = 0
    for t in range(start - start % 5000, end, 5000):
        minute = (t - start) / history.MINUTE_MS
        depth = int(max(0, 380 * math.sin(math.pi * min(minute, 50) / 50)) + 25 + 10 * math.sin(minute * 3))
        depth += 240 if 21.0 <= minute < 21.1 else 0  # a burst one sample long: the 6 h chart keeps it
        per_second = 8 + 6 * math.sin(minute / 4) ** 2
        done += int(per_second * 5)
        failed += 1 if int(minute * 12) % 17 == 0 else 0
        moment = datetime.fromtimestamp(t / 1000, timezone.utc)
        emails = QueueStats("redis", "rq", "emails", depth, 4, 0, 3 + failed // 10, 2, depth / per_second)
        worker = Worker("redis", "rq", "seed-worker", "h", 1, ("emails",), "busy", True, moment, None,
                        successful_jobs=done, failed_jobs=failed)  # fmt: skip
        recorder.record(Snapshot(moment, (up,), (emails,), (worker,)), t)
    return start


@pytest.fixture
def server(r, redis_url: str, tmp_path: Path) -> Iterator[str]:
    emails = rq.Queue("emails", connection=r)
    for i in range(3):
        emails.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), i)
    run_rq_worker(redis_url, "emails")
    for i in range(25):
        emails.enqueue(rq_tasks.add, i, i)
    rq.Queue("reports", connection=r).enqueue(rq_tasks.add, 1, 1)
    seed_last_hour(tmp_path / "state.sqlite3", end=int(time.time() * 1000) - 5000)
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1") as base:
        yield base


def watch_for_errors(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def points(locator) -> int:
    return int(locator.get_attribute("data-points-count") or 0)


def test_the_queue_page_draws_history_and_extends_it_live(server, browser, shots, r, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 1100})
    problems = watch_for_errors(page)
    try:
        page.goto(server + "/queues/redis/rq/emails")
        history_section = page.locator("#queue-history")
        counts = history_section.locator("[data-chart=counts]")
        expect(history_section).to_have_attribute("data-state", "ready", timeout=15_000)
        # An hour of stored history at 5 s, plus what this server has sampled since it started.
        assert points(counts) >= 700
        assert counts.locator(".scatterlayer .trace").count() == 6
        assert points(history_section.locator("[data-chart=rates]")) == points(counts)
        assert "Processed per minute" in history_section.locator("[data-rates-note]").inner_text()
        # RQ counts processed per worker (exact here: none serves another queue) but failures only as the
        # failed list's growth: an estimate, drawn dashed and named so.
        rates = history_section.locator("[data-chart=rates]")
        expect(rates).to_have_attribute("data-rate-kinds", "exact,estimate")
        assert rates.locator(".legendtext").all_text_contents() == ["Processed / min", "Failed / min (estimate)"]
        dashes = rates.locator(".scatterlayer .trace path.js-line").evaluate_all("els => els.map(e => e.style.strokeDasharray)")
        assert dashes[0] in ("", "none") and dashes[1] not in ("", "none"), dashes
        # The chart toolbar offers nothing that leaves the dashboard (plotly's cloud "Share", Chart Studio, its logo).
        counts.hover()
        titles = counts.locator(".modebar-btn").evaluate_all("els => els.map(e => e.getAttribute('data-title') || '')")
        assert "Reset axes" in titles and any(t.startswith("Download plot") for t in titles), titles
        assert not [t for t in titles if any(w in t.lower() for w in ("cloud", "chart studio", "share", "edit"))], titles
        assert page.locator("a[href*='plot.ly'], a[href*='plotly.com'], a[href*='chart-studio']").count() == 0

        # Live: the server samples every second and the page extends its traces.
        for i in range(5):
            rq.Queue("emails", connection=r).enqueue(rq_tasks.add, i, 100)
        before = counts.get_attribute("data-last-t")
        expect(counts).to_have_attribute("data-last-value", "30", timeout=10_000)
        assert counts.get_attribute("data-last-t") > before
        # The range stays an hour: what falls out of it is dropped as points arrive.
        assert 700 <= points(counts) <= 800
        page.screenshot(path=str(shots / "queue-chart.png"), full_page=True)

        # Zoom into the chart: ticks keep extending the data but not the view.
        box = counts.locator(".nsewdrag").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
        page.mouse.up()
        expect(counts).to_have_attribute("data-zoomed", "true")
        labels = counts.locator(".xtick text").all_inner_texts()
        zoomed_at = counts.get_attribute("data-last-t")
        expect(counts).not_to_have_attribute("data-last-t", zoomed_at, timeout=10_000)
        assert counts.get_attribute("data-zoomed") == "true"
        assert counts.locator(".xtick text").all_inner_texts() == labels
        page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)  # back to the whole range
        expect(counts).to_have_attribute("data-zoomed", "false")

        # Ranges read coarser tiers; the 6 h chart is per minute with min/max bands.
        page.get_by_role("button", name="6h").click()
        expect(page.get_by_role("button", name="6h")).to_have_attribute("aria-pressed", "true")
        expect(history_section).to_have_attribute("data-tier", "1m", timeout=10_000)
        expect(history_section).to_have_attribute("data-state", "ready")
        assert 55 <= points(counts) <= 200
        page.mouse.move(0, 0)
        page.screenshot(path=str(tmp_path / "queue-chart-6h.png"), full_page=True)
        page.get_by_role("button", name="15m").click()
        expect(history_section).to_have_attribute("data-tier", "raw", timeout=10_000)
        assert 150 <= points(counts) <= 200
    finally:
        page.close()
    assert problems == []


def test_the_overview_draws_a_sparkline_per_queue(server, browser, shots) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 700})
    problems = watch_for_errors(page)
    try:
        page.goto(server + "/")
        emails = page.locator('tr[data-queue="redis/rq/emails"] .sparkline')
        reports = page.locator('tr[data-queue="redis/rq/reports"] .sparkline')
        expect(emails.locator(".scatterlayer .trace")).to_have_count(1, timeout=15_000)
        assert points(emails) >= 50
        expect(reports).to_have_attribute("data-points-count", re.compile(r"[1-9]"), timeout=10_000)
        first = points(reports)
        # The overview refreshes itself; the sparklines survive the swap and grow.
        deadline = time.monotonic() + 10
        while points(reports) <= first and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert points(reports) > first
        assert emails.locator(".scatterlayer .trace").count() == 1
        page.screenshot(path=str(shots / "overview-sparklines.png"), full_page=True)
    finally:
        page.close()
    assert problems == []


def test_charts_follow_the_dark_theme(server, browser, shots) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 1100}, color_scheme="dark")
    problems = watch_for_errors(page)
    try:
        page.goto(server + "/queues/redis/rq/emails")
        expect(page.locator("#queue-history")).to_have_attribute("data-state", "ready", timeout=15_000)
        waiting = page.locator("[data-chart=counts] .scatterlayer .trace").nth(2).locator("path.js-line")
        assert "rgb(68, 147, 248)" in (waiting.get_attribute("style") or "")  # --accent in dark mode
        page.screenshot(path=str(shots / "queue-chart-dark.png"), full_page=True)
    finally:
        page.close()
    assert problems == []
