"""Tasks that the tests' real Huey consumers run, for Huey 2.5 and 3.x alike.

The consumer runs ``huey_consumer huey_tasks.huey`` with this directory on the
path; the instance comes from ``HUEY_TEST_REDIS`` (URL), ``HUEY_TEST_NAME`` and
``HUEY_TEST_CLASS`` (``RedisHuey``, ``PriorityRedisHuey``, ``RedisExpireHuey``,
``PriorityRedisExpireHuey``), so one module serves every test. A test process
makes the same instance with ``build(kind, name, url)``: task names are
``huey_tasks.<function>`` in both.

Run as a script it enqueues with whichever Huey its Python has (the tests use
it to enqueue with Huey 2.5 from its own environment)::

    python huey_tasks.py enqueue '[["add", [1, 2], {}, {"delay": 60}]]'   # prints the ids, one a line
"""

from __future__ import annotations

import json
import os
import sys
import time

import huey as huey_lib
from huey.utils import normalize_time

DEFAULT_URL = f"redis://127.0.0.1:{os.environ.get('QW_TEST_REDIS_PORT', '6379')}/12"


class Point:
    """An argument of a class only this module defines: it pickles as ``huey_tasks.Point``."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def build(kind: str = "RedisHuey", name: str = "huey", url: str = DEFAULT_URL, **options):
    """A Huey instance of class ``kind`` with every test task registered on it."""
    instance = getattr(huey_lib, kind)(name, url=url, **options)

    @instance.task()
    def add(a, b):
        return a + b

    @instance.task()
    def fail_unless_exists(path, *args, **kwargs):
        """Fails until the test creates ``path``."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        return f"ran with {args!r} {kwargs!r}"

    @instance.task()
    def fail_with(message):
        raise RuntimeError(message)

    @instance.task(retries=2, retry_delay=1)
    def fail_twice_then_give_up(path):
        """Retried twice, one second apart, then fails for good (unless ``path`` exists)."""
        if not os.path.exists(path):
            raise ValueError(f"gave up on {path}")
        return "ran"

    @instance.task()
    def sum_point(point, scale=1):
        return (point.x + point.y) * scale

    @instance.task()
    def touch(path):
        """Creates ``path``: proof that the task ran."""
        with open(path, "a"):
            pass
        return path

    @instance.task()
    def sleep(seconds):
        time.sleep(seconds)
        return seconds

    instance.test_tasks = {f.task_class.__name__: f for f in
                           (add, fail_unless_exists, fail_with, fail_twice_then_give_up, sum_point, touch, sleep)}  # fmt: skip
    return instance


huey = build(os.environ.get("HUEY_TEST_CLASS", "RedisHuey"), os.environ.get("HUEY_TEST_NAME", "huey"),
             os.environ.get("HUEY_TEST_REDIS", DEFAULT_URL))  # fmt: skip


def enqueue(instance, calls) -> list[str]:
    """Enqueue ``[(task, args, kwargs, options)]`` as Huey's own ``enqueue`` does: options ``delay``
    (seconds: the eta goes into the message, and a consumer moves it to the schedule),
    ``priority`` and ``id``. An argument ``{"point": [x, y]}`` is a ``Point``. Returns the ids."""
    ids = []
    for call in calls:
        name, args, kwargs, options = (list(call) + [{}, {}])[:4]
        args = tuple(Point(*a["point"]) if isinstance(a, dict) and "point" in a else a for a in args)
        eta = normalize_time(None, options["delay"], instance.utc) if "delay" in options else None
        task = instance.test_tasks[name].task_class(args, kwargs, id=options.get("id"), eta=eta,
                                                    priority=options.get("priority"))  # fmt: skip
        ids.append(instance.enqueue(task).id)
    return ids


if __name__ == "__main__":
    if sys.argv[1:2] == ["enqueue"]:
        import huey_tasks  # this file as the module the consumer imports: task names huey_tasks.<function>

        print("\n".join(huey_tasks.enqueue(huey_tasks.huey, json.loads(sys.argv[2]))))
    else:
        sys.exit(f"usage: {sys.argv[0]} enqueue CALLS_JSON")
