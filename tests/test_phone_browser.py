"""Every page at phone width (issue 15, item 11): in Chromium at 390×844, light and dark,
every page of the dashboard — overview, a queue of each kind, a failed job, workers,
failures (triage), operations and one operation, functions, periodic jobs, alerts, audit, login, a jobs list by
state, a job in any state, a dead-letter queue before and after its inspection — is no
wider than the screen (tables scroll in their own box), and every navigation link is on
the screen. Screenshots go to $QW_PHONE_SHOTS (default: queuewatch-shots-ui in the temp directory); with
$QUEUEWATCH_SCREENSHOTS set (docs/screenshots), the README's phone pictures too."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import huey_tasks
import pytest
import rq
import rq_tasks
from celery_app import producer
from conftest import run_rq_worker, serve_queuewatch, wait_for
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from test_amqp_adapter import AMQPJobs, new_vhost
from test_arq_adapter import ArqClient

pytestmark = [pytest.mark.browser, pytest.mark.redis_db(12)]
PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("QW_PHONE_SHOTS") or Path(tempfile.gettempdir()) / "queuewatch-shots-ui")


def api(base: str, method: str, path: str, body: object | None = None) -> object:
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@pytest.fixture
def everything(r, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every kind of queue with something in it, a bulk operation, an alert rule, and the dashboard on them."""
    emails = rq.Queue("emails", connection=r)
    failed = [emails.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "flag"), "order-" + "9" * 400, i,
                             to=f"customer-with-a-long-address-{i}@example.com", note="x" * 20_000).id for i in range(3)]  # fmt: skip
    run_rq_worker(redis_url, "emails")
    reports = rq.Queue("reports.nightly.with-a-rather-long-queue-name", connection=r)
    waiting_rq = reports.enqueue(rq_tasks.add, 1, 2).id
    arq = ArqClient(redis_url, "arq:queue")
    with ThreadPoolExecutor(1) as thread:
        thread.submit(arq.enqueue, [("add", (i, i), {}) for i in range(3)]).result()
    dramatiq_redis = RedisBroker(url=redis_url)
    dramatiq_redis.declare_queue("mail")
    dramatiq_redis.enqueue(Message(queue_name="mail", actor_name="add", args=(1, 2), kwargs={}, options={}))
    dramatiq_redis.client.zadd("dramatiq:__heartbeats__", {"a-worker-that-left": 1})  # what a stopped worker leaves
    huey_tasks.enqueue(huey_tasks.build("RedisHuey", "web", redis_url), [("add", [1, 2], {})])
    with producer(redis_url, redis_url) as app:
        app.send_task("celery_app.add", (1, 2), {}, queue="celery")
    with new_vhost("phone") as amqp_url:
        AMQPJobs(amqp_url, "orders").failed(2)
        dramatiq_rabbit = RabbitmqBroker(url=amqp_url)
        dramatiq_rabbit.declare_queue("billing", ensure=True)
        dramatiq_rabbit.enqueue(Message(queue_name="billing", actor_name="add", args=(1, 2), kwargs={}, options={}))
        with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", amqp_url, "--poll", "1") as base:
            wait_for(lambda: len(api(base, "GET", "/api/v1/queues")["queues"]) >= 8, timeout=30, what="every queue")  # type: ignore[index]
            api(base, "PUT", f"/api/v1/alerts/rules/redis/rq/{quote('reports.nightly.with-a-rather-long-queue-name', safe='')}",
                {"max_depth": 0, "for_seconds": 0})  # fmt: skip
            op = api(
                base, "POST", "/api/v1/operations", {"action": "requeue", "backend": "redis", "system": "rq", "queue": "emails"}
            )
            yield {"base": base, "failed": failed[0], "waiting": waiting_rq, "op": op["id"]}  # type: ignore[index]
        dramatiq_rabbit.close()
    dramatiq_redis.close()


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    """(name, path) of every page an operator can open."""
    long_queue = quote("reports.nightly.with-a-rather-long-queue-name", safe="")
    return [
        ("overview", "/"),
        ("queue-rq", "/queues/redis/rq/emails"),
        ("queue-rq-waiting", f"/queues/redis/rq/{long_queue}"),
        ("queue-arq", "/queues/redis/arq/arq%3Aqueue"),
        ("queue-dramatiq-redis", "/queues/redis/dramatiq/mail"),
        ("queue-celery", "/queues/redis/celery/celery"),
        ("queue-huey", "/queues/redis/huey/web"),
        ("queue-amqp-dlq", "/queues/rabbitmq/amqp/orders.dlq"),
        ("queue-dramatiq-rabbitmq", "/queues/rabbitmq/dramatiq/billing"),
        ("failed-job", f"/queues/redis/rq/emails/jobs/{ids['failed']}"),
        ("workers", "/workers"),
        ("failures", "/failures"),
        ("operations", "/operations"),
        ("operation", f"/operations/{ids['op']}"),
        ("functions", "/functions"),
        ("periodic", "/periodic"),
        ("alerts", "/alerts"),
        ("audit", "/audit"),
        ("login", "/login"),
        ("jobs-waiting", f"/queues/redis/rq/{long_queue}/jobs?state=waiting"),
        ("job", f"/jobs/{ids['waiting']}"),
    ]


def measure(page) -> dict[str, object]:
    return page.evaluate("""() => ({
        width: document.scrollingElement.scrollWidth,
        offscreen: [...document.querySelectorAll('.topbar nav a')].filter(a => {
            const box = a.getBoundingClientRect();
            return box.width === 0 || box.left < 0 || box.right > window.innerWidth; }).map(a => a.textContent.trim()),
        widest: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
            && !e.closest('.table-scroll, table.grid, pre, .js-plotly-plot'))
            .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)),
    })""")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_and_keeps_its_navigation_on_screen(everything, browser, shots, scheme) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=PHONE, color_scheme=scheme, device_scale_factor=1)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    too_wide = {}
    base = everything["base"]
    for name, path in pages(everything):
        answer = page.goto(base + path)
        assert answer is not None and answer.status < 400, (name, answer and answer.status)
        page.wait_for_load_state("networkidle")
        if name == "queue-amqp-dlq":  # before and after the inspection: both must fit
            found = measure(page)
            if found["width"] > PHONE["width"] or found["offscreen"]:
                too_wide[name + "-before-inspection"] = found
            page.get_by_role("button", name="Inspect dead letters").click()
            page.wait_for_url("**inspection=*")
            page.wait_for_load_state("networkidle")
        found = measure(page)
        if found["width"] > PHONE["width"] or found["offscreen"]:
            too_wide[name] = found
        page.screenshot(path=str(SHOTS / f"{name}-{scheme}.png"), full_page=True)
        if name in ("overview", "queue-rq", "failed-job") and os.environ.get("QUEUEWATCH_SCREENSHOTS"):
            page.screenshot(path=str(shots / f"phone-{name}-{scheme}.png"), full_page=False)
    context.close()
    assert too_wide == {}
    assert problems == []
