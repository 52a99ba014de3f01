"""Job functions and worker settings that the tests' real Arq workers run.

Run as ``arq arq_tasks.WorkerSettings --burst`` with this directory on the
path. The Redis URL, the queue and the health-check interval come from
``ARQ_TEST_REDIS``, ``ARQ_TEST_QUEUE`` and ``ARQ_TEST_HEALTH_INTERVAL``, so one
settings object serves every test. Settings are dicts: arq reads a settings
class's own ``__dict__`` only, so a subclass would lose its parent's settings.
"""

import asyncio
import json
import os

import msgpack
from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Retry


class Point:
    """An argument of a class only this module defines: it pickles as ``arq_tasks.Point``."""

    def __init__(self, x, y):
        self.x, self.y = x, y


class Unpicklable(Exception):
    """Pickles, but does not unpickle: ``__init__`` wants two arguments, args holds one."""

    def __init__(self, code, text):
        super().__init__(f"{code}: {text}")


async def add(ctx, a, b):
    return a + b


async def fail_unless_exists(ctx, path, *args, **kwargs):
    """Fails until the test creates ``path``: the first run fails, a requeued run succeeds."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    return f"ran with {args!r} {kwargs!r}"


async def retry_unless_exists(ctx, path):
    """Asks for a retry until ``path`` exists: with max_tries 3, arq gives up on try 4."""
    if not os.path.exists(path):
        raise Retry(defer=0)
    return f"ran on try {ctx['job_try']}"


async def fail_after_retries(ctx, path):
    """Retried twice, then fails for real on try 3, unless ``path`` exists."""
    if os.path.exists(path):
        return "ran"
    if ctx["job_try"] < 3:
        raise Retry()
    raise ValueError(f"gave up on try {ctx['job_try']}")


async def sum_point(ctx, path, point, scale=1):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    return (point.x + point.y) * scale


async def fail_unpicklably(ctx, path):
    if not os.path.exists(path):
        raise Unpicklable(7, "cannot be rebuilt")
    return "ran"


async def fail_with(ctx, message):
    raise RuntimeError(message)


async def sleep(ctx, seconds):
    await asyncio.sleep(seconds)
    return seconds


WorkerSettings = {
    "functions": [add, fail_unless_exists, retry_unless_exists, fail_after_retries, sum_point, fail_unpicklably,
                  fail_with, sleep],
    "redis_settings": RedisSettings.from_dsn(os.environ.get("ARQ_TEST_REDIS", f"redis://127.0.0.1:{os.environ.get('QW_TEST_REDIS_PORT', '6379')}/10")),
    "queue_name": os.environ.get("ARQ_TEST_QUEUE", "arq:queue"),
    "poll_delay": 0.05,
    "max_tries": 3,
    "health_check_interval": float(os.environ.get("ARQ_TEST_HEALTH_INTERVAL", "3600")),
}  # fmt: skip


def msgpack_loads(data):
    return msgpack.unpackb(data, raw=False)


# The msgpack serializer as arq's documentation sets it up.
MsgpackWorkerSettings = {**WorkerSettings, "job_serializer": msgpack.packb, "job_deserializer": msgpack_loads}


def json_dumps(data):
    return json.dumps(data).encode()


JSONWorkerSettings = {**WorkerSettings, "job_serializer": json_dumps, "job_deserializer": json.loads}

# A worker that obeys Job.abort (arq:abort): the control tests stop a running job through it.
AbortWorkerSettings = {**WorkerSettings, "allow_abort_jobs": True}


async def heartbeat(ctx):
    return "beat"


# A worker with a cron job every 5 s (the periodic page and its lateness alert read its runs). arq's
# cron() keeps no result by default (keep_result=0): its runs are then only in-progress locks.
CronWorkerSettings = {**WorkerSettings, "cron_jobs": [cron(heartbeat, second=set(range(0, 60, 5)), keep_result=300)]}
