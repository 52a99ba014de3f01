"""Numbers an on-call engineer acts on, checked against what the library itself reports
at the moments they are hard: just after a dashboard restart, with tasks held for an
ETA, after a ``kill -9`` of a worker (issue 15)."""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.error
import urllib.request

import pytest
import redis
from celery_app import RESULTS, producer, start_worker, stop
from conftest import REDIS_HOST, REDIS_PORT, get_json, serve_queuewatch, wait_for


def failed_count(base: str, path: str) -> int | None:
    """The queue's failed count in the API; None while the dashboard does not know the queue yet."""
    try:
        return get_json(base + f"/api/v1/queues/{path}")["failed"]  # type: ignore[index]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def put_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def celery_held(broker: str) -> tuple[int, int]:
    """(active, scheduled) tasks, as ``celery inspect`` reports them."""
    with producer(broker) as app:
        inspect = app.control.inspect(timeout=2)
        active, scheduled = inspect.active() or {}, inspect.scheduled() or {}
    return sum(len(v) for v in active.values()), sum(len(v) for v in scheduled.values())


@pytest.mark.redis_db(14)
@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
def test_celery_tasks_held_for_a_countdown_are_scheduled_not_in_progress(broker_kind, r, redis_url, tmp_path) -> None:
    """``apply_async(countdown=3600)`` ×4: the worker reserves them and waits. ``inspect active``
    is empty and ``inspect scheduled`` lists 4: the queue says In progress 0, Scheduled 4."""
    from test_amqp_adapter import new_vhost

    results = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    results.flushdb()
    with contextlib.ExitStack() as stack:
        if broker_kind == "redis":
            broker, args = redis_url, ("--redis", redis_url, "--rabbitmq", "none", "--celery-results", RESULTS)
        else:
            broker = stack.enter_context(new_vhost("held"))
            args = ("--redis", "none", "--rabbitmq", broker, "--celery-results", f"rabbitmq={RESULTS}")
        queue = "reports.later"
        worker = start_worker(broker, [queue], "holder", pool="threads")
        stack.callback(stop, worker, signal.SIGKILL)
        with producer(broker) as app:
            for i in range(4):
                app.send_task("celery_app.add", (i, i), queue=queue, countdown=3600)
            running = app.send_task("celery_app.sleep", (600,), queue=queue).id  # one really runs
        wait_for(lambda: celery_held(broker) == (1, 4), 30, what="the worker to hold 4 and run 1")
        base = stack.enter_context(serve_queuewatch(tmp_path, *args, "--poll", "1"))
        path = f"{broker_kind}/celery/reports.later"

        def counts() -> tuple:
            try:
                q = get_json(base + f"/api/v1/queues/{path}")
            except urllib.error.HTTPError:
                return ()
            return q["depth"], q["in_progress"], q["scheduled"]  # type: ignore[index]

        wait_for(lambda: counts() == (0, 1, 4), 40, what=f"in progress 1, scheduled 4 (have {counts()})")
        assert celery_held(broker) == (1, 4)
        # The dashboard started after the task did (no task-started event): the worker's answer names it.
        [worker] = get_json(base + "/api/v1/workers?system=celery")["workers"]  # type: ignore[index]
        assert (worker["state"], worker["current_job"], worker["queues"]) == ("busy", running, [queue])
    results.flushdb()
    results.close()
