"""The Celery app and tasks the tests' real Celery workers run, and the helpers that
send tasks and run those workers.

A worker (``celery -A celery_app worker``) reads its broker and result backend
from ``QW_CELERY_BROKER`` / ``QW_CELERY_RESULTS`` and ``QW_CELERY_EXTENDED``
("0" turns ``result_extended`` off). The tests send tasks by name through
``producer(broker, results)``: they never import the tasks' code paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import Reject
from kombu import Exchange, Queue

TESTS = Path(__file__).resolve().parent
_PORT = os.environ.get("QW_TEST_REDIS_PORT", "6379")  # conftest.REDIS_PORT
BROKER = f"redis://127.0.0.1:{_PORT}/14"
RESULTS = f"redis://127.0.0.1:{_PORT}/15"


def make_app(broker: str, results: str | None, *, extended: bool = True, dead_letters: str = "", keyprefix: str = "") -> Celery:
    """``dead_letters``: "QUEUE=DLQ,...": queues declared with a dead-letter exchange (RabbitMQ);
    ``keyprefix``: kombu's ``global_keyprefix`` (Redis)."""
    app = Celery("celery_app", broker=broker, backend=results, set_as_current=False)
    app.conf.update(
        result_extended=extended,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_queue_max_priority=10,  # RabbitMQ queues the tests declare take priorities
    )
    if keyprefix:
        app.conf.broker_transport_options = {"global_keyprefix": keyprefix}
    if dead_letters:
        arguments = {name: {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
                     for name, _, dlq in (item.partition("=") for item in dead_letters.split(","))}  # fmt: skip
        app.conf.task_queues = [Queue(name, Exchange(name), routing_key=name, queue_arguments=args)
                                for name, args in arguments.items()]  # fmt: skip
    return app


app = make_app(os.environ.get("QW_CELERY_BROKER", BROKER), os.environ.get("QW_CELERY_RESULTS", RESULTS),
               extended=os.environ.get("QW_CELERY_EXTENDED", "1") != "0",
               dead_letters=os.environ.get("QW_CELERY_DEAD_LETTERS", ""),
               keyprefix=os.environ.get("QW_CELERY_KEYPREFIX", ""))  # fmt: skip
if os.environ.get("QW_CELERY_BEAT"):
    # celery beat with celery-redbeat (its schedule on the broker's Redis): one task every 2 s.
    app.conf.beat_schedule = {"every-2s": {"task": "celery_app.add", "schedule": 2.0, "args": (1, 2)}}
    app.conf.redbeat_redis_url = app.conf.broker_url
    app.conf.beat_max_loop_interval = 1


@app.task(name="celery_app.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="celery_app.fail_unless_exists")
def fail_unless_exists(path: str, n: int, note: str = "") -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    return f"ran {n} {note}"


@app.task(name="celery_app.fail_with")
def fail_with(message: str) -> None:
    raise RuntimeError(message)


@app.task(name="celery_app.reject", acks_late=True)
def reject(n: int) -> None:
    """Dead-letters its message on RabbitMQ (a queue with a dead-letter exchange)."""
    raise Reject(f"rejecting {n}", requeue=False)


@app.task(name="celery_app.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


# -- helpers for the tests --------------------------------------------------------------


@contextlib.contextmanager
def producer(broker: str, results: str | None = RESULTS, **options: Any) -> Iterator[Celery]:
    """A Celery app to send tasks with; its connections are closed afterwards."""
    client = make_app(broker, results, **options)
    try:
        yield client
    finally:
        client.close()


def worker_command(queues: list[str], name: str, *extra: str, pool: str = "solo") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", pool, "-Q", ",".join(queues),
            "-E", "--without-mingle", "--without-gossip", "-n", f"{name}@qw-test", "-l", "warning", *extra]  # fmt: skip


def start_worker(broker: str, queues: list[str], name: str, *, results: str = RESULTS, extended: bool = True,
                 dead_letters: str = "", keyprefix: str = "", log: Path | None = None,
                 pool: str = "solo") -> subprocess.Popen:  # fmt: skip
    """A real ``celery worker`` (solo pool unless ``pool``, events on) consuming ``queues``, in its own
    process group. A solo worker answers ``inspect`` only between tasks: "threads" answers while one runs."""
    env = dict(os.environ, PYTHONPATH=str(TESTS), QW_CELERY_BROKER=broker, QW_CELERY_RESULTS=results,
               QW_CELERY_EXTENDED="1" if extended else "0", QW_CELERY_DEAD_LETTERS=dead_letters,
               QW_CELERY_KEYPREFIX=keyprefix)  # fmt: skip
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(worker_command(queues, name, *(() if pool == "solo" else ("--concurrency", "2")), pool=pool), env=env, cwd=TESTS, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_worker_until(broker: str, queues: list[str], done: Callable[[], bool], *, timeout: float = 60,
                     name: str = "runner", **options: Any) -> None:  # fmt: skip
    """Run a worker until ``done()`` holds, then stop it (warm shutdown). ``options``: start_worker's."""
    proc = start_worker(broker, queues, name, **options)
    try:
        wait_for(done, timeout, what=f"worker on {queues}")
    finally:
        stop(proc)


def result_records(results: Any) -> dict[str, dict]:
    """Every task result in a Redis result backend, by task id."""
    found = {}
    for key in results.scan_iter(match="celery-task-meta-*", count=1000):
        data = results.get(key)
        if data is not None:
            found[key.decode().removeprefix("celery-task-meta-")] = json.loads(data)
    return found


def terminal_count(results: Any) -> int:
    return sum(1 for r in result_records(results).values() if r["status"] in ("SUCCESS", "FAILURE"))


def ran_successfully(results: Any, task_id: str) -> bool:
    """Whether ``task_id``, or the task a requeue made of it (parent_id = task_id), succeeded."""
    records = result_records(results)
    if records.get(task_id, {}).get("status") == "SUCCESS":
        return True
    return any(r.get("parent_id") == task_id and r["status"] == "SUCCESS" for r in records.values())


def wait_for(condition: Callable[[], bool], timeout: float = 30, *, what: str = "condition", step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)
