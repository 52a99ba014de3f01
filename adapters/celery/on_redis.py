"""Celery on a Redis broker, read and moved through kombu's keys, never ``import celery``.

Keys (behind kombu's ``global_keyprefix`` when set): each queue is the lists
``NAME`` and ``NAME\\x06\\x16{3,6,9}`` (``messages``); queue bindings
are the sets ``_kombu.binding.EXCHANGE``; messages workers reserved are in the
hash ``unacked`` (``[message, exchange, routing_key]``) and the zset
``unacked_index``. Workers are known from events (``events``), failed
tasks from the result backend (``results``, ``index``): by
default the broker's own database; ``link_results`` points elsewhere.

Queues are those bound in ``_kombu.binding.*`` sets, those with priority
lists, those the result records and the workers name (``broker_scan``
finds sets and lists in the background). The overview costs three round
trips however many queues there are: SMEMBERS of the binding sets, then LLEN
of every list plus HLEN ``unacked``. Depth sums the four priority lists; in
progress is the reserved messages per queue from the sampler's last pass over
``unacked``. Kombu messages carry no enqueue time, so the oldest waiting
age is unknown.

Purge (``purge.lua``) empties every priority list of a queue in one
step. Requeue LPUSHes a new protocol-2 envelope onto the list of its priority
(workers BRPOP from the other end); when results live in the broker's
database it and the deletion of the FAILURE record are one Lua script
(``requeue.lua``).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import redis

from queuewatch.adapters.base import ActionResult, QueueStats, Worker
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.redis_errors import redis_errors

from .base import CeleryAdapterBase, record_sha
from .broker_scan import BINDING_PREFIX, INTERNAL_EXCHANGES, Bindings, BrokerScan, binding_members, internal_queue
from .events import Listener, RedisListener
from .index import UNKNOWN
from .messages import PRIORITY_STEPS, Outgoing, list_key, priority_keys, redis_envelope
from .pidbox import RedisMailbox
from .redbeat import RedBeat
from .redis_states import CeleryRedisStates
from .results import FailureRecord, ResultStore, glob_escape
from .workers import WorkerQuestions

DETECT_KEYS = [BINDING_PREFIX + e for e in ("celery", *INTERNAL_EXCHANGES)] + ["unacked", "unacked_index", "celery"]
DEFAULT_QUEUE = "celery"
PRIORITY_LABELS = ("priority 0-2", "priority 3-5", "priority 6-8", "priority 9")
_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("purge", "requeue")}


class CeleryRedisAdapter(RedBeat, CeleryRedisStates, CeleryAdapterBase):
    """Celery whose broker is one Redis database."""

    def __init__(self, *, backend: str, client: redis.Redis, results_url: str | None = None,
                 results_client: redis.Redis | None = None, keyprefix: str = "", results_keyprefix: str = "") -> None:  # fmt: skip
        kwargs = client.connection_pool.connection_kwargs
        super().__init__(backend=backend, results=ResultStore(client, keyprefix=results_keyprefix,
                                                              label=f"the broker's database {kwargs.get('db', 0)}"))  # fmt: skip
        if results_url or results_client is not None:
            self.link_results(results_url, client=results_client, keyprefix=results_keyprefix)
        self.client = client
        self.prefix = keyprefix
        self.scan = BrokerScan(client, keyprefix)
        self.event_pattern = f"{glob_escape(keyprefix)}/{kwargs.get('db', 0)}.celeryev/*"
        self.questions = WorkerQuestions(RedisMailbox(client, keyprefix))
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}

    @classmethod
    def detect(cls, client: redis.Redis) -> bool:
        """Celery is here if kombu's bindings, reserved messages or default queue exist; custom
        exchanges and key prefixes are found by the backend's survey (``recognizes``)."""
        return bool(client.exists(*DETECT_KEYS))

    @classmethod
    def recognizes(cls, key: bytes) -> bool:
        return BINDING_PREFIX.encode() in key or key.startswith(b"celery-task-meta-")

    def _unmasked(self, url: str) -> str | None:
        """A worker's result_backend, its masked password replaced by the broker's (the usual shared server)."""
        password = self.client.connection_pool.connection_kwargs.get("password")
        if "********" not in url:
            return url
        return url.replace("********", quote(str(password), safe="")) if password else None

    def _make_listener(self) -> Listener:
        return RedisListener(self.client, self.event_pattern, self.events.handle)

    def maintain(self, budget_seconds: float) -> None:
        """Start the listener, find binding sets and priority lists, count reserved messages, index failures."""
        deadline = time.monotonic() + budget_seconds / 2
        self._start_listener()
        with redis_errors():
            self.scan.maintain(deadline, self._bindings)
        super().maintain(max(0.0, budget_seconds / 2))

    def settle(self, timeout: float = 60.0) -> bool:
        with redis_errors():
            self.scan.settle(self._bindings)
        return super().settle(timeout)

    # -- reads ------------------------------------------------------------------------

    def _bindings(self) -> Bindings:
        """Exchange -> (routing key, pattern, queue) of every binding set known."""
        keys = self.scan.binding_keys()
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key)
            replies = pipe.execute(raise_on_error=False)
        start = len(self.prefix) + len(BINDING_PREFIX)
        return {key[start:]: binding_members(r) for key, r in zip(keys, replies) if isinstance(r, set) and r}

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        workers = self.workers()
        with redis_errors():
            bindings = self._bindings()
            names = {q for members in bindings.values() for _, _, q in members if not internal_queue(q)}
            names |= self.scan.list_queues() | self._queue_names(workers)
            # Celery's default queue, and queues seen before, are shown while they hold messages
            # even before the background scan finds their lists (a binding set can be missing).
            maybe = ({DEFAULT_QUEUE} | self.known_queues()) - names
            stats = [s for s in self._stats(sorted(names | maybe), workers) if s.name not in maybe or s.depth]
            self.remember_queues(s.name for s in stats)
        unknown = self._unknown_stats()
        return stats + ([unknown] if unknown else []), workers

    def queue(self, name: str) -> QueueStats:
        if name == UNKNOWN:
            unknown = self._unknown_stats()
            if unknown is None:
                raise NotFound("no Celery failures of an unknown queue")
            return unknown
        workers = self.workers()
        with redis_errors():
            [stats] = self._stats([name], workers)
            declared = any(name == q for members in self._bindings().values() for _, _, q in members)
        if not declared and name not in self._queue_names(workers) and not (stats.depth or stats.failed):
            raise NotFound(f"no Celery queue named {name!r}")
        return stats

    def _stats(self, names: list[str], workers: list[Worker]) -> list[QueueStats]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hlen(self.scan.unacked_key)
            for name in names:
                for key in priority_keys(name, self.prefix):
                    pipe.llen(key)
            replies = pipe.execute(raise_on_error=False)
        unacked = replies[0] if isinstance(replies[0], int) else None
        width = len(PRIORITY_STEPS)
        reserved = self.scan.reserved
        stats = []
        for n, name in enumerate(names):
            lengths = [r if isinstance(r, int) else None for r in replies[1 + n * width : 1 + (n + 1) * width]]
            failed, estimated = self.index.count(name)
            notes = self._failure_notes(estimated)
            if unacked == 0:
                in_progress: int | None = 0
            elif reserved is not None:
                in_progress = reserved.get(name, 0)  # kombu's unacked hash, counted per queue at reserved_at
            else:
                in_progress = None
            in_progress, scheduled, prefetched, held_notes = self._held(name, in_progress)
            notes += held_notes
            stats.append(QueueStats(
                backend=self.backend, system=self.system, name=name,
                depth=None if None in lengths else sum(lengths),  # type: ignore[arg-type]
                in_progress=in_progress, scheduled=scheduled, failed=failed, workers=self._consumers(name, workers),
                oldest_age_seconds=None,
                details=(*zip(PRIORITY_LABELS, lengths), ("prefetched by workers", prefetched), ("reserved, all queues", unacked)),
                notes=tuple(notes), partial=not self.index.complete, paused=self.paused(name),
            ))  # fmt: skip
        return stats

    # -- moves ------------------------------------------------------------------------

    def purge(self, queue: str) -> ActionResult:
        """Empty every priority list of the queue (never its failures or reserved messages)."""
        if queue == UNKNOWN:
            raise Unsupported("failed tasks of an unknown queue have no waiting messages to purge")
        with redis_errors():
            return ActionResult(int(self._scripts["purge"](keys=priority_keys(queue, self.prefix))))

    def _publish_retiring(self, record: FailureRecord, data: bytes, message: Outgoing) -> bool:
        assert self.results is not None
        key, envelope = list_key(message.queue, message.priority, self.prefix), redis_envelope(message)
        if _same_database(self.results.client, self.client):
            return bool(self._scripts["requeue"](keys=[self.results.key(record.id), key], args=[record_sha(data), envelope]))
        return self._claimed(record, data, lambda: self.client.lpush(key, envelope))


def _same_database(a: redis.Redis, b: redis.Redis) -> bool:
    if a is b:
        return True
    ka, kb = a.connection_pool.connection_kwargs, b.connection_pool.connection_kwargs
    return all(ka.get(k) == kb.get(k) for k in ("host", "port", "path", "db")) and ka.get("host", ka.get("path")) is not None
