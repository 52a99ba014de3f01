"""Alerts end to end in headless Chromium against a real `queuewatch serve`
(poll 1 s, RQ data in Redis database 6): set a threshold of 5 through the queue
page's form and see it drawn on the chart; enqueue 10 real RQ jobs and see the
alert fire on every page; a local webhook receiver gets exactly one firing and,
once a real `rq worker --burst` drains the queue, exactly one resolved
notification; the rule survives a restart. Screenshots go to
$QUEUEWATCH_SCREENSHOTS (docs/screenshots when refreshing the docs) or a temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import get_json, run_rq_worker, serve_queuewatch, wait_for_samples
from playwright.sync_api import expect
from webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(6)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


def serve(tmp_path: Path, redis_url: str, receiver: Receiver):
    return serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1", "--webhook", receiver.url)


def test_a_threshold_set_in_the_browser_fires_notifies_once_and_resolves_once(browser, shots, r, redis_url, tmp_path,
                                                                             receiver) -> None:  # fmt: skip
    emails = rq.Queue("emails", connection=r)
    emails.enqueue(rq_tasks.add, 0, 0)
    run_rq_worker(redis_url, "emails")  # the queue exists, empty
    page = browser.new_page(viewport={"width": 1360, "height": 1100})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    with serve(tmp_path, redis_url, receiver) as base:
        try:
            page.goto(base + "/queues/redis/rq/emails")
            counts = page.locator("[data-chart=counts]")
            expect(page.locator("#queue-history")).to_have_attribute("data-state", "ready", timeout=15_000)
            assert counts.get_attribute("data-threshold") == ""

            form = page.locator("#alert-rule form.alert-rule-form")
            form.get_by_label("Max waiting").fill("5")
            form.get_by_label("for (s)").first.fill("1")
            form.get_by_role("button", name="Save rule").click()
            page.wait_for_url("**/queues/redis/rq/emails")
            expect(page.locator(".flash-success")).to_contain_text("more than 5 waiting for 1s")
            expect(counts).to_have_attribute("data-threshold", "5", timeout=15_000)
            expect(counts.locator(".shapelayer path")).to_have_count(1)  # the dashed threshold line
            expect(page.locator("#alert-rule [data-rule-summary]")).to_have_text("more than 5 waiting for 1s")

            for i in range(10):
                emails.enqueue(rq_tasks.add, i, i)
            # Pending first (1 s), then firing: on the queue, and in the banner of every page.
            expect(page.locator("[data-alert-state]")).to_have_attribute("data-alert-state", "firing", timeout=15_000)
            banner = page.locator("#alert-banner .alert-banner")
            expect(banner).to_contain_text("1 alert firing", timeout=10_000)
            expect(banner).to_contain_text("emails — waiting jobs 10 > 5")
            expect(counts).to_have_attribute("data-last-value", "10", timeout=10_000)
            page.mouse.move(0, 0)
            page.screenshot(path=str(shots / "alert-firing.png"), full_page=True)
            page.goto(base + "/workers")
            expect(page.locator("#alert-banner .alert-banner")).to_contain_text("emails")

            firing = receiver.wait_for("firing", 1)
            assert firing[0]["alert"] | {"since": None, "started": None} == {
                "backend": "redis", "system": "rq", "queue": "emails", "rule": "max_depth", "state": "firing",
                "value": 10, "threshold": 5, "peak": 10, "since": None, "started": None, "resolving": False,
                "unknown": None, "acknowledged": None, "silenced": None}  # fmt: skip
            # The operator on call acknowledges it: every viewer sees who, the webhooks are told.
            page.goto(base + "/alerts")
            page.get_by_role("button", name="Acknowledge").first.click()
            expect(page.locator("[data-acknowledged]").first).to_contain_text("acknowledged by someone at 127.0.0.1")
            page.screenshot(path=str(shots / "alert-acknowledged.png"), full_page=True)
            assert receiver.wait_for("acknowledged", 1)[0]["alert"]["acknowledged"]["by"] == "someone at 127.0.0.1"

            run_rq_worker(redis_url, "emails")  # drains the queue
            receiver.wait_for("resolved", 1)
            expect(page.locator("#alert-banner .alert-banner")).to_have_count(0, timeout=10_000)
            page.goto(base + "/alerts")
            row = page.locator("#alert-history tbody tr").first
            expect(row).to_have_attribute("data-history-state", "resolved")
            expect(row).to_contain_text("emails")
            page.screenshot(path=str(shots / "alerts.png"), full_page=True)

            page.get_by_role("button", name="Send test notification").click()
            expect(page.locator(".flash-success")).to_contain_text("Test sent to " + receiver.url.rsplit("/", 1)[0] + "/…#")
            assert receiver.url not in page.content()  # a webhook's path is its secret: never on a page
            wait_for_samples(base, "redis/rq/emails", 3)  # three more intervals evaluated: nothing is sent again
            assert (len(receiver.events("firing")), len(receiver.events("resolved")), len(receiver.events("test"))) == (1, 1, 1)
        finally:
            page.close()
    assert problems == []

    with serve(tmp_path, redis_url, receiver) as base:  # the same state store, a new process
        rules = get_json(base + "/api/v1/alerts/rules")["rules"]
        assert [(x["backend"], x["system"], x["queue"], x["max_depth"], x["for_seconds"]) for x in rules] == [
            ("redis", "rq", "emails", 5, 1)]  # fmt: skip
        wait_for_samples(base, "redis/rq/emails", 2)  # the new process evaluated the rule twice: nothing sent
    assert (len(receiver.events("firing")), len(receiver.events("resolved"))) == (1, 1)
