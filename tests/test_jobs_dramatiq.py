"""Dramatiq jobs in every state through the API, on Redis and on RabbitMQ, against the messages
Dramatiq's own brokers sent and what its real workers then ran."""

from __future__ import annotations

import time

import pytest
from conftest import redis_digest, wait_for
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq_tasks import recorded, run_worker
from test_amqp_adapter import new_vhost, q_path, rabbit_app, rabbit_digest
from test_dramatiq_rabbitmq import DramatiqRabbitJobs

pytestmark = pytest.mark.redis_db(13)
NS = "dramatiq"


class Sender:
    def __init__(self, r, queue: str) -> None:
        self.broker, self.queue = RedisBroker(client=r, namespace=NS), queue

    def send(self, actor: str, *args, delay: int | None = None) -> Message:
        return self.broker.enqueue(Message(queue_name=self.queue, actor_name=actor, args=args, kwargs={}, options={}), delay=delay)


def api(queue: str) -> str:
    return f"/api/v1/queues/redis/dramatiq/{queue}"


def walk(client, queue: str, state: str, limit: int = 2) -> list[dict]:
    rows, cursor = [], None
    while True:
        answer = client.get(f"{api(queue)}/jobs?state={state}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status_code == 200, answer.get_data(as_text=True)
        rows += answer.get_json()["jobs"]
        assert len(answer.get_json()["jobs"]) <= limit
        cursor = answer.get_json()["next_cursor"]
        if cursor is None:
            return rows


def test_waiting_lists_the_messages_in_the_order_a_real_worker_runs_them(client, r, redis_url, tmp_path) -> None:
    sender = Sender(r, "mail")
    sent = [sender.send("add", i, i).message_id for i in range(5)]
    waiting = walk(client, "mail", "waiting")
    assert [j["id"] for j in waiting] == sent
    assert {(j["state"], j["function"]) for j in waiting} == {("waiting", "add")}
    assert client.get(f"{api('mail')}/jobs?state=waiting").get_json()["total"] == 5
    record = tmp_path / "ran"
    run_worker("redis", redis_url, ["mail"], record, lambda: len(recorded(record)) == 5)
    assert recorded(record) == sent  # one thread: the order it ran them in
    assert walk(client, "mail", "waiting") == []


def test_delayed_messages_are_scheduled_with_their_eta_and_enqueue_now_runs_one(client, r, redis_url, tmp_path) -> None:
    sender = Sender(r, "later")
    delayed = [sender.send("add", i, i, delay=3_600_000 + i * 1000) for i in range(3)]
    scheduled = walk(client, "later", "scheduled")
    assert [j["id"] for j in scheduled] == [m.message_id for m in delayed]  # soonest eta first
    for row, message in zip(scheduled, delayed):
        eta = time.mktime(time.strptime(row["scheduled_for"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert abs(eta * 1000 - message.options["eta"]) < 1000
    assert client.get(f"/api/v1/jobs/{delayed[0].message_id}").get_json()["matches"] == [
        {"backend": "redis", "system": "dramatiq", "queue": "later", "state": "scheduled"}]  # fmt: skip
    moved = client.post(f"{api('later')}/jobs/enqueue-now", json={"ids": [delayed[1].message_id]})
    assert moved.get_json() == {"enqueued": 1, "not_found": []}
    assert [j["id"] for j in walk(client, "later", "waiting")] == [delayed[1].message_id]
    record = tmp_path / "ran"
    start = time.monotonic()
    run_worker("redis", redis_url, ["later"], record, lambda: delayed[1].message_id in recorded(record))
    assert time.monotonic() - start < 20
    assert recorded(record) == [delayed[1].message_id]  # the others still wait for their eta
    again = client.post(f"{api('later')}/jobs/enqueue-now", json={"ids": [delayed[1].message_id]}).get_json()
    assert again == {"enqueued": 0, "not_found": [delayed[1].message_id]}


def test_deleted_waiting_and_delayed_messages_never_run(client, r, redis_url, tmp_path) -> None:
    sender = Sender(r, "work")
    sent = [sender.send("add", i, i).message_id for i in range(3)]
    delayed = sender.send("add", 9, 9, delay=500).message_id
    walk(client, "work", "waiting")  # the page an operator acts from
    answer = client.post(f"{api('work')}/jobs/delete", json={"ids": [sent[1], delayed, "nope"]})
    assert answer.get_json() == {"deleted": 2, "not_found": ["nope"]}
    record = tmp_path / "ran"
    done_at: list[float] = []

    def settled() -> bool:  # both others ran, and the delayed one's eta is well past
        if len(recorded(record)) >= 2 and not done_at:
            done_at.append(time.monotonic())
        return bool(done_at) and time.monotonic() - done_at[0] > 1.5

    run_worker("redis", redis_url, ["work"], record, settled)
    assert sorted(recorded(record)) == sorted([sent[0], sent[2]])
    assert r.hlen(f"{NS}:work.msgs") == 0 and r.hlen(f"{NS}:work.DQ.msgs") == 0


def test_a_message_id_never_listed_is_still_found_for_a_move(app, r) -> None:
    """Another dashboard process listed it: the id is looked for (bounded) in the queue's messages."""
    sender = Sender(r, "other")
    sent = sender.send("add", 1, 1).message_id
    client = app.test_client()
    assert client.post(f"{api('other')}/jobs/delete", json={"ids": [sent]}).get_json() == {"deleted": 1, "not_found": []}


def test_in_progress_lists_the_message_a_worker_holds_with_that_worker(client, r, redis_url, tmp_path) -> None:
    sender = Sender(r, "slow")
    napping = sender.send("nap", 3).message_id
    record = tmp_path / "ran"
    seen: list[list[dict]] = []

    def watch() -> bool:
        rows = walk(client, "slow", "in_progress")
        if rows:
            seen.append(rows)
        return bool(seen) and napping in recorded(record)

    run_worker("redis", redis_url, ["slow"], record, watch)
    rows = seen[0]
    workers = [w.decode() for w in r.zrange(f"{NS}:__heartbeats__", 0, -1)]
    assert [(j["id"], j["state"], j["function"]) for j in rows] == [(napping, "in_progress", "nap")]
    assert rows[0]["worker"] in workers
    for state in ("finished", "canceled"):
        answer = client.get(f"{api('slow')}/jobs?state={state}")
        assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "unsupported"


def test_reads_of_dramatiq_lists_write_nothing(client, r) -> None:
    sender = Sender(r, "calm")
    ids = [sender.send("add", 1, 1).message_id, sender.send("add", 2, 2, delay=60_000).message_id]
    before = redis_digest(r)
    for state in ("waiting", "scheduled", "in_progress", "failed"):
        assert client.get(f"{api('calm')}/jobs?state={state}").status_code == 200
        assert client.get(f"/queues/redis/dramatiq/calm/jobs?state={state}").status_code in (200, 303)
    for job_id in ids:
        assert client.get(f"/api/v1/jobs/{job_id}").get_json()["matches"]
        assert client.get(f"/jobs/{job_id}").status_code == 200
        assert client.get(f"{api('calm')}/jobs/{job_id}").status_code == 200
    assert redis_digest(r) == before


# -- RabbitMQ ------------------------------------------------------------------------------


@pytest.fixture
def vhost():
    with new_vhost("jobs") as url:
        yield url


def test_on_rabbitmq_waiting_is_an_inspection_asked_for_with_a_post(vhost, tmp_path) -> None:
    jobs = DramatiqRabbitJobs(vhost, "tasks", tmp_path)
    try:
        sent = [jobs.send("add", i, i) for i in range(4)]
        later = jobs.send("add", 9, 9, delay=3_600_000)
        app = rabbit_app(vhost, tmp_path)
        client = app.test_client()
        path = f"/api/v1/queues/{q_path('tasks', 'dramatiq')}"
        wait_for(lambda: client.get(path).status_code == 200, what="the queue to be listed")
        before = rabbit_digest(vhost, ["tasks", "tasks.DQ", "tasks.XQ"])
        refused = client.get(f"{path}/jobs?state=waiting")
        assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "inspection_required"
        assert client.get(f"{path}/jobs?state=in_progress").status_code == 409
        assert client.get(f"/queues/{q_path('tasks', 'dramatiq')}/jobs?state=waiting").status_code == 200
        assert rabbit_digest(vhost, ["tasks", "tasks.DQ", "tasks.XQ"]) == before  # GETs read nothing
        inspected = client.post(f"{path}/jobs/inspect", json={"state": "waiting"})
        assert inspected.status_code == 200, inspected.get_data(as_text=True)
        body = inspected.get_json()
        assert [j["id"] for j in body["jobs"]] == sent and body["total"] == 4  # next to run first
        page = client.get(f"{path}/jobs?state=waiting&limit=2&cursor=2&inspection={body['inspection']['id']}").get_json()
        assert [j["id"] for j in page["jobs"]] == sent[2:]
        delayed = client.post(f"{path}/jobs/inspect", json={"state": "scheduled"}).get_json()
        assert [j["id"] for j in delayed["jobs"]] == [later]
        assert client.post(f"{path}/jobs/delete", json={"ids": sent[:1]}).status_code == 409
        record = tmp_path / "ran"
        run_worker("rabbitmq", vhost, ["tasks"], record, lambda: len(recorded(record)) == 4)
        assert sorted(recorded(record)) == sorted(sent)  # the inspection gave every message back
        app.extensions["queuewatch.monitor"].close()
    finally:
        jobs.broker.close()


def test_inspection_posts_are_audited(vhost, tmp_path) -> None:
    jobs = DramatiqRabbitJobs(vhost, "audited", tmp_path)
    try:
        jobs.send("add", 1, 1)
        app = rabbit_app(vhost, tmp_path)
        client = app.test_client()
        path = f"/api/v1/queues/{q_path('audited', 'dramatiq')}"
        wait_for(lambda: client.get(path).status_code == 200, what="the queue to be listed")
        assert client.post(f"{path}/jobs/inspect", json={"state": "waiting"}).status_code == 200
        assert client.post(f"{path}/jobs/inspect", json={"state": "bogus"}).status_code == 400
        entries = client.get("/api/v1/audit").get_json()["entries"]
        assert [(e["action"], e["queue"], e["affected"]) for e in entries][:1] == [("inspect", "audited", 1)]
        app.extensions["queuewatch.monitor"].close()
    finally:
        jobs.broker.close()
