"""The failed job's page offers only what the job's state allows, says why not, and
says what happened when an action found nothing to do (issue 15, item 7); a dead
letter's requeue names the queue it really goes to (item 8); long values are cut,
with a "show all" that loads them in full, bounded (item 13). Real RQ workers, a
real RabbitMQ."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
from urllib.parse import quote

import pika
import pytest
import rq
import rq_tasks
from conftest import TESTS, csrf_token, rq_bin, run_rq_worker, wait_for
from rq.job import Job
from test_amqp_adapter import AMQPJobs, channel, new_vhost, rabbit_app

from queuewatch.views.pages import CUT_CHARS, FULL_CHARS

pytestmark = pytest.mark.redis_db(9)


def job_url(queue: str, job_id: str, backend: str = "redis", system: str = "rq") -> str:
    return f"/queues/{backend}/{system}/{quote(queue, safe='')}/jobs/{quote(job_id, safe='')}"


def offered(page: str) -> bool:
    return "data-offer=" in page and ">Requeue</button>" in page


def last_audit(client) -> dict:
    return client.get("/api/v1/audit?limit=1").get_json()["entries"][0]


def start_worker(redis_url: str, queue: str, name: str, tmp_path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [rq_bin(), "worker", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker", "--name", name, queue]
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


# -- item 7: a running job, a job orphaned by a dead worker, a job requeued meanwhile --------------------


def test_a_running_job_and_one_its_dead_worker_left_offer_no_requeue_and_say_why(client, r, redis_url, tmp_path) -> None:
    flag = tmp_path / "release"
    job = rq.Queue("slow", connection=r).enqueue(rq_tasks.block_until, str(flag), 60)
    worker = start_worker(redis_url, "slow", "w-running", tmp_path)
    try:
        wait_for(lambda: Job.fetch(job.id, connection=r).get_status() == "started", what="the job to start")
        page = client.get(job_url("slow", job.id)).get_data(as_text=True)
        assert not offered(page) and ">Delete</button>" not in page
        why = html.unescape(re.search(r"<p class=\"note note-warn\" data-why-not>(.*?)</p>", page, re.S).group(1))
        assert "It is running on worker w-running: only a failed job can be requeued or deleted" in why

        # The page as it was before it started: requeue anyway. Nothing moves; the flash says where it is.
        token = csrf_token(client)
        answer = client.post("/queues/redis/rq/slow/failed/requeue", data={"csrf_token": token, "ids": job.id},
                             follow_redirects=True)  # fmt: skip
        text = html.unescape(answer.get_data(as_text=True))
        assert (
            f"Requeued 0 jobs. 1 could not be: already moved or gone — job {job.id} is no longer in the failed list: it is in progress now"
            in text
        )
        entry = last_audit(client)
        assert (entry["action"], entry["affected"], entry["result"]) == ("requeue", 0, "nothing done: 1 not found or not possible")

        # kill -9: the job stays "started" in RQ's started registry with nobody running it.
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        r.expire("rq:worker:w-running", 1)  # its key outlives it by worker_ttl: let that time pass
        wait_for(lambda: not r.exists("rq:worker:w-running"), what="the dead worker's key to expire")
        assert Job.fetch(job.id, connection=r).get_status() == "started"
        page = html.unescape(client.get(job_url("slow", job.id)).get_data(as_text=True))
        assert not offered(page)
        assert "Its worker w-running is no longer registered" in page or "Its worker w-running is dead" in page
        assert "RQ moves it to the failed registry" in page
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_a_failed_job_requeued_while_its_page_is_open_says_where_it_is_now(client, r, redis_url, tmp_path) -> None:
    job = rq.Queue("emails", connection=r).enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "flag"), 1)
    run_rq_worker(redis_url, "emails")
    page = client.get(job_url("emails", job.id)).get_data(as_text=True)
    assert offered(page) and 'data-confirm="Requeue job ' in page and "It goes back to emails and runs again." in page
    # Someone else requeues it (the API, another tab), then this page's button is pressed.
    assert client.post("/api/v1/queues/redis/rq/emails/failed/requeue", json={"ids": [job.id]}).get_json()["requeued"] == 1
    token = csrf_token(client)
    answer = client.post(
        "/queues/redis/rq/emails/failed/requeue", data={"csrf_token": token, "ids": job.id, "next": job_url("emails", job.id)}
    )
    assert answer.status_code == 303 and answer.headers["Location"].endswith(job_url("emails", job.id))
    shown = html.unescape(client.get(answer.headers["Location"]).get_data(as_text=True))
    assert (
        f"Requeued 0 jobs. 1 could not be: already moved or gone — job {job.id} is no longer in the failed list: it is waiting now"
        in shown
    )
    assert not offered(shown) and "It is waiting, not failed" in shown
    entry = last_audit(client)
    assert (entry["affected"], entry["result"]) == (0, "nothing done: 1 not found or not possible")
    assert Job.fetch(job.id, connection=r).get_status() == "queued"  # moved once, by the first requeue


def test_an_action_that_did_everything_is_audited_ok(client, r, redis_url, tmp_path) -> None:
    job = rq.Queue("emails", connection=r).enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "flag"), 1)
    run_rq_worker(redis_url, "emails")
    assert client.post("/api/v1/queues/redis/rq/emails/failed/requeue", json={"ids": [job.id, "nope"]}).status_code == 200
    assert last_audit(client)["result"] == "partly done: 1 not found or not possible"
    run_rq_worker(redis_url, "emails")
    assert client.post("/api/v1/queues/redis/rq/emails/failed/delete", json={"ids": [job.id]}).get_json()["deleted"] == 1
    assert last_audit(client)["result"] == "ok"


# -- item 8: a dead letter goes back to the queue it died in ----------------------------------------------


def test_the_requeue_dialog_of_a_dead_letter_names_the_queue_it_goes_back_to(tmp_path) -> None:
    with new_vhost("ui-dlq") as url:
        jobs = AMQPJobs(url, "orders")
        [job_id] = jobs.failed(1)
        app = rabbit_app(url, tmp_path)
        try:
            client = app.test_client()
            for page_queue in ("orders.dlq", "orders"):  # the DLQ's own page and its source's
                token = csrf_token(client)
                inspected = client.post(f"/queues/rabbitmq/amqp/{page_queue}/inspect", data={"csrf_token": token, "job": job_id})
                page = html.unescape(client.get(inspected.headers["Location"]).get_data(as_text=True))
                assert 'data-requeue-to="orders"' in page, page_queue
                assert "It goes back to orders and runs again." in page and "goes back to orders.dlq" not in page
            token = csrf_token(client)
            inspected = client.post("/queues/rabbitmq/amqp/orders.dlq/inspect", data={"csrf_token": token})
            listing = html.unescape(client.get(inspected.headers["Location"]).get_data(as_text=True))
            assert "Each goes back to the queue it last died in (orders)" in listing
            # And that is where it goes.
            jobs.allow()
            assert (
                client.post("/api/v1/queues/rabbitmq/amqp/orders.dlq/failed/requeue", json={"ids": [job_id]}).get_json()["requeued"]
                == 1
            )
            jobs.run_worker()
            assert jobs.succeeded(job_id)
        finally:
            app.extensions["queuewatch.monitor"].close()


def test_a_dead_letter_without_x_death_names_no_destination(tmp_path) -> None:
    with new_vhost("ui-nodeath") as url:
        with channel(url) as ch:
            ch.queue_declare("orders.dlq", durable=True)
            ch.queue_declare(
                "orders", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.dlq"}
            )
            ch.basic_publish("", "orders.dlq", b'{"x": 1}', pika.BasicProperties(message_id="stray-1"))
        app = rabbit_app(url, tmp_path)
        try:
            client = app.test_client()
            token = csrf_token(client)
            inspected = client.post("/queues/rabbitmq/amqp/orders.dlq/inspect", data={"csrf_token": token, "job": "stray-1"})
            page = html.unescape(client.get(inspected.headers["Location"]).get_data(as_text=True))
            assert 'data-requeue-to=""' in page and "It goes back to the queue it last died in." in page
        finally:
            app.extensions["queuewatch.monitor"].close()


# -- item 13: long values are cut on the page, shown in full on request (bounded) --------------------------


def test_a_long_argument_is_cut_with_show_all_and_the_traceback_stays_near(client, r, redis_url, tmp_path) -> None:
    long_text = "x" * 20_000
    huge = "y" * (FULL_CHARS + 5_000)
    job = rq.Queue("big", connection=r).enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "flag"), long_text, note=huge)
    run_rq_worker(redis_url, "big")
    page = client.get(job_url("big", job.id)).get_data(as_text=True)
    assert "x" * 20_000 not in page and "x" * (CUT_CHARS - 10) in page
    args = page.split("<h2>Arguments</h2>")[1].split("<h2>Traceback</h2>")[0]
    assert len(args) < 4 * CUT_CHARS + 2_000  # two cut values, not 1 MB of them
    links = re.findall(r'href="([^"]+/value\?part=[^"]+)"', page)
    assert len(links) == 2 and all("hx-get" in page for _ in links)
    full = client.get(html.unescape(links[0]), headers={"HX-Request": "true"})
    assert full.status_code == 200 and "x" * 20_000 in full.get_data(as_text=True) and "<html" not in full.get_data(as_text=True)
    bounded = client.get(html.unescape(links[1])).get_data(as_text=True)  # without htmx: a page of its own
    assert "<html" in bounded and "y" * (FULL_CHARS - 10) in bounded and "y" * (FULL_CHARS + 1) not in bounded
    assert f"The first {FULL_CHARS:,} characters of a longer value." in bounded
    assert client.get(job_url("big", job.id) + "/value?part=arg:9").status_code == 400
    assert client.get(job_url("big", job.id) + "/value?part=kwarg:nope").status_code == 400
    assert client.get(job_url("big", "missing") + "/value?part=arg:0").status_code == 404


def test_a_long_error_message_and_list_preview_are_cut(client, r, redis_url) -> None:
    job = rq.Queue("loud", connection=r).enqueue(rq_tasks.fail_with, "E" * 30_000)
    run_rq_worker(redis_url, "loud")
    page = client.get(job_url("loud", job.id)).get_data(as_text=True)
    box = page.split('<div class="error-box">')[1].split("</div>")[0]
    assert "E" * CUT_CHARS not in box and "E" * (CUT_CHARS - 10) in box and "part=error" in box
    full = client.get(job_url("loud", job.id) + "/value?part=error", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert full.count("E") >= 3_990  # all the adapter keeps of it (4,000 characters, its middle clipped), not a cut of it
