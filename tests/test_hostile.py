"""Hostile data renders as text: script tags, attribute breakers, javascript:
URLs, template syntax, control characters, non-UTF-8 bytes and megabyte values
in job arguments, exception messages, queue and worker names, through real RQ
jobs and workers, on every page and API answer — escaped, and never a 500."""

from __future__ import annotations

import warnings
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import run_rq_worker

pytestmark = pytest.mark.redis_db(3)

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)' x='",
    "javascript:alert(1)",
    "</textarea></pre><svg onload=alert(1)>",
    "{{ 7*7 }}{% raw %}",
    "\x00\x1b[31m\u202e\ufeff",
]
MEGABYTE = "<script>" * (1024 * 1024 // 8)
BAD_BYTES = b"\xff\xfe<script>alert(1)</script>\x80"


class Markup(HTMLParser):
    """Every element and attribute a browser would build from the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "svg", "iframe", "object", "embed"):
            self.problems.append(f"<{tag}> element")
        if tag == "script" and not dict(attrs).get("src"):
            self.problems.append("inline <script>")
        for name, value in attrs:
            if name.startswith("on") or name in ("x", "srcdoc"):
                self.problems.append(f"attribute {name}={value!r} on <{tag}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"{name}={value!r}")


def markup_problems(html: str) -> list[str]:
    parser = Markup()
    parser.feed(html)
    return parser.problems


@pytest.fixture
def hostile_data(r, redis_url, tmp_path) -> None:
    """Real RQ queues, failed jobs and workers whose every visible field is hostile."""
    queues = [rq.Queue(f"q{i}-{text}", connection=r) for i, text in enumerate(HOSTILE)]
    for queue, text in zip(queues, HOSTILE):
        queue.enqueue(rq_tasks.fail_with, text, description=text)
        queue.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), text, BAD_BYTES, **{"k": text, "x" * 3: text.encode()})
    # A real RQ worker, in this process: a name with a NUL byte cannot go on a command line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rq.SimpleWorker(queues, connection=r, name="hostile-runner").work(burst=True)
    for i, (queue, text) in enumerate(zip(queues, HOSTILE)):
        queue.enqueue(rq_tasks.add, text, text)  # stays waiting
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CLIENT SETNAME refuses such a name; RQ says so and goes on
            worker = rq.Worker([queue], connection=r, name=f"w{i}-{text}")
        worker.register_birth()
    big = rq.Queue("big-" + "<b>" * 5000, connection=r)
    big.enqueue(rq_tasks.fail_with, MEGABYTE)
    big.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), MEGABYTE, MEGABYTE.encode())
    run_rq_worker(redis_url, big.name)
    # Names and fields that are not UTF-8 at all, written the way a foreign client could.
    r.sadd("rq:queues", b"rq:queue:raw-\xff<script>")
    r.rpush(b"rq:queue:raw-\xff<script>", b"raw-job")
    r.hset(b"rq:job:raw-job", mapping={b"status": b"queued", b"origin": b"raw-\xff<script>", b"description": BAD_BYTES,
                                        b"data": BAD_BYTES, b"created_at": b"\xff"})  # fmt: skip
    r.sadd("rq:workers", b"rq:worker:raw-\xfe<img src=x>")
    r.hset(b"rq:worker:raw-\xfe<img src=x>", mapping={b"queues": b"raw-\xff<script>", b"state": BAD_BYTES,
                                                       b"last_heartbeat": b"\xff", b"hostname": BAD_BYTES})  # fmt: skip


def crawl(client) -> dict[str, tuple[int, str]]:
    """Every page and API answer reachable from the queue and job lists."""
    urls = ["/", "/workers", "/audit", "/alerts", "/api/v1/backends", "/api/v1/queues", "/api/v1/workers", "/metrics",
            "/?fragment=1", "/api/v1/history"]  # fmt: skip
    queues = client.get("/api/v1/queues").get_json()["queues"]
    assert len(queues) >= len(HOSTILE) + 2
    for q in queues:
        path = f"{q['backend']}/{q['system']}/{quote(q['name'], safe='')}"
        urls += [f"/queues/{path}", f"/queues/{path}?fragment=failed", f"/queues/{path}?fragment=counts",
                 f"/api/v1/queues/{path}", f"/api/v1/queues/{path}/failed", f"/api/v1/queues/{path}/history"]  # fmt: skip
        failed = client.get(f"/api/v1/queues/{path}/failed")
        for job in (failed.get_json() or {}).get("jobs", []):
            urls += [f"/queues/{path}/jobs/{quote(job['id'], safe='')}", f"/api/v1/queues/{path}/jobs/{quote(job['id'], safe='')}"]
    answers = {}
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            answer = client.get(url, headers=headers)
            answers[f"{url} {headers}"] = (answer.status_code, answer.get_data(as_text=True))
    return answers


def test_hostile_strings_render_escaped_on_every_page_and_nothing_fails(client, hostile_data) -> None:
    answers = crawl(client)
    assert len(answers) > 60
    for where, (status, body) in answers.items():
        assert status < 500, (where, body[:500])
        if not where.split()[0].startswith(("/api/", "/metrics")):
            assert markup_problems(body) == [], where
            assert "<script>alert" not in body and "onerror=alert(1)>" not in body, where
    pages = "".join(body for where, (_, body) in answers.items() if not where.startswith("/api/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages  # it is shown, as text
    assert "{{ 7*7 }}" in pages and "49" not in pages.split("{{ 7*7 }}")[0][-5:]


def test_megabyte_values_are_shown_cut_short(client, hostile_data) -> None:
    big = next(q for q in client.get("/api/v1/queues").get_json()["queues"] if q["name"].startswith("big-"))
    path = f"redis/rq/{quote(big['name'], safe='')}"
    for job in client.get(f"/api/v1/queues/{path}/failed").get_json()["jobs"]:
        page = client.get(f"/queues/{path}/jobs/{quote(job['id'], safe='')}")
        assert page.status_code == 200
        # The megabyte value is cut; what is left is mostly the 15,000-character queue name, escaped in the
        # breadcrumbs and percent-encoded in each action's and "show all" link (about 40 KB each).
        assert len(page.get_data()) < 800_000 and markup_problems(page.get_data(as_text=True)) == []
        assert MEGABYTE[:100_000] not in page.get_data(as_text=True)


def test_the_api_returns_hostile_strings_as_json_strings(client, hostile_data) -> None:
    names = {q["name"] for q in client.get("/api/v1/queues").get_json()["queues"]}
    assert {f"q{i}-{text}" for i, text in enumerate(HOSTILE)} <= names
    answer = client.get("/api/v1/queues")
    assert answer.mimetype == "application/json" and answer.headers["X-Content-Type-Options"] == "nosniff"


# -- Huey: pickles that would run code, bombs and huge values, in every Huey key -------

HUEY_PWNED = "/tmp/queuewatch-huey-pwned"


class _RunsCode:
    """Pickles as GLOBAL os.system + REDUCE: unpickling it would create HUEY_PWNED."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, (f"touch {HUEY_PWNED}",))


def _huey_message(args_pickle: bytes, task_id: str) -> bytes:
    """A Huey Message (protocol 2, GLOBAL + NEWOBJ) whose args are the given pickle fragment."""
    text = lambda s: b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()  # noqa: E731
    return (b"\x80\x02chuey.registry\nMessage\n(" + text(task_id) + text("huey_tasks.<script>alert(1)</script>")
            + b"NNNN" + args_pickle + b"}NNNNt\x81.")  # fmt: skip


def _memo_bomb(levels: int = 200) -> bytes:
    """Lists that each hold the previous one twice: 2**levels elements once expanded."""
    out = b"]q\x00"
    for i in range(1, levels):
        out += b"(h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"lq" + bytes([i])
    return out


@pytest.fixture
def huey_hostile(r) -> None:
    """A Huey instance whose queue, schedule and result store hold hostile payloads."""
    import gzip
    import os
    import pickle

    import huey.registry
    import huey.utils

    if os.path.exists(HUEY_PWNED):
        os.remove(HUEY_PWNED)
    runs_code = pickle.dumps(_RunsCode(), 2)[2:-1]  # the GLOBAL os.system … REDUCE fragment
    huge = pickle.dumps(huey.registry.Message("huge", "huey_tasks.add", None, 0, 0, None, ("<script>" * 200_000,), {},
                                              None, None, None, None), 5)  # fmt: skip
    members = [
        _huey_message(b"(" + runs_code + b"t", "reduce-args"),
        pickle.dumps(_RunsCode(), 5),  # a bare REDUCE, no message at all
        _huey_message(b"(" + _memo_bomb() + b"t", "memo-bomb"),
        gzip.compress(b"\x80\x05" + b"(" * 50_000_000, 9),  # a gzip bomb: 50 MB of MARKs
        huge,
        BAD_BYTES,
    ]
    r.lpush("huey.redis.hostile", *members)
    r.zadd("huey.schedule.hostile", {m: 1e10 + n for n, m in enumerate(members)})
    error = lambda **meta: pickle.dumps(huey.utils.Error({"error": "x", "retries": 0, "traceback": "", "task_id": "t"} | meta), 5)  # noqa: E731
    r.hset("huey.results.hostile", mapping={
        "err-reduce": error(error=_RunsCode()),
        "err-big": error(error="<script>alert(1)</script>", traceback="Traceback (most recent call last):\n" + MEGABYTE + "\nValueError: <img src=x onerror=alert(1)>"),
        "err-gzip-bomb": gzip.compress(error(traceback="a" * 60_000_000), 9),
        "err-memo": b"\x80\x02chuey.utils\nError\n(}X\x05\x00\x00\x00error" + _memo_bomb() + b"st\x81.",
        "r:revoked-<b>": b"\x80\x02" + runs_code + b".",
        "not-error": BAD_BYTES,
    })  # fmt: skip


def test_hostile_huey_payloads_are_shown_as_data_and_never_run(client, huey_hostile) -> None:
    import os
    import time

    started = time.monotonic()
    client.get("/api/v1/queues")  # the backend's probe finds Huey
    assert client.application.extensions["queuewatch.monitor"].adapter("redis", "huey").settle()
    path = "redis/huey/hostile"
    urls = [f"/queues/{path}", f"/api/v1/queues/{path}", f"/api/v1/queues/{path}/failed"]
    urls += [f"/api/v1/queues/{path}/jobs?state={s}" for s in ("waiting", "scheduled", "failed", "canceled")]
    urls += [f"/api/v1/queues/{path}/jobs/{quote(i, safe='')}" for i in ("reduce-args", "memo-bomb", "huge", "err-big",
                                                                        "err-reduce", "err-gzip-bomb", "err-memo")]  # fmt: skip
    urls += [f"/queues/{path}/jobs/{quote(i, safe='')}" for i in ("reduce-args", "err-big", "err-gzip-bomb")]
    for url in urls:
        answer = client.get(url)
        assert answer.status_code < 500, (url, answer.get_data(as_text=True)[:500])
        assert len(answer.get_data()) < 2_000_000, url
        if not url.startswith("/api/"):
            assert markup_problems(answer.get_data(as_text=True)) == [], url
    waiting = client.get(f"/api/v1/queues/{path}/jobs?state=waiting").get_json()
    assert waiting["total"] == 6 and any(j["id"] == "reduce-args" for j in waiting["jobs"])
    assert not os.path.exists(HUEY_PWNED)  # nothing was ever unpickled
    assert time.monotonic() - started < 60
