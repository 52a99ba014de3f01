"""Hostile input against every route of the URL map: no 500, no hang, no
redirect elsewhere, no unbounded memory.

The corpus: hostile queue names and job ids (``amb/jobs/x1``, NUL, 300 bytes,
``%``, ``..``, markup), query arguments that once reached ``url_for``
(``backend=x``, ``_external``, ``_scheme``, ``_method``), out-of-range numbers,
bodies nested 100,000 deep, bodies over the limit, and ``next`` values that a
browser would turn into another site. Bombs of every encoding layer go through
a real `queuewatch serve`, whose memory is measured from /proc.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import time
import urllib.error
import warnings
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import csrf_token, run_rq_worker

pytestmark = pytest.mark.redis_db(3)

NAMES = ["amb/jobs/x1", "a/failed", "a/failed/requeue", "a/history", "q" * 300, "nul\x00byte", "100%", "..", "%2F",
         "<script>alert(1)</script>", "é ü 漢字", " ", "a?b=c", "a#b"]  # fmt: skip
QUERIES = ["backend=x&queue=&_method=DELETE", "_external=1&_scheme=javascript", "cursor=%00&limit=-1", "limit=99999999999",
           "since=nope&until=1e309", "minutes=1e309&points=0", "q=" + "x" * 5000, "inspection=../../etc", "fragment=<b>",
           "page=0&per=-5&sort=-name&dir=up", "state=%ff", "function=%00&exception=" + "e" * 300, "group=zz"]  # fmt: skip
DEEP = "[" * 100_000 + "]" * 100_000
EVIL_NEXT = ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "/\r\nLocation: //evil.example",
             "/%0d%0aSet-Cookie:x=1", " /x"]  # fmt: skip


@pytest.fixture
def hostile_queues(r) -> None:
    """Real RQ queues with hostile names, a failed job in each, run by a real RQ worker in this process."""
    queues = [rq.Queue(name, connection=r) for name in NAMES]
    for queue, name in zip(queues, NAMES):
        queue.enqueue(rq_tasks.fail_with, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rq.SimpleWorker(queues, connection=r).work(burst=True)


def fill(rule, value: str) -> str:
    """The rule's path with every variable set to ``value`` (percent-encoded, one segment each)."""
    path = rule.rule
    for name in rule.arguments:
        part = {"backend": "redis", "system": "rq"}.get(name, value)
        path = path.replace(f"<segment:{name}>", quote(part, safe="")).replace(f"<{name}>", quote(part, safe=""))
    return path


def test_every_route_answers_hostile_names_queries_and_bodies_without_a_500(app, client, hostile_queues) -> None:
    token = csrf_token(client)
    seen = 0
    rules = [r for r in app.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        for value in NAMES[:6] + ["nope"]:
            path = fill(rule, value)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for query in (QUERIES if method == "GET" else QUERIES[:2]):
                    started = time.monotonic()
                    if method == "GET":
                        answer = client.get(f"{path}?{query}")
                    else:
                        answer = client.open(f"{path}?{query}", method=method, data={"csrf_token": token, "ids": value,
                                                                                     "next": EVIL_NEXT[seen % len(EVIL_NEXT)]})  # fmt: skip
                    seen += 1
                    assert answer.status_code < 500, (method, path, query, answer.get_data(as_text=True)[:400])
                    assert time.monotonic() - started < 5, (method, path, query)
                    location = as_browser(answer.headers.get("Location", ""))
                    assert not location.startswith("//") and "evil.example" not in location, (method, path, location)
            if "POST" in rule.methods or "PUT" in rule.methods:
                method = "PUT" if "PUT" in rule.methods else "POST"
                deep = client.open(path, method=method, data=DEEP, content_type="application/json")
                assert deep.status_code < 500, (path, deep.get_data(as_text=True)[:300])
                bad = client.open(path, method=method, data=b"\xff\xfe{", content_type="application/json")
                assert bad.status_code < 500, path
    assert seen > 1000


def test_a_queue_named_like_a_route_opens_as_that_queue(client, r, redis_url) -> None:
    queue = rq.Queue("amb/jobs/x1", connection=r)
    job = queue.enqueue(rq_tasks.fail_with, "boom")
    run_rq_worker(redis_url, "amb/jobs/x1")
    page = client.get(f"/queues/redis/rq/{quote('amb/jobs/x1', safe='')}")
    assert page.status_code == 200 and "<h1 class=\"queue-title\">amb/jobs/x1</h1>" in page.get_data(as_text=True)
    api = client.get(f"/api/v1/queues/redis/rq/{quote('amb/jobs/x1', safe='')}/failed").get_json()
    assert [j["id"] for j in api["jobs"]] == [job.id]
    detail = client.get(f"/api/v1/queues/redis/rq/{quote('amb/jobs/x1', safe='')}/jobs/{job.id}").get_json()
    assert detail["queue"] == "amb/jobs/x1"
    # The links the page makes carry the name as one segment.
    assert f"/queues/redis/rq/amb%2Fjobs%2Fx1/jobs/{job.id}" in page.get_data(as_text=True)


def as_browser(location: str) -> str:
    """A Location as a browser reads it: tabs and newlines dropped, backslashes taken for slashes (WHATWG URL)."""
    return location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/").strip()


def test_next_never_leads_to_another_site(client, r) -> None:
    rq.Queue("safe", connection=r).enqueue(rq_tasks.add, 1, 1)
    token = csrf_token(client)
    for target in EVIL_NEXT:
        answer = client.post("/queues/redis/rq/safe/purge", data={"csrf_token": token, "next": target})
        location = as_browser(answer.headers.get("Location", ""))
        assert answer.status_code == 303 and location.startswith("/") and not location.startswith("//"), (target, location)
        assert "evil.example" not in location and "\r" not in location and "\n" not in location, (target, location)
        assert "x=1" not in answer.headers.get("Set-Cookie", ""), target
        login = client.get(f"/login?next={quote(target, safe='')}").get_data(as_text=True)
        assert "evil.example" not in login
        rule = client.post("/queues/redis/rq/safe/alert-rule", data={"csrf_token": token, "next": target, "max_depth": "5"})
        location = as_browser(rule.headers.get("Location", ""))
        assert rule.status_code == 303 and not location.startswith("//") and "evil.example" not in location, (target, location)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def worker_pid(server_pid: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout.split()
    return int(children[0])


def get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def test_bombs_in_every_layer_cost_bounded_memory_and_time(r, redis_url, tmp_path: Path) -> None:
    from conftest import start_queuewatch

    queue = rq.Queue("bombs", connection=r)
    job = queue.enqueue(rq_tasks.fail_with, "boom")
    run_rq_worker(redis_url, "bombs")
    text_bomb = zlib.compress(b"Traceback (most recent call last):\n" + b"x" * (256 * 1024 * 1024) + b"\nRuntimeError: bomb\n", 9)
    r.xadd(f"rq:results:{job.id}", {"type": "2", "exc_string": base64.b64encode(text_bomb)})
    r.hset(f"rq:job:{job.id}", "exc_info", text_bomb)
    big = [queue.enqueue(rq_tasks.add, 1, 1) for _ in range(10)]
    for j in big:  # 10 failed jobs whose data is 50 MB each
        r.hset(f"rq:job:{j.id}", mapping={"data": os.urandom(50 * 1024 * 1024), "status": "failed", "origin": "bombs"})
        r.zadd("rq:failed:bombs", {j.id: time.time() + 3600})
    # Every layer: zlib in base64 in JSON, a msgpack claiming huge lengths, a pickle of 254 KB that is all opcodes.
    layered = base64.b64encode(zlib.compress(json.dumps({"a": "b" * 50_000_000}).encode(), 9))
    pickled = pickle.dumps([[i] for i in range(60_000)], protocol=4)
    for n, data in enumerate([layered, b"\xdd\xff\xff\xff\xff", pickled]):
        extra = queue.enqueue(rq_tasks.add, 1, 1)
        r.hset(f"rq:job:{extra.id}", mapping={"data": data, "status": "failed", "origin": "bombs"})
        r.zadd("rq:failed:bombs", {extra.id: time.time() + 3600 + n})
    with start_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none") as (base, proc):
        worker = worker_pid(proc.pid)
        get(base + "/")
        before = rss_mib(worker)
        for url in ("/queues/redis/rq/bombs", "/api/v1/queues/redis/rq/bombs/failed", f"/queues/redis/rq/bombs/jobs/{job.id}",
                    f"/api/v1/queues/redis/rq/bombs/jobs/{job.id}", f"/queues/redis/rq/bombs/jobs/{big[0].id}"):  # fmt: skip
            status, took = get(base + url)
            assert status == 200 and took < 10, (url, status, took)
        grew = rss_mib(worker) - before
        assert grew < 150, f"the worker grew {grew:.0f} MiB"  # it grew 767 MB on the text bomb alone before
        detail = json.load(urllib.request.urlopen(f"{base}/api/v1/queues/redis/rq/bombs/jobs/{job.id}", timeout=60))
        assert "truncated at 16 MB" in detail["traceback"]  # its end (the exception) is past what is read
        assert len(detail["traceback"]) < 300_000


def test_bodies_over_the_limit_are_refused_before_they_are_read(tmp_path: Path, redis_url) -> None:
    import http.client
    import threading

    from conftest import start_queuewatch

    with start_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none") as (base, proc):
        host, port = base.removeprefix("http://").split(":")
        worker = worker_pid(proc.pid)
        get(base + "/login")
        before = rss_mib(worker)
        answers: list[int] = []

        def big_login() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.putrequest("POST", "/login")
            conn.putheader("Content-Type", "application/x-www-form-urlencoded")
            conn.putheader("Content-Length", str(100 * 1024 * 1024))
            conn.endheaders()
            try:
                conn.send(b"username=x&password=")
                chunk = b"y" * (1024 * 1024)
                for _ in range(100):  # the whole 100 MB, as the attack sent it
                    conn.send(chunk)
            except OSError:
                pass  # the server answered and closed without reading the rest: what should happen
            try:
                answers.append(conn.getresponse().status)
            except OSError as exc:
                answers.append(-1)
                print("no answer:", exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=big_login) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert answers == [413] * 8
        assert rss_mib(worker) - before < 50  # it was +833 MB for 8 such bodies before
