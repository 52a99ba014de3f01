"""Failure triage over real RQ data: filters, groups, and bulk operations that
count first, run in the background, can be cancelled, and lose nothing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import rq
import rq_tasks
from conftest import csrf_token, run_rq_worker
from rq.job import Job

from queuewatch.failures import operations as bulk
from queuewatch.failures.fingerprint import fingerprint
from queuewatch.failures.triage import Filter, FilterError, scan

pytestmark = pytest.mark.redis_db(9)


def q_path(name: str) -> str:
    return f"redis/rq/{quote(name, safe='')}"


def fail_two_ways(r, redis_url, queue: str, flag, missing: int, broken: int) -> tuple[list[str], list[str]]:
    """Real failures of two causes: FileNotFoundError (fixed by creating ``flag``) and RuntimeError."""
    q = rq.Queue(queue, connection=r)
    missing_ids = [q.enqueue(rq_tasks.fail_unless_exists, str(flag), i).id for i in range(missing)]
    broken_ids = [q.enqueue(rq_tasks.fail_with, f"card {4000 + i} declined for order 'A-{i}'").id for i in range(broken)]
    run_rq_worker(redis_url, queue)
    return missing_ids, broken_ids


def group_rows(html: str) -> dict[str, tuple[int, str]]:
    """The groups table: fingerprint → (count, the row's HTML)."""
    rows = {}
    for part in html.split('<tr data-fingerprint="')[1:]:
        fp, rest = part.split('"', 1)
        rows[fp] = (int(re.search(r'<td class="num">(?:≥ )?([\d,]+)</td>', rest).group(1).replace(",", "")), rest.split("</tr>")[0])
    return rows


def run_operation(app) -> None:
    """What the background runner does, here in the test's thread: work until nothing is left."""
    runner = app.extensions["queuewatch.runner"]
    while runner.step():
        pass


# -- filters, pure ----------------------------------------------------------------


def test_a_filter_round_trips_through_its_url_and_rejects_nonsense() -> None:
    flt = Filter.from_args({"function": "billing", "exception": "Timeout", "q": "order 7", "since": "2026-11-21T06:00",
                            "until": "2026-11-21T07:00:00Z", "group": "0123456789abcdef"})  # fmt: skip
    assert flt.active and flt.since == datetime(2026, 11, 21, 6, tzinfo=timezone.utc)
    assert Filter.from_args(flt.args()) == flt
    assert not Filter.from_args({}).active and Filter.from_args({}).args() == {}
    for bad in ({"since": "yesterday"}, {"group": "<script>"}, {"q": "x" * 201},
                {"since": "2026-11-21T07:00", "until": "2026-11-21T06:00"}):  # fmt: skip
        with pytest.raises(FilterError):
            Filter.from_args(bad)


# -- filters and groups on real failures -------------------------------------------------


def test_filters_find_jobs_by_function_exception_text_and_time(app, r, redis_url, tmp_path) -> None:
    missing, broken = fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 3, 2)
    adapter = app.extensions["queuewatch.monitor"].adapter("redis", "rq")

    def ids(**args: str) -> set[str]:
        found = scan(adapter, "triage", Filter.from_args(args), want=100)
        assert found.complete and found.examined == 5 and found.total == 5
        return {job.id for job in found.rows}

    assert ids(function="fail_unless") == set(missing)
    assert ids(exception="runtimeerror") == set(broken)
    assert ids(q="A-1") == {broken[1]}
    assert ids(q=missing[0]) == {missing[0]}
    assert ids(since=(datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()) == set(missing + broken)
    assert ids(until=(datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()) == set()


def test_a_search_that_runs_out_of_budget_says_it_is_partial_and_where_to_go_on(app, r, redis_url, tmp_path) -> None:
    fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 3, 2)
    adapter = app.extensions["queuewatch.monitor"].adapter("redis", "rq")
    adapter.walk_page = 2  # pages of two, and no time: one page per request
    flt = Filter.from_args({"q": "declined"})
    first = scan(adapter, "triage", flt, want=50, budget=0)
    assert first.partial and first.examined == 2 and first.next_cursor
    rest = scan(adapter, "triage", flt, want=50, cursor=first.next_cursor)
    assert rest.complete and first.examined + rest.examined == 5
    assert len(first.rows) + len(rest.rows) == 2
    # Every job matches: the first page of two is enough for a list of one, and the rest is not read.
    page = app.test_client().get(f"/queues/{q_path('triage')}?function=fail&limit=1").get_data(as_text=True)
    assert "2 matching failed jobs among 2 examined of 5" in page and "Partial:" in page and "search further" in page


def test_the_queue_page_filters_by_url_and_groups_by_cause(client, r, redis_url, tmp_path) -> None:
    missing, broken = fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 3, 2)
    page = client.get(f"/queues/{q_path('triage')}?exception=RuntimeError").get_data(as_text=True)
    assert all(f'value="{i}"' in page for i in broken) and not any(f'value="{i}"' in page for i in missing)
    assert "2 matching failed jobs among 5 examined of 5" in page and "That is every match" in page
    assert 'name="exception" value="RuntimeError"' in page  # the form shows the filter the URL holds
    groups = client.get(f"/queues/{q_path('triage')}/groups", headers={"HX-Request": "true"}).get_data(as_text=True)
    # Two causes: the card numbers and order ids are masked, so the two RuntimeErrors are one group.
    rows = group_rows(groups)
    assert sorted(count for count, _ in rows.values()) == [2, 3]
    [declined] = [fp for fp, (count, text) in rows.items() if "card &lt;n&gt; declined for order &#39;&lt;str&gt;&#39;" in text]
    assert rows[declined][0] == 2 and "RuntimeError" in rows[declined][1]
    assert "Grouped 5 failed jobs of 5" in groups and "Partial" not in groups
    everywhere = client.get("/failures").get_data(as_text=True)
    assert group_rows(everywhere)[declined][0] == 2 and "triage" in everywhere
    group_page = client.get(f"/queues/{q_path('triage')}?group={declined}").get_data(as_text=True)
    assert all(f'value="{i}"' in group_page for i in broken) and not any(f'value="{i}"' in group_page for i in missing)
    assert client.get(f"/queues/{q_path('triage')}?since=soon").status_code == 400
    assert client.get("/failures?group=nope").status_code == 400


def test_html_in_a_failure_message_is_shown_as_text_in_groups(client, r, redis_url) -> None:
    q = rq.Queue("hostile", connection=r)
    q.enqueue(rq_tasks.fail_with, "<img src=x onerror=alert(1)> failed")
    run_rq_worker(redis_url, "hostile")
    groups = client.get(f"/queues/{q_path('hostile')}/groups", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<img src=x" not in groups and "&lt;img src=x onerror=alert(&lt;n&gt;)&gt; failed" in groups


# -- bulk operations ---------------------------------------------------------------------


def test_a_group_requeue_counts_asks_for_the_exact_number_and_its_jobs_run(app, client, r, redis_url, tmp_path) -> None:
    flag = tmp_path / "flag"
    missing, broken = fail_two_ways(r, redis_url, "triage", flag, 3, 2)
    group = fingerprint(*(lambda j: (j.function, j.error_type, j.error_message))(
        app.extensions["queuewatch.monitor"].adapter("redis", "rq").job("triage", missing[0])))
    csrf = csrf_token(client)
    form = {"csrf_token": csrf, "action": "requeue", "backend": "redis", "system": "rq", "queue": "triage", "group": group}
    started = client.post("/operations", data=form)
    assert started.status_code == 303
    op_url = started.headers["Location"]
    assert client.post("/operations", data=form).headers["Location"] == op_url  # a double click: the same operation
    run_operation(app)  # counting
    page = client.get(op_url).get_data(as_text=True)
    assert "Exactly 3 jobs" in page and 'name="total" value="3"' in page
    assert "1 active</span>" in client.get("/workers").get_data(as_text=True)  # every page's navigation shows it
    assert all(status(r, i) == "failed" for i in missing)  # counting changed nothing
    op_id = op_url.rsplit("/", 1)[1]
    assert client.post(f"{op_url}/confirm", data={"csrf_token": csrf, "total": "4"}).status_code == 409  # not the count shown
    assert client.post(f"{op_url}/confirm", data={"csrf_token": csrf, "total": "3"}).status_code == 303
    assert client.post(f"{op_url}/confirm", data={"csrf_token": csrf, "total": "3"}).status_code == 303  # double click
    run_operation(app)
    answer = client.get(f"/api/v1/operations/{op_id}").get_json()
    assert (answer["state"], answer["total"], answer["affected"], answer["skipped"]) == ("done", 3, 3, 0)
    assert "Done: 3 of 3 requeued" in client.get(op_url).get_data(as_text=True)
    flag.touch()
    run_rq_worker(redis_url, "triage")
    assert [status(r, i) for i in missing] == ["finished"] * 3
    assert [status(r, i) for i in broken] == ["failed"] * 2
    audit = [e["action"] for e in client.get("/api/v1/audit").get_json()["entries"]]
    assert {"requeue (bulk): count", "requeue (bulk): start", "requeue (bulk): done"} <= set(audit)


def status(r, job_id: str) -> str:
    return Job.fetch(job_id, connection=r).get_status()


def test_cancelling_stops_the_operation_and_leaves_every_job_requeued_or_still_failed(app, r, redis_url, tmp_path) -> None:
    ids = [i for part in fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 6, 4) for i in part]
    ops = app.extensions["queuewatch.operations"]
    ops.chunk = 2
    op = ops.create("requeue", [("redis", "rq", "triage")], Filter(), "tester")
    run_operation(app)
    assert ops.get(op.id).state == "ready" and ops.get(op.id).total == 10 and ops.get(op.id).chunks == 5
    ops.confirm(op.id, 10, "tester")
    runner = app.extensions["queuewatch.runner"]
    runner.on_chunk = lambda current: ops.cancel(current.id, "canceller") if current.done_chunks == 2 else None
    run_operation(app)
    done = ops.get(op.id)
    assert (done.state, done.processed, done.affected, done.ended_by) == ("cancelled", 4, 4, "canceller")
    waiting = {j.decode() for j in r.lrange("rq:queue:triage", 0, -1)}
    failed = {j.decode() for j in r.zrange("rq:failed:triage", 0, -1)}
    assert len(waiting) == 4 and waiting | failed == set(ids) and not waiting & failed
    assert all(status(r, i) == ("queued" if i in waiting else "failed") for i in ids)


def test_an_operation_waiting_for_confirmation_can_be_discarded_and_changes_nothing(app, r, redis_url, tmp_path) -> None:
    fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 2, 0)
    ops = app.extensions["queuewatch.operations"]
    op = ops.create("delete", [("redis", "rq", "triage")], Filter(), "tester")
    run_operation(app)
    assert ops.cancel(op.id, "tester").state == "cancelled"
    with pytest.raises(bulk.OperationError):
        ops.confirm(op.id, 2, "tester")
    assert r.zcard("rq:failed:triage") == 2


def test_the_operations_api_counts_confirms_and_reports(client, app, r, redis_url, tmp_path) -> None:
    fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 1, 2)
    answer = client.post("/api/v1/operations", json={"action": "delete", "backend": "redis", "system": "rq",
                                                     "queue": "triage", "filter": {"exception": "RuntimeError"}})  # fmt: skip
    assert answer.status_code == 202
    op = answer.get_json()
    assert op["state"] == "counting" and op["filter"] == {"exception": "RuntimeError"}
    run_operation(app)
    assert client.get(f"/api/v1/operations/{op['id']}").get_json()["total"] == 2
    assert client.post(f"/api/v1/operations/{op['id']}/confirm", json={"total": 2}).status_code == 200
    run_operation(app)
    assert client.get(f"/api/v1/operations/{op['id']}").get_json()["affected"] == 2
    assert r.zcard("rq:failed:triage") == 1
    assert client.post("/api/v1/operations", json={"action": "explode", "backend": "redis", "system": "rq",
                                                   "queue": "triage"}).status_code == 400  # fmt: skip
    assert client.post("/api/v1/operations", json={"action": "requeue", "backend": "nope", "system": "rq",
                                                   "queue": "triage"}).status_code == 404  # fmt: skip
    assert client.get("/api/v1/operations/0000").status_code == 404
    assert client.get("/api/v1/operations/0000").get_json()["error"]["code"] == "not_found"  # JSON under /api/
    assert "Not found" in client.get("/operations/0000").get_data(as_text=True)  # the error page elsewhere
    assert client.get("/api/v1/failures/groups?since=nope").get_json()["error"]["code"] == "bad_request"
    assert client.post(f"/api/v1/operations/{op['id']}/confirm", json={"total": "2"}).status_code == 400


def test_the_api_filters_failed_jobs_and_groups_them(client, r, redis_url, tmp_path) -> None:
    missing, broken = fail_two_ways(r, redis_url, "triage", tmp_path / "flag", 2, 3)
    found = client.get(f"/api/v1/queues/{q_path('triage')}/failed?exception=RuntimeError&limit=10").get_json()
    assert sorted(j["id"] for j in found["jobs"]) == sorted(broken)
    assert (found["examined"], found["partial"], found["next_cursor"]) == (5, False, None)
    groups = client.get(f"/api/v1/queues/{q_path('triage')}/groups").get_json()
    assert sorted(g["count"] for g in groups["groups"]) == [2, 3] and groups["partial"] is False
    declined = next(g for g in groups["groups"] if g["exception"] == "RuntimeError")
    assert declined["message_pattern"] == "card <n> declined for order '<str>'"
    assert declined["queues"] == [{"backend": "redis", "system": "rq", "queue": "triage", "count": 3}]
    assert declined["sample"]["id"] in broken
    everywhere = client.get("/api/v1/failures/groups?exception=runtime").get_json()
    assert [g["fingerprint"] for g in everywhere["groups"]] == [declined["fingerprint"]]
    assert client.get("/api/v1/failures/groups?since=nope").status_code == 400
    assert client.get(f"/api/v1/queues/{q_path('triage')}/failed?group=xyz").status_code == 400


# -- grouping across lists, pure (a fake adapter: lists of rows in memory) ---------------


class FakeFailedList:
    """Just enough of an adapter for the walk: ``failed`` pages over rows in memory; ``slow`` seconds per page."""

    walk_page = 2

    def __init__(self, rows: dict[str, list], slow: float = 0.0) -> None:
        self.rows, self.slow = rows, slow

    def failed(self, queue: str, limit: int, cursor: str | None = None):  # type: ignore[no-untyped-def]
        import time

        from queuewatch.adapters.base import Page

        time.sleep(self.slow)
        offset, rows = int(cursor or 0), self.rows[queue]
        end = offset + limit
        return Page(tuple(rows[offset:end]), len(rows), str(end) if end < len(rows) else None)


def row(job_id: str, message: str, minute: int):  # type: ignore[no-untyped-def]
    from queuewatch.adapters.base import FailedJob

    return FailedJob(job_id, "billing.send", "()", "TimeoutError", message, datetime(2026, 11, 21, 6, minute, tzinfo=timezone.utc), 1)


def test_groups_merge_pages_and_queues_and_stop_at_the_budget() -> None:
    from queuewatch.failures.triage import groups

    rows = {"a": [row("a1", "smtp 10.0.0.1 timed out after 30 s", 5), row("a2", "smtp 10.0.0.2 timed out after 31 s", 3),
                  row("a3", "disk full", 4)],
            "b": [row("b1", "smtp 10.0.0.9 timed out after 2 s", 9)]}  # fmt: skip
    fake = FakeFailedList(rows)
    found = groups([(("r", "rq", "a"), fake), (("r", "rq", "b"), fake)], Filter())  # type: ignore[list-item]
    assert found.complete and (found.examined, found.total, found.unread) == (4, 4, 0)
    smtp, disk = found.groups
    assert (smtp.group.count, disk.group.count) == (3, 1)
    assert smtp.queues == ((("r", "rq", "a"), 2), (("r", "rq", "b"), 1))
    assert smtp.group.sample_id == "b1" and smtp.sample_in == ("r", "rq", "b")  # the newest of the group, across lists
    assert (smtp.group.first_seen.minute, smtp.group.last_seen.minute) == (3, 9)
    assert smtp.group.message_pattern == "smtp <ip> timed out after <n> s"
    only_a = groups([(("r", "rq", "a"), fake)], Filter.from_args({"q": "disk"}))  # type: ignore[list-item]
    assert [f.group.count for f in only_a.groups] == [1] and only_a.examined == 3
    slow = FakeFailedList(rows, slow=0.05)
    short = groups([(("r", "rq", "a"), slow), (("r", "rq", "b"), slow)], Filter(), budget=0.01)  # type: ignore[list-item]
    assert short.partial and short.unread == 1 and short.lists == 1 and short.examined == 2  # one page of the first list
