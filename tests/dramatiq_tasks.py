"""Actors the tests' real Dramatiq workers run (``dramatiq dramatiq_tasks``), and
``run_worker``, which runs such a worker until a condition holds.

One module serves both brokers; the worker's environment says which:
``QW_DRAMATIQ_BROKER`` ("redis" or "rabbitmq"), ``QW_DRAMATIQ_URL``,
``QW_DRAMATIQ_QUEUES`` (comma-separated: a worker consumes only the queues its
process declared) and ``QW_DRAMATIQ_RECORD`` (a file each successful run
appends its message id to). Imported by a test (no ``QW_DRAMATIQ_URL``), it
sets up a StubBroker and touches no real broker; tests enqueue with their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

TESTS = Path(__file__).resolve().parent


def _broker() -> dramatiq.Broker:
    url = os.environ.get("QW_DRAMATIQ_URL")
    if not url:
        return StubBroker()
    if os.environ.get("QW_DRAMATIQ_BROKER") == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, confirm_delivery=True)
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url)
    broker.add_middleware(CurrentMessage())
    return broker


broker = _broker()
dramatiq.set_broker(broker)
for _queue in filter(None, os.environ.get("QW_DRAMATIQ_QUEUES", "").split(",")):
    broker.declare_queue(_queue)


def _record() -> None:
    """Append the running message's id to the record file: proves it ran, and how often."""
    path = os.environ.get("QW_DRAMATIQ_RECORD")
    if path:
        with open(path, "a") as ran:
            ran.write(CurrentMessage.get_current_message().message_id + "\n")


@dramatiq.actor
def fail_unless_exists(path, *args, **kwargs):
    """Fails until the test creates ``path``: the first run fails, a requeued run succeeds."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    _record()
    return f"ran with {args!r} {kwargs!r}"


@dramatiq.actor
def add(a, b):
    _record()
    return a + b


@dramatiq.actor
def nap(seconds):
    """Keeps a worker busy: its heartbeat and the messages it holds can be watched."""
    time.sleep(seconds)
    _record()


def recorded(path: Path) -> list[str]:
    """Message ids the workers ran successfully, in order."""
    return path.read_text().split() if path.exists() else []


def run_worker(kind: str, url: str, queues: list[str], record: Path, done: Callable[[], bool],
               timeout: float = 90.0) -> None:  # fmt: skip
    """Run a real ``dramatiq`` worker (1 process, 1 thread) until ``done()``, then stop
    it with SIGTERM, as an operator would. Dramatiq workers have no burst mode."""
    env = dict(os.environ, QW_DRAMATIQ_BROKER=kind, QW_DRAMATIQ_URL=url, QW_DRAMATIQ_QUEUES=",".join(queues),
               QW_DRAMATIQ_RECORD=str(record), PYTHONPATH=str(TESTS))  # fmt: skip
    command = [str(Path(sys.executable).with_name("dramatiq")), "dramatiq_tasks", "--processes", "1", "--threads", "1"]
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(command, cwd=TESTS, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not done():
                if worker.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"the Dramatiq worker did not finish its work:\n{log.read().decode()[-4000:]}")
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
