"""Plain RabbitMQ queues (system "amqp") and their dead-letter queues.

Every queue of the vhost that no job system's adapter shows as its own: from
the management API's listing, or without it from the configured queue names
and those learned from dead letters. Counts are passive declares; unacked,
rates and arguments come from the management API.

Dead-letter relationships: a queue's ``x-dead-letter-exchange`` /
``x-dead-letter-routing-key`` arguments resolved through the exchange's type
and bindings (management API), the configured dead-letter queues, and the
``x-death`` headers of the dead letters read. A queue with a DLQ lists, as its
dead letters, the DLQ's messages that died in it; a DLQ lists its own. A
requeue redrives each message to the queue it last died in, confirmed, then
acks it (``rabbitmq.dead_letters``); ids are ``message_id`` or a digest of the message.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pika.adapters.blocking_connection import BlockingConnection

from queuewatch.adapters.base import Inspection, ActionResult, Adapter, FailedJob, JobDetail, Page, QueueStats, Selection, Worker
from queuewatch.adapters.decoding.payload import decode, render
from queuewatch.adapters.errors import NotFound, Unsupported

from .amqp import Delivery, amqp_errors, deaths, declare_counts, inspection_note, origin_queue, server_version
from .dead_letters import WINDOW, DeadLetterQueue, Redrive, Window, purge_queue
from .management import QueueInfo, consumer_connections, rate_details

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
              "expiration", "message_id", "timestamp", "type", "user_id", "app_id")  # fmt: skip


@dataclass
class Topology:
    """Which queue dead-letters into which, as far as can be known."""

    names: list[str]
    info: dict[str, QueueInfo]
    dead_letters: dict[str, list[str]] = field(default_factory=dict)  # queue -> its DLQs
    sources: dict[str, list[str]] = field(default_factory=dict)  # DLQ -> queues dead-lettering into it
    dlqs: set[str] = field(default_factory=set)

    def link(self, source: str, dlq: str) -> None:
        if dlq == source:
            return
        self.dead_letters.setdefault(source, [])
        if dlq not in self.dead_letters[source]:
            self.dead_letters[source].append(dlq)
            self.sources.setdefault(dlq, []).append(source)
        self.dlqs.add(dlq)

    def dlq_of(self, queue: str) -> str | None:
        found = self.dead_letters.get(queue)
        return sorted(found)[0] if found else None

    def dedicated(self, dlq: str) -> bool:
        return len(self.sources.get(dlq, ())) <= 1


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    regex = "\\.".join("[^.]+" if w == "*" else ".*" if w == "#" else re.escape(w) for w in pattern.split("."))
    regex = regex.replace("\\..*", "(\\..*)?").replace(".*\\.", "(.*\\.)?")
    return re.fullmatch(regex, key) is not None


class AMQPAdapter(Adapter):
    """Plain queues of one RabbitMQ vhost, with their dead-letter queues."""

    walk_page = WINDOW  # every page of dead letters re-reads the window: walk it in one

    system = "amqp"
    label = "RabbitMQ"
    failed_label = "Dead letters"
    failed_noun = ("dead letter", "dead letters")
    purge_keeps_failed = False  # a DLQ's waiting messages are its dead letters

    def __init__(self, *, backend: str, rabbit: RabbitBackend, inspect_limit: int = WINDOW) -> None:
        super().__init__(backend=backend)
        self.rabbit = rabbit
        self.inspect_limit = inspect_limit
        self._learned: dict[str, set[str]] = {}  # source -> DLQs, from x-death headers read
        self._lock = threading.Lock()

    @classmethod
    def detect(cls, rabbit: RabbitBackend) -> bool:
        listing = rabbit.directory.listing()
        names = [q.name for q in listing] if listing is not None else rabbit.directory.known()
        return bool(set(names) - rabbit.claimed_queues(names, listing, but=cls.system))

    def topology(self) -> Topology:
        listing = self.rabbit.directory.listing()
        names = [q.name for q in listing] if listing is not None else self.rabbit.directory.known()
        claimed = self.rabbit.claimed_queues(names, listing, but=self.system)
        topo = Topology([n for n in names if n not in claimed], {q.name: q for q in listing or ()})
        topo.dlqs |= set(self.rabbit.directory.dead_letter_queues)
        if listing is not None:
            self._from_arguments(topo, listing)
        with self._lock:
            # Kept for when the management API stops answering (arguments are its to tell).
            for source, dlqs in topo.dead_letters.items():
                self._learned.setdefault(source, set()).update(dlqs)
            for source, dlqs in self._learned.items():
                for dlq in dlqs:
                    topo.link(source, dlq)
        return topo

    def _from_arguments(self, topo: Topology, listing: list[QueueInfo]) -> None:
        with_dlx = [q for q in listing if "x-dead-letter-exchange" in q.arguments and q.name in topo.names]
        named = any(q.arguments.get("x-dead-letter-exchange") for q in with_dlx)
        types = self.rabbit.management.exchanges() if named else {}
        bindings = self.rabbit.management.bindings() if named else []
        for q in with_dlx:
            exchange = str(q.arguments.get("x-dead-letter-exchange") or "")
            key = q.arguments.get("x-dead-letter-routing-key")
            if exchange == "":
                if key:
                    topo.link(q.name, str(key))
                continue
            kind = (types or {}).get(exchange, "")
            key = str(key) if key else q.name  # without one, messages keep their own routing keys: a guess
            for b in bindings or ():
                if b.get("source") != exchange or b.get("destination_type") != "queue":
                    continue
                rk = str(b.get("routing_key", ""))
                if kind in ("fanout", "headers") or (kind == "topic" and topic_matches(rk, key)) or rk == key:
                    topo.link(q.name, str(b.get("destination")))

    def _learn(self, dlq: str, deliveries: list[Delivery]) -> None:
        origins = {o for o in (origin_queue(d.properties.headers) for d in deliveries) if o and o != dlq}
        with self._lock:
            for origin in origins:
                self._learned.setdefault(origin, set()).add(dlq)
        self.rabbit.directory.learn([dlq, *origins])

    # -- reads -------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        topo = self.topology()
        with self.rabbit.connection() as conn, amqp_errors():
            return self._stats(conn, topo, topo.names)

    def queue(self, name: str) -> QueueStats:
        topo = self.topology()
        with self.rabbit.connection() as conn, amqp_errors():
            found = self._stats(conn, topo, [name])
        if not found:
            raise NotFound(f"RabbitMQ has no queue named {name!r}")
        return found[0]

    def _stats(self, conn: BlockingConnection, topo: Topology, names: list[str]) -> list[QueueStats]:
        dlqs = {d for n in names if (d := topo.dlq_of(n))}
        counts = declare_counts(conn, [*names, *dlqs])
        version = server_version(conn)
        managed = self.rabbit.directory.listing() is not None
        stats = []
        for name in names:
            count = counts.get(name)
            if count is None:
                continue  # gone, or exclusive to another connection
            info = topo.info.get(name)
            dlq = topo.dlq_of(name)
            dead = counts.get(dlq) if dlq else None
            details: list[tuple[str, int | None]] = [("unacked", info.unacked if info else None), ("consumers", count[1])]
            notes = []
            if dlq and not topo.dedicated(dlq):
                details.append((f"in shared DLQ {dlq}", dead[0] if dead else None))
                notes.append(f"{dlq} is shared by {', '.join(sorted(topo.sources[dlq]))}: this queue's dead letters "
                             "are those whose x-death names it, counted when listed.")  # fmt: skip
            if name in topo.dlqs:
                notes.append("This is a dead-letter queue: its messages are listed below; a requeue sends each back "
                             "to the queue it last died in (x-death). Purging this queue deletes them.")  # fmt: skip
            elif dlq is None and not managed:
                notes.append("Dead-letter arguments need the management API; this queue's dead-letter queue is "
                             "known once its dead letters have been read.")  # fmt: skip
            elif dlq is None and info is not None and "x-dead-letter-exchange" in info.arguments:
                notes.append(f"Its dead-letter exchange {info.arguments['x-dead-letter-exchange']!r} routes to no "
                             "queue queuewatch can find: RabbitMQ drops what it cannot route.")  # fmt: skip
            elif dlq is None:
                notes.append("No dead-letter exchange: RabbitMQ drops the messages this queue rejects or expires.")
            # Reading dead letters (this queue's DLQ, or this DLQ) may count as deliveries.
            read = topo.info.get(dlq or (name if name in topo.dlqs else ""))
            note = inspection_note(read.type, version, read.arguments) if read else None
            if note:
                notes.append(note)
            stats.append(QueueStats(
                backend=self.backend, system=self.system, name=name,
                depth=count[0], in_progress=info.unacked if info else None, scheduled=None,
                # A dead-letter queue's messages are its dead letters; a source's are those of its own DLQ.
                failed=count[0] if name in topo.dlqs else dead[0] if dead and topo.dedicated(dlq or "") else None,
                workers=count[1], failed_in=dlq if dead and topo.dedicated(dlq or "") else None,
                dead_letters_of=tuple(sorted(topo.sources.get(name, ()))) if name in topo.dlqs else (),
                oldest_age_seconds=None,
                details=(*details, *rate_details(info)),
                links=(*(("dead letters", d) for d in sorted(topo.dead_letters.get(name, ()))),
                       *(("original queue", s) for s in sorted(topo.sources.get(name, ())))),
                notes=tuple(notes),
            ))  # fmt: skip
        return stats

    def workers(self) -> list[Worker]:
        """Connections consuming these queues (management API only: AMQP cannot list consumers)."""
        consumers = self.rabbit.management.consumers() if self.rabbit.directory.listing() is not None else None
        if not consumers:
            return []
        shown = {name: name for name in self.topology().names}
        return [
            Worker(backend=self.backend, system=self.system, name=connection, hostname=entry["host"], pid=None,
                   queues=tuple(sorted(entry["queues"])), state="consuming", alive=True, last_heartbeat=None,
                   current_job=None)
            for connection, entry in sorted(consumer_connections(consumers, shown).items())
        ]  # fmt: skip

    def _source(self, queue: str) -> tuple[DeadLetterQueue | None, Callable[[Delivery], bool] | None]:
        """Where ``queue``'s dead letters are read, and which of the messages there are its own.
        Learned from arguments, configuration and the x-death headers of dead letters inspected
        before; never by reading a queue the operator did not ask to see."""
        topo = self.topology()
        dlq = topo.dlq_of(queue)
        if dlq is None:
            return (DeadLetterQueue(self.rabbit, queue, limit=self.inspect_limit), None) if queue in topo.dlqs else (None, None)
        keep = None if topo.dedicated(dlq) else (lambda d: origin_queue(d.properties.headers) == queue)
        return DeadLetterQueue(self.rabbit, dlq, limit=self.inspect_limit), keep

    def _dead_letters(self, queue: str) -> tuple[DeadLetterQueue, Callable[[Delivery], bool] | None]:
        dlq, keep = self._source(queue)
        if dlq is None:
            raise Unsupported(f"RabbitMQ queue {queue!r} has no known dead-letter queue, and is not known as one.")
        return dlq, keep

    def inspects(self, queue: str) -> bool:
        return self._source(queue)[0] is not None

    def inspection_warning(self, queue: str) -> str | None:
        dlq, _ = self._source(queue)
        info = self.topology().info.get(dlq.queue) if dlq is not None else None
        return inspection_note(info.type, self.rabbit.version, info.arguments) if info is not None else None

    def inspect(self, queue: str) -> Inspection:
        dlq, keep = self._source(queue)
        if dlq is None:
            raise Unsupported(f"RabbitMQ queue {queue!r} has no known dead-letter queue, and is not known as one.")
        window = dlq.window()
        self._learn(dlq.queue, [d for _, d in window.items])
        return dlq.inspect(_row, lambda w, job_id, d: self._detail(queue, dlq, w, job_id, d), keep, window=window)

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        """One page of dead letters: an inspection each call (the views hold one instead)."""
        if not self.inspects(queue):
            return Page((), 0, None)
        return self.inspect(queue).page(cursor, limit)

    def job(self, queue: str, job_id: str) -> JobDetail:
        """One dead letter: an inspection each call (the views hold one instead)."""
        if not self.inspects(queue):
            raise NotFound(f"RabbitMQ queue {queue!r} has no known dead-letter queue")
        return self.inspect(queue).detail(job_id)

    def _detail(self, queue: str, dlq: DeadLetterQueue, window: Window, job_id: str, delivery: Delivery) -> JobDetail:
        row = _row(job_id, delivery)
        decoded = decode(delivery.body)
        props = delivery.properties
        details = [("dead-letter queue", dlq.queue), ("position", f"{delivery.position + 1:,} of {window.ready:,}"),
                   ("redelivered", "yes" if delivery.redelivered else "no")]  # fmt: skip
        details += [(name.replace("_", " "), str(getattr(props, name))) for name in PROPERTIES if getattr(props, name) is not None]
        for n, death in enumerate(deaths(props.headers), 1):
            details.append((f"x-death {n}", f"reason {death.reason}, count {death.count}, queue {death.queue}, "
                            f"exchange {death.exchange!r}, routing keys {list(death.routing_keys)}, time "
                            f"{death.time.isoformat() if death.time else '—'}"))  # fmt: skip
        details += [(f"header {k}", v[:2_000] if isinstance(v, str) else render(v, limit=2_000))
                    for k, v in (props.headers or {}).items() if k != "x-death"]  # fmt: skip
        origin = origin_queue(props.headers)
        notes = ["Reading dead letters takes them unacknowledged and gives them back in place: nothing is lost or "
                 "reordered, but RabbitMQ marks them redelivered."]  # fmt: skip
        if origin is None:
            notes.append("No x-death header: RabbitMQ did not dead-letter this message, so where it came from is "
                         "unknown and it cannot be requeued.")  # fmt: skip
        info = self.topology().info.get(dlq.queue)
        note = inspection_note(info.type if info else None, window.server_version, info.arguments if info else {})
        if note:
            notes.append(note)
        if window.truncated:
            notes.append(f"Only the first {len(window.items):,} of {window.ready:,} messages can be read.")
        value = decoded.value if decoded.error is None else None
        return JobDetail.of(
            row, queue=queue,
            args=(value,) if decoded.error is None else (), payload_encoding=decoded.encoding,
            payload_error=decoded.error, status="dead-lettered" if origin else "in a dead-letter queue",
            details=tuple(details), notes=tuple(notes),
        )  # fmt: skip

    # -- moves -------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        """Redrive to the queue each message last died in, as it is (x-death kept, as a shovel would)."""
        dlq, keep = self._dead_letters(queue)

        def plan(delivery: Delivery) -> Redrive | None:
            origin = origin_queue(delivery.properties.headers)
            return Redrive(origin, delivery.body, delivery.properties) if origin else None

        return dlq.move(ids, plan, keep)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        dlq, keep = self._dead_letters(queue)
        return dlq.drop(ids, keep)

    def purge(self, queue: str) -> ActionResult:
        """The queue's ready messages (for a DLQ: its dead letters); never another queue's."""
        return ActionResult(purge_queue(self.rabbit, queue))


def _row(job_id: str, delivery: Delivery) -> FailedJob:
    death = next(iter(deaths(delivery.properties.headers)), None)
    decoded = decode(delivery.body, max_bytes=256 * 1024)
    preview = decoded.error or render(decoded.value, limit=160)
    origin = origin_queue(delivery.properties.headers)
    return FailedJob(
        id=job_id,
        function=delivery.properties.type or (f"from {origin}" if origin else None),
        args_preview=preview,
        error_type=death.reason if death else None,
        error_message=(f"dead-lettered from {death.queue} ({death.count} time{'s' if death.count != 1 else ''})"
                       if death else "no x-death header"),  # fmt: skip
        failed_at=death.time if death else None,
        attempts=death.count if death else None,
    )

