"""One sampler per deployment, for real: gunicorn workers and dashboard
replicas compete for the lease in the state store; one samples, and another
takes over within two intervals when it dies. RQ data in Redis database 7, the
shared state store in database 8."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import rq
import rq_tasks
from conftest import CommandCounter, REDIS_HOST, REDIS_PORT, get_json, start_queuewatch, wait_for

from queuewatch.snapshots import history
from queuewatch.adapters.store.redis_store import RedisStateStore
from queuewatch.adapters.store.sqlite_store import SQLiteStateStore

pytestmark = pytest.mark.redis_db(7)
STATE_DB = 8
POLL = 1.0
QUEUES = ("emails", "reports")


@contextlib.contextmanager
def dashboard(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`queuewatch serve` in its own process group (so it can be killed whole); yields it and its URL."""
    with start_queuewatch(tmp_path, "--poll", str(POLL), *args) as (base, proc):
        yield proc, base


def wait_for_holder(base: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get_json(base + "/api/v1/sampler")
        if status["holder"]:
            return status
        time.sleep(0.05)
    raise AssertionError("nobody took the sampler lease")


def sample_times(store, queue: str, after: int, before: int) -> list[int]:
    key = history.series_key("redis", "rq", queue)
    return [t for t, _ in store.points("raw", [key], after, before).get(key, [])]


def assert_one_sample_per_interval(store, queue: str, start: int, end: int) -> None:
    """Every interval that began in (start, end) and has ended holds exactly one sample."""
    step = int(POLL * 1000)
    last = end - end % step  # the interval under way at `end` may not be recorded yet
    times = sample_times(store, queue, start, last)
    expected = list(range(start - start % step + step, last, step))
    assert times == expected, f"missing {sorted(set(expected) - set(times))}, extra {sorted(set(times) - set(expected))}"


@pytest.fixture
def queues(r) -> None:
    for name in QUEUES:
        rq.Queue(name, connection=r).enqueue(rq_tasks.add, 1, 2)


@pytest.fixture
def state_redis() -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=STATE_DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def snapshot_reads(counter: CommandCounter) -> int:
    """Snapshots taken: each reads RQ's queue set once."""
    return sum(1 for command in counter.commands if command.startswith("SMEMBERS rq:queues"))


def test_three_gunicorn_workers_take_exactly_one_sample_per_queue_per_interval(tmp_path, queues, redis_url) -> None:
    state = tmp_path / "state.sqlite3"
    with dashboard(tmp_path, "--workers", "3", "--redis", redis_url, "--rabbitmq", "none", "--state", str(state)) as (proc, base):
        holder = wait_for_holder(base)["holder"]
        # the other two workers are up and competing
        wait_for(lambda: len(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()) == 3,
                 what="three gunicorn workers")  # fmt: skip
        start = int(time.time() * 1000)
        with CommandCounter(7) as counter:
            time.sleep(6 * POLL)
        end = int(time.time() * 1000)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 3
        assert get_json(base + "/api/v1/sampler")["holder"] == holder
        # The backend was read once per interval, not once per worker.
        assert 5 <= snapshot_reads(counter) <= 7
    store = SQLiteStateStore(state)
    for queue in QUEUES:
        assert_one_sample_per_interval(store, queue, start, end)
    up = store.points("raw", [history.series_key("redis")], start, end)[history.series_key("redis")]
    assert all(history.decode(t, p).value(0) == 1 for t, p in up)


def test_replicas_on_one_redis_store_elect_one_sampler_and_fail_over_when_it_is_killed(
    tmp_path, queues, redis_url, state_redis
) -> None:
    state_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{STATE_DB}"
    args = ("--redis", redis_url, "--rabbitmq", "none", "--state", state_url)
    with dashboard(tmp_path, *args) as (first, first_url), dashboard(tmp_path, *args) as (second, second_url):
        status = wait_for_holder(first_url)
        replicas = {True: (first, second_url), False: (second, first_url)}
        holder_proc, survivor_url = replicas[get_json(first_url + "/api/v1/sampler")["this_process"]]
        assert get_json(survivor_url + "/api/v1/sampler")["this_process"] is False
        start = int(time.time() * 1000)
        with CommandCounter(7) as counter:
            time.sleep(5 * POLL)
        assert 4 <= snapshot_reads(counter) <= 6  # one sampler for the two replicas

        os.killpg(holder_proc.pid, signal.SIGKILL)
        killed = time.time()
        holder_proc.wait()
        while not get_json(survivor_url + "/api/v1/sampler")["this_process"]:
            assert time.time() - killed < 3 * POLL, "the surviving replica did not take the lease over"
            time.sleep(0.02)
        took_over = time.time() - killed
        assert took_over <= 2 * POLL
        time.sleep(3 * POLL)
        end = int(time.time() * 1000)
        assert get_json(survivor_url + "/api/v1/sampler")["holder"] != status["holder"]

    store = RedisStateStore(client=state_redis)
    for queue in QUEUES:
        times = sample_times(store, queue, start, end)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # One sample per interval throughout; the handover costs at most one interval.
        assert set(gaps) <= {1000, 2000} and gaps.count(2000) <= 1, gaps
        assert times[-1] >= end - 2000


def test_a_state_url_that_is_neither_a_file_nor_redis_is_refused_at_start(tmp_path) -> None:
    queuewatch = str(Path(sys.executable).with_name("queuewatch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    done = subprocess.run([queuewatch, "serve", "--state", "postgres://db/qw"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "redis://" in done.stderr
    done = subprocess.run([queuewatch, "serve", "--help"], env=env, capture_output=True, text=True, timeout=30)
    assert "--workers" in done.stdout and "PATH_OR_URL" in done.stdout
