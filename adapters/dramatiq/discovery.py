"""Dramatiq's queue names on Redis, found by an incremental SCAN of its namespace.

Dramatiq keeps no registry of queues: a queue is its keys (``NS:Q``,
``NS:Q.msgs``, ``NS:Q.DQ``, ``NS:Q.XQ`` …, ``NS:__acks__.WORKER.Q``), which
vanish when it is empty. ``QueueDiscovery`` walks them a budget at a time and
remembers every name it met for the life of the process.
"""

from __future__ import annotations

import threading
import time

import redis

SUFFIXES = (".XQ.msgs", ".DQ.msgs", ".msgs", ".XQ", ".DQ")
MAX_QUEUES = 10_000  # names kept at most: a namespace full of stray keys costs bounded memory


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def queue_of(key: str, prefix: str) -> str | None:
    """The queue a Dramatiq key belongs to, or None ("dramatiq:a.b.XQ.msgs" -> "a.b")."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    if rest.startswith("__acks__."):
        _worker, _, rest = rest[len("__acks__.") :].partition(".")
        return rest.removesuffix(".DQ") or None
    if rest.startswith("__"):
        return None
    for suffix in SUFFIXES:
        if rest.endswith(suffix):
            return rest[: -len(suffix)] or None
    return rest or None


class QueueDiscovery:
    """Queue names found by an incremental SCAN that resumes where it stopped.

    A name once seen stays known for the life of the process: Dramatiq's keys
    vanish when a queue is empty, and a queue should not vanish from the page.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._names: dict[str, None] = {}
        self.over_cap = False  # more queue names were met than are kept
        self.complete = False  # one full pass has finished
        self._cursor = 0
        self._scanning = threading.Lock()
        self._guard = threading.Lock()

    def names(self) -> list[str]:
        with self._guard:
            return list(self._names)

    def advance(self, max_keys: int, max_seconds: float) -> None:
        if not self._scanning.acquire(blocking=False):
            return  # another thread is scanning: its answer is as good
        try:
            deadline, walked = time.monotonic() + max_seconds, 0
            while walked < max_keys and time.monotonic() < deadline:
                self._cursor, keys = self.client.scan(self._cursor, match=_glob_escape(self.prefix) + "*", count=1000)
                walked += 1000
                found = (queue_of(_text(key), self.prefix) for key in keys)
                with self._guard:
                    for name in found:
                        if name and (name in self._names or len(self._names) < MAX_QUEUES):
                            self._names[name] = None
                        elif name:
                            self.over_cap = True
                if self._cursor == 0:
                    self.complete = True
                    break
        finally:
            self._scanning.release()
