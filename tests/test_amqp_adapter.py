"""Plain RabbitMQ queues and their dead-letter queues: the adapter and the dashboard
against a real RabbitMQ, each test in its own vhost (``qw-test-*``, created and
deleted here). The "worker" of a plain queue is a pika consumer: it rejects
(requeue=False) until allowed, then acks. Also the RabbitMQ helpers the
Dramatiq-on-RabbitMQ tests import.
"""

from __future__ import annotations

import re

import base64
import contextlib
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from conftest import csrf_token, free_port, inspect_queue, port_open, require_service, wait_for
from contract import AdapterContract, JobFactory
from pages import counts, number, table_rows

from queuewatch import create_app
from queuewatch.adapters.rabbitmq.plain_queues import AMQPAdapter
from queuewatch.adapters.backends import RabbitBackend
from queuewatch.adapters.base import ALL
from queuewatch.adapters.errors import NotFound, Unsupported

MANAGEMENT = "http://127.0.0.1:15672/api/"
_AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


# --- RabbitMQ helpers (the Dramatiq-on-RabbitMQ tests use them too) -----------------


def require_rabbit() -> None:
    require_service(5672, "RabbitMQ")
    require_service(15672, "RabbitMQ's management API (make test enables it)")


def _management(method: str, path: str, body: object = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(MANAGEMENT + path, data=data, method=method,
                                     headers={"Authorization": _AUTH, "Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=10).read()


@contextlib.contextmanager
def new_vhost(tag: str) -> Iterator[str]:
    """A fresh vhost ``qw-test-TAG-xxxx`` that guest may use; yields its AMQP URL, deletes it after."""
    require_rabbit()
    name = f"qw-test-{tag}-{uuid.uuid4().hex[:8]}"
    if port_open(15672):
        _management("PUT", f"vhosts/{quote(name, safe='')}")
        _management("PUT", f"permissions/{quote(name, safe='')}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    else:
        subprocess.run(["rabbitmqctl", "add_vhost", name], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{quote(name, safe='')}"
    finally:
        if port_open(15672):
            with contextlib.suppress(urllib.error.URLError):
                _management("DELETE", f"vhosts/{quote(name, safe='')}")
        elif shutil.which("rabbitmqctl"):
            subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True)


@contextlib.contextmanager
def channel(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield conn.channel()
    finally:
        conn.close()


def ready(url: str, queue: str) -> int:
    """Messages ready in ``queue``, by passive declare: what the broker holds now."""
    with channel(url) as ch:
        return ch.queue_declare(queue, passive=True).method.message_count


def messages(url: str, queue: str, *, take: bool = False) -> list[tuple[bytes, str | None, str]]:
    """Every message of ``queue`` in order as (body, message_id, headers); given back unless ``take``."""
    found = []
    with channel(url) as ch:
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=take)
            if method is None:
                return found  # closing the channel requeues what was not acked, in place
            found.append((body, props.message_id, repr(props.headers)))


def rabbit_digest(url: str, queues: list[str]) -> dict[str, object]:
    """Count and content (in order) of each queue: equal digests mean nothing was lost, added or reordered."""
    return {q: (ready(url, q), messages(url, q)) for q in queues}


def closed_management() -> str:
    """A management URL nothing answers at: what the dashboard sees when the plugin is off."""
    return f"http://127.0.0.1:{free_port()}/"


def rabbit_app(url: str, tmp_path: Path):
    return create_app({"TESTING": True, "REDIS": ["none"], "RABBITMQ": [url],
                       "STATE": str(tmp_path / "state.sqlite3"), "POLL": 0.01})  # fmt: skip


def q_path(name: str, system: str) -> str:
    return f"rabbitmq/{system}/{quote(name, safe='')}"


# --- the plain-queue job factory -------------------------------------------------------


def declare_with_dlq(ch, queue: str, dlq: str, *, dlq_args: dict | None = None) -> None:
    ch.queue_declare(dlq, durable=True, arguments=dlq_args)
    ch.queue_declare(queue, durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})


class AMQPJobs(JobFactory):
    """Messages in a plain queue whose DLX sends rejected ones to ``QUEUE.dlq``."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue, self.dlq = url, queue, f"{queue}.dlq"
        self.allowed = False
        self.ran: list[str] = []
        self.sent = 0
        with channel(url) as ch:
            declare_with_dlq(ch, queue, self.dlq)

    def publish(self, n: int) -> list[str]:
        ids = []
        with channel(self.url) as ch:
            for _ in range(n):
                self.sent += 1
                ids.append(f"order-{self.sent}")
                body = json.dumps({"order": self.sent, "note": f"job {self.sent}"}).encode()
                ch.basic_publish("", self.queue, body, pika.BasicProperties(message_id=ids[-1], content_type="application/json",
                                                                            delivery_mode=2, type="orders.ship"))  # fmt: skip
        return ids

    def failed(self, n: int) -> list[str]:
        before = ready(self.url, self.dlq)
        ids = self.publish(n)
        self.run_worker()
        wait_for(lambda: ready(self.url, self.dlq) == before + n)  # dead-lettering is asynchronous
        return ids

    def waiting(self, n: int) -> list[str]:
        return self.publish(n)

    def allow(self) -> None:
        self.allowed = True

    def run_worker(self) -> None:
        with channel(self.url) as ch:
            while True:
                method, props, _body = ch.basic_get(self.queue)
                if method is None:
                    return
                if self.allowed:
                    self.ran.append(props.message_id)
                    ch.basic_ack(method.delivery_tag)
                else:
                    ch.basic_reject(method.delivery_tag, requeue=False)

    def succeeded(self, job_id: str) -> bool:
        return job_id in self.ran

    def digest(self) -> object:
        return rabbit_digest(self.url, [self.queue, self.dlq])


@pytest.fixture
def vhost() -> Iterator[str]:
    with new_vhost("amqp") as url:
        yield url


@pytest.fixture
def backend(vhost: str) -> RabbitBackend:
    return RabbitBackend(name="rabbitmq", url=vhost)


@pytest.fixture
def adapter(backend: RabbitBackend) -> AMQPAdapter:
    return AMQPAdapter(backend="rabbitmq", rabbit=backend)


class TestAMQPContract(AdapterContract):
    @pytest.fixture
    def jobs(self, vhost: str) -> AMQPJobs:
        return AMQPJobs(vhost, "orders.eu-1")

    def test_job_detail_has_args_and_traceback(self, adapter, jobs) -> None:
        """Overrides the contract: a plain RabbitMQ message carries no traceback. What
        the detail shows instead is the decoded body and the x-death record."""
        [job_id] = jobs.failed(1)
        detail = adapter.job(jobs.queue, job_id)
        assert detail.id == job_id and detail.queue == jobs.queue
        assert detail.args == ({"order": 1, "note": "job 1"},) and detail.payload_encoding == "json"
        assert detail.traceback is None
        facts = dict(detail.details)
        assert facts["x-death 1"].startswith(f"reason rejected, count 1, queue {jobs.queue}, exchange ''")
        assert facts["message id"] == job_id and facts["content type"] == "application/json"
        assert detail.error_type == "rejected" and detail.failed_at is not None


def test_inspecting_a_dead_letter_queue_keeps_its_order_and_count(vhost, adapter) -> None:
    jobs = AMQPJobs(vhost, "orders")
    ids = jobs.failed(60)
    for cursor in (None, "10", "50"):
        adapter.failed("orders", limit=10, cursor=cursor)
    adapter.job("orders", ids[30])
    adapter.failed("orders.dlq", limit=25)
    # Independent of the code under test: take every message off the queue for good.
    assert [m[1] for m in messages(vhost, "orders.dlq", take=True)] == ids


def test_a_rejected_message_shows_with_its_x_death_reason_and_redrives_to_its_queue(vhost, adapter) -> None:
    jobs = AMQPJobs(vhost, "orders")
    [job_id] = jobs.failed(1)
    [row] = adapter.failed("orders", limit=10).items
    assert (row.id, row.error_type, row.attempts, row.function) == (job_id, "rejected", 1, "orders.ship")
    assert row.error_message == "dead-lettered from orders (1 time)"
    [dlq_row] = adapter.failed("orders.dlq", limit=10).items
    assert dlq_row == row
    result = adapter.requeue("orders.dlq", [job_id])
    assert (result.affected, result.not_found) == (1, ())
    assert ready(vhost, "orders") == 1 and ready(vhost, "orders.dlq") == 0
    [(body, message_id, headers)] = messages(vhost, "orders")
    assert message_id == job_id and json.loads(body) == {"order": 1, "note": "job 1"}
    assert "'reason': 'rejected'" in headers  # x-death kept, as a shovel keeps it: the count goes on
    jobs.allow()
    jobs.run_worker()
    assert jobs.succeeded(job_id)


def test_links_say_which_queue_is_whose_dead_letter_queue(vhost, adapter) -> None:
    AMQPJobs(vhost, "orders").failed(2)
    by_name = {q.name: q for q in adapter.queues()}
    assert by_name["orders"].links == (("dead letters", "orders.dlq"),)
    assert by_name["orders.dlq"].links == (("original queue", "orders"),)
    assert (by_name["orders"].failed, by_name["orders.dlq"].depth) == (2, 2)
    assert any("dead-letter queue" in n for n in by_name["orders.dlq"].notes)


@pytest.mark.parametrize("kind, binding_key", [("direct", "parcels"), ("fanout", ""), ("topic", "parcels.#")])
def test_a_dead_letter_exchange_is_followed_through_its_bindings(vhost, adapter, kind, binding_key) -> None:
    with channel(vhost) as ch:
        ch.exchange_declare("dlx", kind, durable=True)
        ch.queue_declare("parcels.dead", durable=True)
        ch.queue_bind("parcels.dead", "dlx", routing_key=binding_key)
        ch.queue_declare("parcels", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
        ch.queue_declare("unrelated", durable=True)
        ch.basic_publish("", "parcels", b"p-1", pika.BasicProperties(message_id="p-1"))
        method, _, _ = ch.basic_get("parcels")
        ch.basic_reject(method.delivery_tag, requeue=False)
    wait_for(lambda: ready(vhost, "parcels.dead") == 1)
    stats = adapter.queue("parcels")
    assert stats.links == (("dead letters", "parcels.dead"),) and stats.failed == 1
    [row] = adapter.failed("parcels", limit=5).items
    assert row.id == "p-1" and adapter.requeue("parcels", ALL).affected == 1
    assert ready(vhost, "parcels") == 1 and adapter.queue("unrelated").links == ()


def test_a_shared_dead_letter_queue_is_split_by_the_queue_each_message_died_in(vhost, adapter) -> None:
    with channel(vhost) as ch:
        ch.queue_declare("all.dead", durable=True)
        for name in ("emails", "sms"):
            ch.queue_declare(name, durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "all.dead"})
            for i in range(2 if name == "emails" else 3):
                ch.basic_publish("", name, f"{name}-{i}".encode(), pika.BasicProperties(message_id=f"{name}-{i}"))
            while (got := ch.basic_get(name))[0] is not None:
                ch.basic_reject(got[0].delivery_tag, requeue=False)
    wait_for(lambda: ready(vhost, "all.dead") == 5)
    emails = adapter.queue("emails")
    assert emails.failed is None and ("in shared DLQ all.dead", 5) in emails.details
    assert [j.id for j in adapter.failed("emails", limit=10).items] == ["emails-1", "emails-0"]
    assert adapter.failed("emails", limit=10).total == 2
    assert adapter.delete("emails", ["sms-0"]).not_found == ("sms-0",)  # not this queue's
    assert adapter.requeue("all.dead", ALL).affected == 5  # each back where it died
    assert (ready(vhost, "emails"), ready(vhost, "sms"), ready(vhost, "all.dead")) == (2, 3, 0)


def test_an_expired_message_says_so(vhost, adapter) -> None:
    with channel(vhost) as ch:
        ch.queue_declare("slow.dlq", durable=True)
        ch.queue_declare("slow", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "slow.dlq",
                                                          "x-message-ttl": 1})  # fmt: skip
        ch.basic_publish("", "slow", b"late", pika.BasicProperties(message_id="late"))
    wait_for(lambda: ready(vhost, "slow.dlq") == 1)
    [row] = adapter.failed("slow", limit=5).items
    assert (row.id, row.error_type) == ("late", "expired")


def test_a_quorum_dead_letter_queue_says_reading_it_counts_as_a_delivery(vhost, adapter) -> None:
    with channel(vhost) as ch:
        declare_with_dlq(ch, "payments", "payments.dlq", dlq_args={"x-queue-type": "quorum"})
        ch.basic_publish("", "payments", b"{}", pika.BasicProperties(message_id="pay-1"))
        method, _, _ = ch.basic_get("payments")
        ch.basic_reject(method.delivery_tag, requeue=False)
    wait_for(lambda: ready(vhost, "payments.dlq") == 1)
    for name in ("payments", "payments.dlq"):
        assert any("counts as a delivery" in note for note in adapter.queue(name).notes), name
    assert any("counts as a delivery" in note for note in adapter.job("payments", "pay-1").notes)
    assert [j.id for j in adapter.failed("payments", limit=5).items] == ["pay-1"]


def test_a_message_without_x_death_is_shown_but_not_requeued(vhost, adapter) -> None:
    AMQPJobs(vhost, "orders").failed(1)
    with channel(vhost) as ch:
        ch.basic_publish("", "orders.dlq", b"\xff\x00 raw", pika.BasicProperties(message_id="stray"))
    page = adapter.failed("orders.dlq", limit=5)
    assert [j.id for j in page.items] == ["stray", "order-1"]
    assert "not decodable" in page.items[0].args_preview and page.items[0].error_message == "no x-death header"
    assert any("cannot be requeued" in n for n in adapter.job("orders.dlq", "stray").notes)
    result = adapter.requeue("orders.dlq", ALL)
    assert (result.affected, result.not_found) == (1, ("stray",))
    assert [m[1] for m in messages(vhost, "orders.dlq")] == ["stray"]


def test_identical_messages_get_distinct_ids_and_are_moved_one_at_a_time(vhost, adapter) -> None:
    with channel(vhost) as ch:
        declare_with_dlq(ch, "twins", "twins.dlq")
        for _ in range(2):
            ch.basic_publish("", "twins", b"same")
        for _ in range(2):
            method, _, _ = ch.basic_get("twins")
            ch.basic_reject(method.delivery_tag, requeue=False)
    wait_for(lambda: ready(vhost, "twins.dlq") == 2)
    ids = [j.id for j in adapter.failed("twins", limit=5).items]
    assert ids[0].startswith("sha256-") and sorted(ids) == sorted([ids[0].split("~")[0], ids[0].split("~")[0] + "~2"])
    assert adapter.requeue("twins", [ids[0].split("~")[0]]).affected == 1
    assert (ready(vhost, "twins"), ready(vhost, "twins.dlq")) == (1, 1)


def test_a_redrive_to_a_queue_that_is_gone_leaves_the_dead_letter_in_place(vhost, adapter) -> None:
    AMQPJobs(vhost, "orders").failed(2)
    assert adapter.failed("orders.dlq", limit=5).total == 2  # the operator looks, then the queue goes
    with channel(vhost) as ch:
        ch.queue_delete("orders")
    with pytest.raises(Unsupported, match="could not route"):
        adapter.requeue("orders.dlq", ALL)
    assert [m[1] for m in messages(vhost, "orders.dlq")] == ["order-1", "order-2"]


def test_without_the_management_api_it_works_from_configuration_and_x_death(vhost) -> None:
    AMQPJobs(vhost, "orders").failed(3)
    backend = RabbitBackend(name="rabbitmq", url=vhost, management_url=closed_management(),
                            queues=["orders"], dead_letter_queues=["orders.dlq"])  # fmt: skip
    adapter = AMQPAdapter(backend="rabbitmq", rabbit=backend)
    assert AMQPAdapter.detect(backend)
    [note] = backend.notes()
    assert "not answering" in note and "unacked counts, message rates" in note and "x-dead-letter-exchange" in note
    before = {q.name: q for q in adapter.queues()}
    assert set(before) == {"orders", "orders.dlq"} and before["orders"].in_progress is None
    assert before["orders.dlq"].depth == 3
    # Nothing links the two until the operator inspects the DLQ (no other queue is read to find out):
    assert adapter.failed("orders", limit=10).items == () and not adapter.inspects("orders")
    # then its x-death headers say where its messages died.
    adapter.inspect("orders.dlq")
    assert [j.id for j in adapter.failed("orders", limit=10).items] == ["order-3", "order-2", "order-1"]
    assert adapter.queue("orders").links == (("dead letters", "orders.dlq"),) and adapter.queue("orders").failed == 3
    assert adapter.requeue("orders", ["order-2"]).affected == 1
    assert [m[1] for m in messages(vhost, "orders")] == ["order-2"]


def test_a_missing_queue_is_not_found_and_a_queue_without_dead_letters_refuses_moves(vhost, adapter) -> None:
    with pytest.raises(NotFound):
        adapter.queue("no-such-queue")
    AMQPJobs(vhost, "orders").waiting(1)
    with channel(vhost) as ch:
        ch.queue_declare("plain", durable=True)
    assert adapter.failed("plain", limit=5).items == ()
    for action in (adapter.requeue, adapter.delete):
        with pytest.raises(Unsupported, match="no known dead-letter queue"):
            action("plain", ALL)


# --- the dashboard ------------------------------------------------------------------


@pytest.fixture
def rabbit_client(vhost, tmp_path):
    app = rabbit_app(vhost, tmp_path)
    yield app.test_client()
    app.extensions["queuewatch.monitor"].close()


def test_counts_on_the_page_and_in_the_api_equal_what_rabbitmq_holds(vhost, rabbit_client) -> None:
    """Each dead letter is counted once, as a dead letter: the DLQ's row says so instead of
    "waiting", the totals count 3 failed and 4 waiting (not 7 and 6), and the no-workers
    filter leaves the DLQ out (nobody is meant to consume it)."""
    jobs = AMQPJobs(vhost, "orders")
    jobs.failed(3)
    jobs.waiting(4)
    api = {q["name"]: q for q in rabbit_client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "amqp"}
    overview = rabbit_client.get("/").get_data(as_text=True)
    rows = table_rows(overview)
    assert api["orders"]["depth"] == number(rows["rabbitmq/amqp/orders"]["depth"]) == ready(vhost, "orders") == 4
    assert api["orders.dlq"]["depth"] == ready(vhost, "orders.dlq") == 3  # the API keeps the queue's own numbers
    assert rows["rabbitmq/amqp/orders.dlq"]["depth"] == "dead letters"
    assert api["orders"]["failed"] == api["orders.dlq"]["failed"] == number(rows["rabbitmq/amqp/orders.dlq"]["failed"]) == 3
    for name, label in (("orders", "Dead letters"), ("orders.dlq", "Dead letters")):
        page = rabbit_client.get(f"/queues/{q_path(name, 'amqp')}").get_data(as_text=True)
        assert number(counts(page)["failed"]) == 3
        assert re.search(rf'card-label">{label}</div><div class="card-value" data-count="failed"', page), name
    dlq_page = counts(rabbit_client.get(f"/queues/{q_path('orders.dlq', 'amqp')}").get_data(as_text=True))
    assert "depth" not in dlq_page  # not "waiting": they are the dead letters above
    totals = re.search(r'data-backend-totals="rabbitmq">.*?data-total="depth">([\d,]+)<.*?data-total="failed"[^>]*>([\d,]+)<',
                       overview, re.S)  # fmt: skip
    assert totals and (number(totals[1]), number(totals[2])) == (4, 3)
    unworked = table_rows(rabbit_client.get("/?state=no-workers").get_data(as_text=True))
    assert "rabbitmq/amqp/orders" in unworked and "rabbitmq/amqp/orders.dlq" not in unworked
    assert "Management API on" in overview


def test_a_dead_letter_redriven_through_the_api_reaches_its_worker(vhost, rabbit_client) -> None:
    jobs = AMQPJobs(vhost, "orders")
    [first, second] = jobs.failed(2)
    seen = inspect_queue(rabbit_client, q_path("orders", "amqp"))
    detail = rabbit_client.get(f"/api/v1/queues/{q_path('orders', 'amqp')}/jobs/{first}?inspection={seen}").get_json()
    assert detail["error_type"] == "rejected" and detail["details"]["x-death 1"].startswith("reason rejected")
    page = rabbit_client.get(f"/queues/{q_path('orders', 'amqp')}/jobs/{first}?inspection={seen}").get_data(as_text=True)
    assert "x-death 1" in page and "redelivered" in page
    answer = rabbit_client.post(f"/api/v1/queues/{q_path('orders', 'amqp')}/failed/requeue", json={"ids": [first]})
    assert answer.get_json() == {"requeued": 1, "not_found": []}
    jobs.allow()
    jobs.run_worker()
    assert jobs.succeeded(first) and not jobs.succeeded(second)
    token = csrf_token(rabbit_client)
    gone = rabbit_client.post(f"/queues/{q_path('orders', 'amqp')}/failed/delete", data={"csrf_token": token, "all": "1"},
                              follow_redirects=True)  # fmt: skip
    assert "Deleted 1 job." in gone.get_data(as_text=True) and ready(vhost, "orders.dlq") == 0


def test_the_overview_says_when_the_management_api_is_off(vhost, tmp_path) -> None:
    AMQPJobs(vhost, "orders").failed(1)
    app = rabbit_app(vhost, tmp_path)
    monitor = app.extensions["queuewatch.monitor"]
    monitor.backends["rabbitmq"] = RabbitBackend(name="rabbitmq", url=vhost, management_url=closed_management(),
                                                 queues=["orders"], dead_letter_queues=["orders.dlq"])  # fmt: skip
    client = app.test_client()
    overview = client.get("/").get_data(as_text=True)
    assert "working from AMQP alone" in overview and "unacked counts, message rates" in overview
    [backend] = client.get("/api/v1/backends").get_json()["backends"]
    assert backend["status"] == "up" and backend["systems"] == ["amqp"]
    assert {q["name"]: q["depth"] for q in client.get("/api/v1/queues").get_json()["queues"]} == {"orders": 0, "orders.dlq": 1}
    assert client.get(f"/queues/{q_path('orders.dlq', 'amqp')}").status_code == 200
    monitor.close()


def test_reads_never_write_a_crawl_of_every_page_and_api_route(vhost, rabbit_client) -> None:
    jobs = AMQPJobs(vhost, "orders")
    ids = jobs.failed(3)
    jobs.waiting(2)
    before = rabbit_digest(vhost, ["orders", "orders.dlq"])
    urls = ["/", "/workers", "/api/v1/queues", "/api/v1/workers", "/api/v1/backends", "/metrics"]
    for name in ("orders", "orders.dlq"):
        qp = q_path(name, "amqp")
        urls += [f"/queues/{qp}", f"/queues/{qp}?fragment=failed", f"/api/v1/queues/{qp}", f"/api/v1/queues/{qp}/failed?limit=2",
                 f"/api/v1/queues/{qp}/failed?limit=2&cursor=2", f"/queues/{qp}/jobs/nope"]  # fmt: skip
        urls += [f"/queues/{qp}/jobs/{i}" for i in ids] + [f"/api/v1/queues/{qp}/jobs/{i}" for i in ids]
    for url in urls:
        assert rabbit_client.get(url).status_code < 500, url
    assert rabbit_digest(vhost, ["orders", "orders.dlq"]) == before


def test_the_command_line_configures_queues_to_watch_when_the_management_api_is_off(vhost, tmp_path) -> None:
    AMQPJobs(vhost, "orders").failed(3)
    app = create_app({"TESTING": True, "REDIS": ["none"], "RABBITMQ": [vhost], "STATE": str(tmp_path / "s.sqlite3"),
                      "POLL": 0.01, "RABBITMQ_MANAGEMENT": closed_management(), "RABBITMQ_QUEUES": ["orders"],
                      "RABBITMQ_DLQS": "rabbitmq=orders.dlq"})  # fmt: skip
    try:
        client = app.test_client()
        [backend] = client.get("/api/v1/backends").get_json()["backends"]
        assert backend["status"] == "up" and "not answering" in backend["notes"][0]
        queues = {q["name"]: q for q in client.get("/api/v1/queues").get_json()["queues"] if q["system"] == "amqp"}
        assert set(queues) == {"orders", "orders.dlq"} and queues["orders.dlq"]["depth"] == 3
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_a_dead_letter_with_a_float_header_from_py_amqp_is_redriven_intact(vhost, adapter) -> None:
    # kombu/py-amqp (Celery's client) writes float header values, which pika itself cannot encode.
    import amqp

    jobs = AMQPJobs(vhost, "floats")
    params = pika.URLParameters(vhost)
    with amqp.Connection(f"{params.host}:{params.port}", userid="guest", password="guest",
                         virtual_host=params.virtual_host) as conn:  # fmt: skip
        conn.channel().basic_publish(
            amqp.Message(b'{"x": 1}', message_id="float-1", application_headers={"timelimit": 4.5}),
            exchange="", routing_key="floats",
        )
    jobs.run_worker()
    wait_for(lambda: ready(vhost, "floats.dlq") == 1)
    assert adapter.requeue("floats", ["float-1"]).affected == 1
    with channel(vhost) as ch:
        method, props, body = ch.basic_get("floats", auto_ack=True)
    assert (props.message_id, body, float(props.headers["timelimit"])) == ("float-1", b'{"x": 1}', 4.5)
    assert ready(vhost, "floats.dlq") == 0
