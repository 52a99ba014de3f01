"""Looking at a dead-letter queue never destroys it: RabbitMQ's dead letters are
read only when the operator asks (a POST), once, and the page shows that
inspection until they ask again.

The data loss this guards against (seen before this was so): a quorum DLQ with
``x-delivery-limit`` held 8 messages; its page, refreshing every poll interval,
re-read the queue each time and RabbitMQ dropped all 8 once they had been
"delivered" that often. The tests count RabbitMQ's own ``x-delivery-count`` of
every message (the number of times it was handed out and returned before the
read that shows it) against a real broker.
"""

from __future__ import annotations

from urllib.parse import quote

import pika
import pytest
from conftest import csrf_token, serve_queuewatch, wait_for
from playwright.sync_api import expect
from test_amqp_adapter import channel, new_vhost, rabbit_app, ready

LIMIT = 3  # x-delivery-limit of the quorum DLQ: three reads too many and RabbitMQ drops the message


def delivery_counts(url: str, queue: str) -> list[int]:
    """Each message's x-delivery-count, head first, as RabbitMQ reports it (this read counts one more)."""
    with channel(url) as ch:
        found = []
        while True:
            method, props, _ = ch.basic_get(queue)
            if method is None:
                return found  # closing the channel gives them back
            found.append(int((props.headers or {}).get("x-delivery-count", 0)))


@pytest.fixture
def quorum_dlq():
    """A plain queue ``orders`` whose rejected messages go to a quorum DLQ ``orders.dlq`` (x-delivery-limit 3), with 8 dead letters."""
    with new_vhost("inspect") as url:
        with channel(url) as ch:
            ch.queue_declare("orders.dlq", durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": LIMIT})
            ch.queue_declare("orders", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.dlq"})
            for n in range(8):
                ch.basic_publish("", "orders", b'{"order": %d}' % n,
                                 pika.BasicProperties(message_id=f"order-{n}", delivery_mode=2, content_type="application/json"))  # fmt: skip
            for _ in range(8):
                method, _, _ = ch.basic_get("orders")
                ch.basic_reject(method.delivery_tag, requeue=False)
        wait_for(lambda: ready(url, "orders.dlq") == 8, what="8 dead letters")
        yield url


def path(name: str) -> str:
    return f"rabbitmq/amqp/{quote(name, safe='')}"


def every_get(client, extra: str = "") -> list[int]:
    """Every page, fragment and API route of the DLQ and its source queue, as a page left open refreshes them."""
    statuses = []
    for name in ("orders.dlq", "orders"):
        qp = path(name)
        for url in (f"/queues/{qp}{extra}", f"/queues/{qp}?fragment=failed{extra.replace('?', '&')}",
                    f"/queues/{qp}?fragment=counts", f"/api/v1/queues/{qp}", f"/api/v1/queues/{qp}/failed{extra}",
                    f"/queues/{qp}/jobs/order-3{extra}", f"/api/v1/queues/{qp}/jobs/order-3{extra}",
                    f"/queues/{qp}/groups{extra}", f"/api/v1/queues/{qp}/groups{extra}", "/", "/api/v1/queues", "/metrics"):  # fmt: skip
            statuses.append(client.get(url).status_code)
            statuses.append(client.get(url, headers={"HX-Request": "true"}).status_code)
    return statuses


def test_pages_and_refreshes_of_a_quorum_dlq_and_its_source_never_deliver_a_dead_letter(quorum_dlq, tmp_path) -> None:
    app = rabbit_app(quorum_dlq, tmp_path)
    try:
        client = app.test_client()
        for _ in range(10):  # ten refreshes of everything: more reads than the delivery limit allows
            # Never a server error; a 503 (RabbitMQ slow to answer, under load) is an answer, not a read.
            assert all(status < 500 or status == 503 for status in every_get(client))
        assert ready(quorum_dlq, "orders.dlq") == 8
        assert delivery_counts(quorum_dlq, "orders.dlq") == [0] * 8  # never handed out by the dashboard
        # Reading the list without an inspection is refused with what to do instead, not answered by reading it.
        answer = client.get(f"/api/v1/queues/{path('orders.dlq')}/failed")
        assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "inspection_required"
        page = client.get(f"/queues/{path('orders.dlq')}").get_data(as_text=True)
        assert 'data-inspection="none"' in page and "Inspect dead letters" in page and "x-delivery-limit 3" in page
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_an_inspection_reads_once_needs_confirming_on_a_quorum_queue_and_is_what_the_page_shows(quorum_dlq, tmp_path) -> None:
    app = rabbit_app(quorum_dlq, tmp_path)
    try:
        client = app.test_client()
        qp = path("orders.dlq")
        refused = client.post(f"/api/v1/queues/{qp}/inspect", json={})
        assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "confirmation_required"
        assert "x-delivery-limit 3" in refused.get_json()["error"]["message"]
        token = csrf_token(client)
        assert client.post(f"/queues/{qp}/inspect", data={"csrf_token": token}).status_code == 409  # the form needs confirm=1 too
        answer = client.post(f"/api/v1/queues/{qp}/inspect", json={"confirm": True, "limit": 5})
        assert answer.status_code == 200
        body = answer.get_json()
        held = body["inspection"]["id"]
        assert [j["id"] for j in body["jobs"]] == [f"order-{n}" for n in (7, 6, 5, 4, 3)] and body["total"] == 8
        # The held inspection is read, paged, grouped and opened as often as the page likes: nothing more is delivered.
        for _ in range(10):
            assert all(status < 500 for status in every_get(client, f"?inspection={held}"))
        second = client.get(f"/api/v1/queues/{qp}/failed?inspection={held}&limit=5&cursor=5").get_json()
        assert [j["id"] for j in second["jobs"]] == ["order-2", "order-1", "order-0"]
        job = client.get(f"/api/v1/queues/{qp}/jobs/order-3?inspection={held}").get_json()
        assert job["id"] == "order-3" and job["inspection"]["id"] == held
        page = client.get(f"/queues/{qp}?inspection={held}").get_data(as_text=True)
        assert f'data-inspection="{held}"' in page and "order-7" in page and "Inspect again" in page
        assert delivery_counts(quorum_dlq, "orders.dlq") == [1] * 8  # exactly one delivery: the inspection
        audit = client.get("/api/v1/audit").get_json()["entries"]
        assert [e["action"] for e in audit if e["action"] == "inspect"] == ["inspect"]  # it changes state: audited
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_an_inspection_reads_a_bounded_window_of_large_dead_letters(tmp_path) -> None:
    with new_vhost("inspect-big") as url:
        with channel(url) as ch:
            ch.queue_declare("big.dlq", durable=True)
            ch.queue_declare("big", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "big.dlq"})
            for n in range(24):
                ch.basic_publish("", "big", b"x" * (1024 * 1024), pika.BasicProperties(message_id=f"big-{n}"))
            for _ in range(24):
                method, _, _ = ch.basic_get("big")
                ch.basic_reject(method.delivery_tag, requeue=False)
        wait_for(lambda: ready(url, "big.dlq") == 24)
        app = rabbit_app(url, tmp_path)
        try:
            body = app.test_client().post(f"/api/v1/queues/{path('big.dlq')}/inspect", json={}).get_json()
            inspection = body["inspection"]
            assert inspection["truncated"] and 16 <= inspection["read"] < 24 and body["total"] == 24
            assert any("16 MB" in note for note in inspection["notes"])
        finally:
            app.extensions["queuewatch.monitor"].close()
        assert ready(url, "big.dlq") == 24


@pytest.mark.browser
def test_an_operator_inspects_a_quorum_dlq_in_the_browser_and_the_open_page_delivers_nothing_more(quorum_dlq, tmp_path, browser, shots) -> None:
    vhost = quorum_dlq
    with serve_queuewatch(tmp_path, "--redis", "none", "--rabbitmq", vhost, "--poll", "1") as base:
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        refreshes: list[str] = []
        page.on("request", lambda request: refreshes.append(request.url) if "fragment=" in request.url else None)

        def refreshed(times: int) -> None:  # the page left open: its components re-fetched ``times`` more times
            start = len(refreshes)
            while len(refreshes) < start + times:
                page.wait_for_timeout(100)

        page.goto(f"{base}/queues/{path('orders.dlq')}")
        expect(page.locator("[data-inspection-warning]")).to_contain_text("x-delivery-limit 3")
        refreshed(4)
        assert delivery_counts(vhost, "orders.dlq") == [0] * 8
        page.get_by_role("button", name="Inspect dead letters").click()
        expect(page.locator("#confirm-message")).to_contain_text("x-delivery-limit 3")
        page.locator("#confirm-ok").click()
        expect(page.locator("#failed-jobs [data-job-id]")).to_have_count(8)
        expect(page.locator("#failed-jobs")).to_contain_text("Inspected")
        page.screenshot(path=str(shots / "inspection.png"), full_page=True)
        page.locator("#failed-jobs [data-job-id='order-3'] a").click()
        expect(page.locator("h1")).to_have_text("order-3")
        page.go_back()
        expect(page.locator("#failed-jobs [data-job-id]")).to_have_count(8)
        refreshed(4)  # more intervals, refreshing the counts, with the inspection shown
        expect(page.locator("#failed-jobs [data-job-id]")).to_have_count(8)
        page.close()
    # One delivery by the check above, one by the inspection the operator asked for: none by the open page.
    assert delivery_counts(vhost, "orders.dlq") == [2] * 8
