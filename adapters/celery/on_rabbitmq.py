"""Celery on a RabbitMQ broker: its queues, their dead-letter queues, and failed
tasks from a Redis result backend, never ``import celery``.

Which queues are Celery's (once a Celery worker or client declared its
exchanges on the vhost): with the management API, those consumed on the
connections of Celery workers (a worker consumes its mailbox
``HOSTNAME.celery.pidbox`` and its task queues on one connection), those
bound to Celery's default exchange ``on_redis`` or, as Celery declares the
queues it creates on demand, to a direct exchange of their own name with their
name as the key, and ``on_redis``; always, those the workers report
(``active_queues`` over the mailbox), the result records name, and those seen
before. Counts are passive declares (ready, consumers: exact and current);
unacked (reserved by workers: in progress) comes from the management API.

A Celery queue with a dead-letter exchange (``x-dead-letter-exchange``) links
to its dead-letter queue, which is shown as a Celery queue too: its messages
are the failed list (read from the head and given back in place), a requeue
redrives each to the queue it died in, confirmed, then acks it
(``rabbitmq.dead_letters``, as for plain queues); delete acks it; purge empties it.

Requeue of a failed task (from its result) publishes the new message to the
default exchange with the queue name as routing key, persistent, with
publisher confirms and mandatory routing, then deletes the result record
(``base``). Events come through an exclusive queue bound to
``celeryev`` (``events.AMQPListener``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pika.exceptions
import redis

from queuewatch.adapters.base import Inspection, ActionResult, FailedJob, JobDetail, Page, QueueStats, Selection, Worker
from queuewatch.adapters.decoding.payload import render
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.rabbitmq.amqp import (ConfirmedPublisher, Delivery, amqp_errors, deaths, declare_counts, inspection_note,
                                               origin_queue)  # fmt: skip
from queuewatch.adapters.rabbitmq.dead_letters import WINDOW, DeadLetterQueue, Redrive, Window, message_identity, purge_queue
from queuewatch.adapters.rabbitmq.management import QueueDirectory, QueueInfo  # fmt: skip
from queuewatch.adapters.rabbitmq.plain_queues import PROPERTIES, topic_matches

from .base import CeleryAdapterBase
from .broker_scan import internal_queue
from .events import AMQPListener, Listener
from .index import UNKNOWN
from .messages import Outgoing, amqp_properties, from_amqp
from .pidbox import AMQPMailbox
from .rabbit_states import CeleryRabbitStates
from .results import FailureRecord
from .workers import WorkerQuestions

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

DEFAULT_EXCHANGE = "celery"
NO_MANAGEMENT = ("Without the management API: no unacked count (in progress), and only the queues workers report "
                 "and result records name are found.")  # fmt: skip
DLQ_NOTE = ("This is the dead-letter queue of {sources}: its messages are listed below; a requeue sends each back "
            "to the queue it last died in (x-death), as it is.")  # fmt: skip
MANAGEMENT_MAX_AGE = 1.0  # detect() and the snapshot's overview share one read of consumers and bindings
_claimed: weakref.WeakKeyDictionary[QueueDirectory, set[str]] = weakref.WeakKeyDictionary()  # Celery's queues, DLQs
_reads: weakref.WeakKeyDictionary[QueueDirectory, tuple[float, list[Any], list[Any]]] = weakref.WeakKeyDictionary()
_claimed_lock = threading.Lock()


def _celery_id(delivery: Delivery) -> str:
    task_id = (delivery.properties.headers or {}).get("id")
    return task_id if isinstance(task_id, str) and task_id else message_identity(delivery)


class Topology:
    """Celery's queues on one vhost and their dead-letter queues."""

    def __init__(self, names: set[str], listing: list[QueueInfo] | None) -> None:
        self.names = names
        self.info = {q.name: q for q in listing or ()}
        self.dlq_of: dict[str, str] = {}
        self.sources: dict[str, list[str]] = {}

    def link(self, source: str, dlq: str) -> None:
        if dlq != source and dlq in self.info and source not in self.dlq_of:
            self.dlq_of[source] = dlq
            self.sources.setdefault(dlq, []).append(source)

    @property
    def all(self) -> set[str]:
        return self.names | set(self.sources)


class CeleryRabbitAdapter(CeleryRabbitStates, CeleryAdapterBase):
    """Celery whose broker is one RabbitMQ vhost (results in Redis, if linked)."""

    walk_page = WINDOW  # every page of dead letters re-reads the window: walk it in one

    failed_label = "Failed"

    def __init__(self, *, backend: str, rabbit: RabbitBackend, results_url: str | None = None,
                 results_client: redis.Redis | None = None, results_keyprefix: str = "",
                 inspect_limit: int = WINDOW) -> None:  # fmt: skip
        super().__init__(backend=backend, results=None)
        if results_url or results_client is not None:
            self.link_results(results_url, client=results_client, keyprefix=results_keyprefix)
        self.rabbit = rabbit
        self.inspect_limit = inspect_limit
        self.questions = WorkerQuestions(AMQPMailbox(rabbit))
        self._local = threading.local()

    # -- discovery ------------------------------------------------------------------------

    @classmethod
    def claims(cls, names: list[str], listing: list[QueueInfo] | None) -> set[str]:
        """Celery's queues, their DLQs and its plumbing (mailboxes, event receivers): not plain queues."""
        with _claimed_lock:
            known = set().union(*_claimed.values())  # claims() is not told the vhost: any vhost's Celery queues
        return {n for n in names if n == DEFAULT_EXCHANGE or internal_queue(n) or n in known}

    @classmethod
    def detect(cls, rabbit: RabbitBackend) -> bool:
        """Celery is here if a worker or client declared its exchanges (passive declares)."""
        with rabbit.connection() as conn, amqp_errors():
            for exchange in ("celeryev", "celery.pidbox", DEFAULT_EXCHANGE):
                try:
                    conn.channel().exchange_declare(exchange, passive=True)
                except pika.exceptions.ChannelClosedByBroker:  # 404: not declared (and the channel is closed)
                    continue
                discover(rabbit, set(), lambda name: False, merge=True)  # so plain-queue views leave Celery's out
                return True
        return False

    def topology(self) -> Topology:
        extra = {n for n in self._queue_names(self.workers()) | self.known_queues() if not internal_queue(n)}
        return discover(self.rabbit, extra, lambda name: self.index.count(name)[0] > 0)

    def _make_listener(self) -> Listener:
        return AMQPListener(self.rabbit, self.events.handle)

    # -- reads ------------------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        workers = self.workers()
        topo = self.topology()
        stats = self._stats(topo, sorted(topo.all), workers)
        self.remember_queues(s.name for s in stats if s.depth is not None and s.name not in topo.sources)
        unknown = self._unknown_stats()
        return stats + ([unknown] if unknown else []), workers

    def queue(self, name: str) -> QueueStats:
        if name == UNKNOWN:
            unknown = self._unknown_stats()
            if unknown is None:
                raise NotFound("no Celery failures of an unknown queue")
            return unknown
        topo = self.topology()
        if name not in topo.all and not self.index.count(name)[0]:
            raise NotFound(f"no Celery queue named {name!r} on RabbitMQ")
        topo.names.add(name)
        [stats] = self._stats(topo, [name], self.workers())
        return stats

    def _stats(self, topo: Topology, names: list[str], workers: list[Worker]) -> list[QueueStats]:
        with self.rabbit.connection() as conn, amqp_errors():
            counts = declare_counts(conn, [*names, *(topo.dlq_of[n] for n in names if n in topo.dlq_of)])
        managed = bool(topo.info)
        stats = []
        for name in names:
            count, info = counts.get(name), topo.info.get(name)
            notes = [] if managed else [NO_MANAGEMENT]
            links: list[tuple[str, str]] = []
            details: list[tuple[str, int | None]] = [("unacked", info.unacked if info else None),
                                                     ("consumers", count[1] if count else None)]  # fmt: skip
            if name in topo.sources:
                notes.append(DLQ_NOTE.format(sources=", ".join(sorted(topo.sources[name]))))
                links += [("original queue", s) for s in sorted(topo.sources[name])]
                failed: int | None = count[0] if count else None
            else:
                failed, estimated = self.index.count(name)
                notes += self._failure_notes(estimated)
                dlq = topo.dlq_of.get(name)
                if dlq:
                    links.append(("dead letters", dlq))
                    dead = counts.get(dlq)
                    details.append(("dead-lettered", dead[0] if dead else None))
            if count is None and name not in topo.info:
                notes.append("RabbitMQ has no such queue now: shown for its failed tasks.")
            in_progress, scheduled, prefetched, held_notes = self._held(name, info.unacked if info else None)
            if name in topo.sources:  # a dead-letter queue: nothing in it runs
                in_progress, scheduled, prefetched, held_notes = (info.unacked if info else None), None, None, []
            elif prefetched is not None:
                details.append(("prefetched by workers", prefetched))
            stats.append(QueueStats(
                backend=self.backend, system=self.system, name=name, depth=count[0] if count else None,
                in_progress=in_progress, scheduled=scheduled, failed=failed,
                workers=count[1] if count else self._consumers(name, workers), oldest_age_seconds=None,
                details=tuple(details), links=tuple(links), notes=tuple(notes + held_notes),
                partial=not self.index.complete, paused=None if name in topo.sources else self.paused(name), dead_letters_of=tuple(sorted(topo.sources.get(name, ()))),
            ))  # fmt: skip
        return stats

    def _dlq(self, queue: str) -> DeadLetterQueue | None:
        topo = self.topology()
        return DeadLetterQueue(self.rabbit, queue, identify=_celery_id, limit=self.inspect_limit) if queue in topo.sources else None

    def inspects(self, queue: str) -> bool:
        return self._dlq(queue) is not None  # a dead-letter queue; other queues' failures are results in Redis

    def inspection_warning(self, queue: str) -> str | None:
        info = next((q for q in self.rabbit.directory.listing() or () if q.name == queue), None)
        return inspection_note(info.type, self.rabbit.version, info.arguments) if info is not None else None

    def inspect(self, queue: str) -> Inspection:
        dlq = self._dlq(queue)
        if dlq is None:
            return super().inspect(queue)
        return dlq.inspect(_dead_row, lambda window, job_id, d: self._detail(queue, window, job_id, d))

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        if self._dlq(queue) is None:
            return super().failed(queue, limit, cursor)
        return self.inspect(queue).page(cursor, limit)  # an inspection each call (the views hold one instead)

    def job(self, queue: str, job_id: str) -> JobDetail:
        if self._dlq(queue) is None:
            return super().job(queue, job_id)
        return self.inspect(queue).detail(job_id)

    def _detail(self, queue: str, window: Window, job_id: str, delivery: Delivery) -> JobDetail:
        row, message = _dead_row(job_id, delivery), from_amqp(delivery.body, delivery.properties)
        props = delivery.properties
        details = [("dead-letter queue", queue), ("position", f"{delivery.position + 1:,} of {window.ready:,}")]
        details += [(n.replace("_", " "), str(getattr(props, n))) for n in PROPERTIES if getattr(props, n) is not None]
        for n, death in enumerate(deaths(props.headers), 1):
            details.append((f"x-death {n}", f"reason {death.reason}, count {death.count}, queue {death.queue}, "
                            f"time {death.time.isoformat() if death.time else '—'}"))  # fmt: skip
        details += [(f"header {k}", render(v, limit=2_000)) for k, v in message.headers.items() if k != "x-death" and v is not None]
        info = self.rabbit.directory.listing()
        q_info = next((q for q in info or () if q.name == queue), None)
        notes = ["Reading dead letters takes them unacknowledged and gives them back in place: nothing is lost or "
                 "reordered, but RabbitMQ marks them redelivered. A requeue sends the message back as it is (same "
                 "task id) to the queue it died in."]  # fmt: skip
        note = inspection_note(q_info.type if q_info else None, window.server_version, q_info.arguments if q_info else {})
        notes += [note] if note else []
        return JobDetail(
            id=job_id, function=row.function, args_preview=row.args_preview, error_type=row.error_type,
            error_message=row.error_message, failed_at=row.failed_at, attempts=row.attempts, queue=queue,
            args=message.args or (), kwargs=message.kwargs or {}, payload_encoding=message.encoding,
            payload_error=message.error, status="dead-lettered", details=tuple(details), notes=tuple(notes),
        )  # fmt: skip

    # -- moves ------------------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        dlq = self._dlq(queue)
        if dlq is None:
            with self._publishing():
                return super().requeue(queue, ids)

        def plan(delivery: Delivery) -> Redrive | None:
            origin = origin_queue(delivery.properties.headers)
            return Redrive(origin, delivery.body, delivery.properties) if origin else None

        return dlq.move(ids, plan)

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        """One confirmed AMQP channel for a whole requeue, opened when the first task needs it."""
        self._local.publisher = self._local.stack = None
        try:
            yield
        finally:
            stack = self._local.stack
            self._local.publisher = self._local.stack = None
            if stack is not None:
                stack.close()
            self.rabbit.directory.changed()

    def _publisher(self) -> ConfirmedPublisher:
        if getattr(self._local, "publisher", None) is None:
            stack = contextlib.ExitStack()
            conn = stack.enter_context(self.rabbit.connection())
            self._local.stack, self._local.publisher = stack, ConfirmedPublisher(conn)
        return self._local.publisher

    def _publish_retiring(self, record: FailureRecord, data: bytes, message: Outgoing) -> bool:
        def publish() -> None:
            with amqp_errors(f"RabbitMQ queue {message.queue!r}"):
                self._publisher().publish(message.queue, message.body, amqp_properties(message))

        return self._claimed(record, data, publish)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        dlq = self._dlq(queue)
        return super().delete(queue, ids) if dlq is None else dlq.drop(ids)

    def purge(self, queue: str) -> ActionResult:
        """The queue's ready messages (for a dead-letter queue: its dead letters)."""
        if queue == UNKNOWN:
            raise Unsupported("failed tasks of an unknown queue have no waiting messages to purge")
        return ActionResult(purge_queue(self.rabbit, queue))


def discover(rabbit: RabbitBackend, extra: set[str], has_failures: Callable[[str], bool], merge: bool = False) -> Topology:
    """Celery's queues on the vhost (``extra``: names the adapter learned) and their DLQs;
    also what ``claims`` keeps out of the plain-queue view."""
    listing = rabbit.directory.listing()
    names = set(extra)
    if listing is not None:
        present = {q.name for q in listing}
        consumers, bindings = _management_reads(rabbit)
        workers = {_connection(c) for c in consumers if str((c.get("queue") or {}).get("name", "")).endswith(".celery.pidbox")}
        names |= {str((c.get("queue") or {}).get("name", "")) for c in consumers if _connection(c) in workers}
        # Bound to Celery's default exchange, or to an exchange of its own name with its name as
        # the key: how Celery declares the queues it creates on demand (task_create_missing_queues).
        names |= {
            str(b.get("destination"))
            for b in bindings
            if b.get("destination_type") == "queue"
            and (b.get("source") == DEFAULT_EXCHANGE or b.get("source") == b.get("destination") == b.get("routing_key"))
        }
        names |= {DEFAULT_EXCHANGE} & present
        topo = Topology({n for n in names if n and not internal_queue(n) and (n in present or has_failures(n))}, listing)
        _dead_letters(rabbit, topo, listing, bindings)
    else:
        topo = Topology({n for n in names if n}, None)
    with _claimed_lock:
        before = _claimed.get(rabbit.directory, set()) if merge else set()
        _claimed[rabbit.directory] = before | topo.all
    return topo


def _management_reads(rabbit: RabbitBackend) -> tuple[list[Any], list[Any]]:
    """The vhost's consumers and bindings, read at most once a second."""
    with _claimed_lock:
        cached = _reads.get(rabbit.directory)
    if cached is not None and time.monotonic() - cached[0] < MANAGEMENT_MAX_AGE:
        return cached[1], cached[2]
    consumers, bindings = rabbit.management.consumers() or [], rabbit.management.bindings() or []
    with _claimed_lock:
        _reads[rabbit.directory] = (time.monotonic(), consumers, bindings)
    return consumers, bindings


def _dead_letters(rabbit: RabbitBackend, topo: Topology, listing: list[QueueInfo], bindings: list[dict[str, Any]]) -> None:
    with_dlx = [q for q in listing if q.name in topo.names and "x-dead-letter-exchange" in q.arguments]
    types = rabbit.management.exchanges() or {} if any(q.arguments.get("x-dead-letter-exchange") for q in with_dlx) else {}
    for q in with_dlx:
        exchange = str(q.arguments.get("x-dead-letter-exchange") or "")
        key = str(q.arguments.get("x-dead-letter-routing-key") or q.name)
        if exchange == "":
            topo.link(q.name, key)
            continue
        kind = types.get(exchange, "")
        for b in bindings:
            rk = str(b.get("routing_key", ""))
            if (
                b.get("source") == exchange
                and b.get("destination_type") == "queue"
                and (kind in ("fanout", "headers") or rk == key or (kind == "topic" and topic_matches(rk, key)))
            ):
                topo.link(q.name, str(b.get("destination")))


def _connection(consumer: dict[str, Any]) -> str:
    channel = consumer.get("channel_details") or {}
    return str(channel.get("connection_name") or channel.get("name") or "")


def _dead_row(job_id: str, delivery: Delivery) -> FailedJob:
    message = from_amqp(delivery.body, delivery.properties, max_bytes=256 * 1024)
    death = next(iter(deaths(delivery.properties.headers)), None)
    return FailedJob(
        id=job_id, function=message.task, args_preview=message.preview,
        error_type=death.reason if death else None,
        error_message=(f"dead-lettered from {death.queue} ({death.count} time{'s' if death.count != 1 else ''})"
                       if death else "no x-death header"),
        failed_at=death.time if death else None, attempts=death.count if death else None,
    )  # fmt: skip
