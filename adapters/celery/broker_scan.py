"""What the sampler learns about a Celery Redis broker in the background.

- Queue names: kombu records each queue binding as a member ``routing_key
  \\x06\\x16 pattern \\x06\\x16 queue`` of the set ``_kombu.binding.EXCHANGE``;
  a queue is its lists ``NAME`` and ``NAME\\x06\\x16{3,6,9}``. Two SCAN
  cursors (``MATCH {prefix}_kombu.binding.*`` and ``TYPE list``), COUNT
  1,000 a step, find the sets, the priority lists, and the other lists whose
  next message (LINDEX -1) is a Celery task in kombu's envelope; a pass
  starts at most every 10 s.
- In progress per queue: messages workers reserved (prefetched or running)
  sit in the shared hash ``unacked`` as ``[message, exchange, routing_key]``.
  HSCAN, COUNT 100 a step, parses only each value's tail (the exchange and
  routing key) and attributes it through the bindings; the counts of the last
  complete pass are what the queues show.

Reads only (SCAN, HSCAN, LINDEX). Bounded: 500 binding sets, 2,000 queues.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import redis

from queuewatch.adapters.rabbitmq.plain_queues import topic_matches

from .messages import SEP, queue_of_key
from .results import glob_escape

BINDING_PREFIX = "_kombu.binding."
INTERNAL_EXCHANGES = ("celeryev", "celery.pidbox", "reply.celery.pidbox")
SCAN_COUNT = 1_000
HSCAN_COUNT = 100
MAX_BINDINGS = 500
MAX_QUEUES = 2_000
MIN_PASS_GAP = 10.0
Bindings = dict[str, list[tuple[str, str, str]]]  # exchange -> (routing key, pattern, queue) of each binding
_TAIL = re.compile(rb',\s*("(?:[^"\\]|\\.)*")\s*,\s*("(?:[^"\\]|\\.)*")\s*\]\s*$')


def internal_queue(name: str) -> bool:
    """Celery's own plumbing: worker mailboxes, reply queues, event receivers."""
    return name.endswith(".pidbox") or name.startswith("celeryev.")


def binding_members(members: set[bytes] | list[bytes]) -> list[tuple[str, str, str]]:
    """(routing key, pattern, queue) of each member of a ``_kombu.binding.*`` set."""
    found = []
    for member in members:
        parts = member.decode("utf-8", "replace").split(SEP)
        if len(parts) == 3 and parts[2]:
            found.append((parts[0], parts[1], parts[2]))
    return found


def exchange_and_key(value: bytes) -> tuple[str, str] | None:
    """The exchange and routing key at the end of an ``unacked`` value."""
    match = _TAIL.search(value[-2048:])
    if match is None:
        return None
    try:
        return json.loads(match.group(1)), json.loads(match.group(2))
    except ValueError:
        return None


class BrokerScan:
    """Binding sets, priority lists and reserved messages of one broker database."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        self._bindings: set[str] = {prefix + BINDING_PREFIX + "celery"}
        self._list_queues: set[str] = set()
        self._found_bindings: set[str] = set()
        self._found_lists: set[str] = set()
        self._cursors = {"bindings": 0, "lists": 0}
        self._in_pass = False
        self._next_pass = 0.0
        self._hcursor = 0
        self._hcounts: dict[str, int] = {}
        self.reserved: dict[str, int] | None = None  # per queue, from the last complete pass over unacked
        self.reserved_at: float | None = None
        self.passes = 0

    @property
    def unacked_key(self) -> str:
        return self.prefix + "unacked"

    def binding_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._bindings)

    def list_queues(self) -> set[str]:
        with self._lock:
            return set(self._list_queues)

    # -- the sampler's upkeep ------------------------------------------------------

    def maintain(self, deadline: float, bindings: Callable[[], Bindings]) -> None:
        """Advance the key scans, then the pass over ``unacked``, until ``deadline`` (monotonic)."""
        if not self._in_pass and time.monotonic() >= self._next_pass:
            self._start_pass()
        while self._in_pass:
            self._scan_step()
            if time.monotonic() >= deadline:
                break
        routes = bindings()
        while time.monotonic() < deadline or self.reserved is None:  # the first pass, whole: counts need it
            if self._unacked_step(routes):
                break

    def settle(self, bindings: Callable[[], Bindings]) -> None:
        """Whole passes now, from the start (tests and scripts; the sampler uses maintain)."""
        self._start_pass()
        while self._in_pass:
            self._scan_step()
        routes = bindings()
        self._hcursor, self._hcounts = 0, {}
        while not self._unacked_step(routes):
            pass

    def _start_pass(self) -> None:
        self._cursors = {"bindings": 0, "lists": 0}
        self._found_bindings, self._found_lists, self._in_pass = set(), set(), True

    def _scan_step(self) -> None:
        active = [name for name, cursor in self._cursors.items() if cursor >= 0]
        with self.client.pipeline(transaction=False) as pipe:
            for name in active:
                if name == "bindings":
                    pipe.scan(self._cursors[name], match=f"{glob_escape(self.prefix)}{BINDING_PREFIX}*", count=SCAN_COUNT)
                else:
                    pipe.scan(self._cursors[name], match=f"{glob_escape(self.prefix)}*", count=SCAN_COUNT, _type="list")
            replies = pipe.execute(raise_on_error=False)
        plain: list[bytes] = []
        for name, reply in zip(active, replies):
            if isinstance(reply, redis.ResponseError) and name == "lists":
                self._cursors[name] = -1  # SCAN ... TYPE needs Redis 6: lists are found through bindings only
                continue
            if isinstance(reply, Exception):
                raise reply
            cursor, keys = reply
            self._cursors[name] = int(cursor) or -1
            for key in keys:
                text = key.decode("utf-8", "replace")
                if name == "bindings":
                    exchange = text[len(self.prefix) + len(BINDING_PREFIX) :]
                    if exchange not in INTERNAL_EXCHANGES and len(self._found_bindings) < MAX_BINDINGS:
                        self._found_bindings.add(text)
                else:
                    queue = queue_of_key(text, self.prefix)
                    if queue is None:
                        plain.append(key)
                    elif not internal_queue(queue) and len(self._found_lists) < MAX_QUEUES:
                        self._found_lists.add(queue)
        if plain:
            self._check_lists(plain)
        if all(cursor < 0 for cursor in self._cursors.values()):
            with self._lock:
                self._bindings = {self.prefix + BINDING_PREFIX + "celery"} | self._found_bindings
                self._list_queues = set(self._found_lists)
            self._in_pass = False
            self._next_pass = time.monotonic() + MIN_PASS_GAP
            self.passes += 1

    def _check_lists(self, keys: list[bytes]) -> None:
        """Lists without a priority suffix are Celery queues if their next message is a task message."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.lindex(key, -1)
            heads = pipe.execute(raise_on_error=False)
        for key, head in zip(keys, heads):
            name = key.decode("utf-8", "replace")[len(self.prefix) :]
            if isinstance(head, bytes) and is_task_envelope(head) and not internal_queue(name):
                if len(self._found_lists) < MAX_QUEUES:
                    self._found_lists.add(name)

    def _unacked_step(self, bindings: Bindings) -> bool:
        """One HSCAN step; True when the pass ended."""
        cursor, values = self.client.hscan(self.unacked_key, self._hcursor, count=HSCAN_COUNT)
        for value in values.values():
            route = exchange_and_key(value)
            if route is None:
                continue
            for queue in route_queues(route[0], route[1], bindings):
                self._hcounts[queue] = self._hcounts.get(queue, 0) + 1
        self._hcursor = int(cursor)
        if self._hcursor == 0:
            with self._lock:
                self.reserved, self.reserved_at = dict(list(self._hcounts.items())[:MAX_QUEUES]), time.time()
            self._hcounts = {}
            return True
        return False


def is_task_envelope(data: bytes) -> bool:
    """Whether a list entry is kombu's envelope of a Celery task message."""
    if not data.startswith(b'{"body": '):
        return False
    try:
        envelope = json.loads(data)
    except ValueError:
        return False
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    return isinstance(headers, dict) and "task" in headers and "id" in headers


def route_queues(exchange: str, routing_key: str, bindings: Bindings) -> list[str]:
    """The queues a message published to ``exchange`` with ``routing_key`` went to."""
    if not exchange:
        return [routing_key]
    members = bindings.get(exchange, [])
    exact = [q for rk, _, q in members if rk == routing_key]
    return exact or [q for rk, _, q in members if ("*" in rk or "#" in rk) and topic_matches(rk, routing_key)]
