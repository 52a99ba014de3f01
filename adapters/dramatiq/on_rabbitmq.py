"""Dramatiq on RabbitMQ: the queues ``Q``, ``Q.DQ`` (delayed) and ``Q.XQ`` (dead
letters) that Dramatiq declares, shown as one queue, never ``import dramatiq``.

Found from the management API's listing (``Q`` dead-letters into ``Q.XQ``
through the default exchange), or without it from the configured queue names
whose three queues exist. Counts are passive declares (exact and current);
unacked counts, rates and consumer connections come from the management API.
Failures are nacked by Dramatiq into ``Q.XQ`` (reason "rejected") with the
message as it was last enqueued. Requeue republishes to ``Q`` with ``retries``
reset, confirmed and mandatory, and only then acks the dead letter
(``rabbitmq.dead_letters``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import pika
from pika.adapters.blocking_connection import BlockingConnection

from queuewatch.adapters.base import Inspection, ActionResult, Adapter, FailedJob, JobDetail, Page, QueueStats, Selection, Worker
from queuewatch.adapters.errors import NotFound
from queuewatch.adapters.rabbitmq.amqp import Delivery, amqp_errors, deaths, declare_counts, inspection_note
from queuewatch.adapters.rabbitmq.dead_letters import WINDOW, DeadLetterQueue, Redrive, Window, message_identity, purge_queue
from queuewatch.adapters.rabbitmq.management import QueueInfo, consumer_connections, rate_details

from . import messages as dramatiq
from .control import DramatiqControl
from .rabbit_states import DramatiqRabbitJobStates
from .timings import DramatiqTimings
from .workers import connection_names, rabbit_workers

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

INSPECTION = ("Reading dead letters takes them from Q.XQ unacknowledged and gives them back in place: nothing is "
              "lost or reordered, but RabbitMQ marks them redelivered.")  # fmt: skip
NO_MANAGEMENT = ("Without the management API: no unacked counts (in progress, and delayed messages a worker holds "
                 "until their eta), rates or consumer connections.")  # fmt: skip


def dramatiq_queues(names: Iterable[str], listing: list[QueueInfo] | None) -> list[str]:
    """Canonical names Q whose Q, Q.DQ and Q.XQ all exist (and Q dead-letters into
    Q.XQ, where the management API shows arguments)."""
    present = set(names)
    arguments = {q.name: q.arguments for q in listing or ()}
    found = []
    for name in present:
        if name.endswith((".DQ", ".XQ")) or f"{name}.DQ" not in present or f"{name}.XQ" not in present:
            continue
        args = arguments.get(name)
        if args is not None and args.get("x-dead-letter-routing-key") != f"{name}.XQ":
            continue
        found.append(name)
    return sorted(found)


def _trio(name: str) -> tuple[str, str, str]:
    return name, f"{name}.DQ", f"{name}.XQ"


def _message_id(delivery: Delivery) -> str:
    return dramatiq.message_id_of(delivery.body) or message_identity(delivery)


class DramatiqRabbitAdapter(DramatiqTimings, DramatiqControl, DramatiqRabbitJobStates, Adapter):
    """Dramatiq's RabbitMQ broker on one vhost."""

    walk_page = WINDOW  # every page of dead letters re-reads the window: walk it in one

    system = "dramatiq"
    label = "Dramatiq"
    failed_label = "Dead letters"
    failed_noun = ("dead letter", "dead letters")

    def __init__(self, *, backend: str, rabbit: RabbitBackend, inspect_limit: int = WINDOW) -> None:
        super().__init__(backend=backend)
        self.rabbit = rabbit
        self.inspect_limit = inspect_limit

    @classmethod
    def claims(cls, names: list[str], listing: list[QueueInfo] | None) -> set[str]:
        """Every queue that is part of a Dramatiq queue (so plain-queue views leave it out)."""
        return {q for name in dramatiq_queues(names, listing) for q in _trio(name)}

    @classmethod
    def detect(cls, rabbit: RabbitBackend) -> bool:
        listing = rabbit.directory.listing()
        if listing is not None:
            return bool(dramatiq_queues([q.name for q in listing], listing))
        with rabbit.connection() as conn, amqp_errors():
            return bool(cls._configured(rabbit, conn))

    @staticmethod
    def _configured(rabbit: RabbitBackend, conn: BlockingConnection) -> list[str]:
        """Without a listing: the known names whose three queues exist."""
        names = {n.removesuffix(".DQ").removesuffix(".XQ") for n in rabbit.directory.known()}
        counts = declare_counts(conn, [q for name in sorted(names) for q in _trio(name)])
        return [name for name in sorted(names) if all(counts.get(q) is not None for q in _trio(name))]

    def _dlq(self, queue: str) -> DeadLetterQueue:
        # A requeue publishes to the queue itself (``requeue``), whichever of Q and Q.DQ the message died in.
        return DeadLetterQueue(self.rabbit, f"{queue}.XQ", identify=_message_id, limit=self.inspect_limit,
                               requeue_to=lambda _delivery: queue)  # fmt: skip

    # -- reads -------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        listing = self.rabbit.directory.listing()
        with self.rabbit.connection() as conn, amqp_errors():
            names = dramatiq_queues([q.name for q in listing], listing) if listing is not None else self._configured(self.rabbit, conn)
            return self._stats(conn, names, listing)

    def queue(self, name: str) -> QueueStats:
        listing = self.rabbit.directory.listing()
        with self.rabbit.connection() as conn, amqp_errors():
            [stats] = self._stats(conn, [name], listing)
        return stats

    def _stats(self, conn: BlockingConnection, names: list[str], listing: list[QueueInfo] | None) -> list[QueueStats]:
        counts = declare_counts(conn, [q for name in names for q in _trio(name)])
        info = {q.name: q for q in listing or ()}
        stats = []
        for name in names:
            main, delayed, dead = (counts.get(q) for q in _trio(name))
            if main is None or dead is None:
                raise NotFound(f"no Dramatiq queue named {name!r} (RabbitMQ has no {name!r} and {name + '.XQ'!r})")
            q_info, dq_info = info.get(name), info.get(f"{name}.DQ")
            unacked = q_info.unacked if q_info else None
            held_delayed = dq_info.unacked if dq_info else None
            scheduled = None if delayed is None else delayed[0] + (held_delayed or 0)
            notes = [] if listing is not None else [NO_MANAGEMENT]
            ttl = (info.get(f"{name}.XQ") or QueueInfo(name)).arguments.get("x-message-ttl")
            if isinstance(ttl, int):
                notes.append(f"RabbitMQ drops dead letters after {ttl / 86_400_000:g} days (x-message-ttl of {name}.XQ).")
            stats.append(QueueStats(
                backend=self.backend, system=self.system, name=name,
                depth=main[0], in_progress=unacked, scheduled=scheduled, failed=dead[0], workers=main[1],
                oldest_age_seconds=None,
                details=(("unacked", unacked), ("delayed", scheduled), ("dead-lettered", dead[0]),
                         ("consumers", main[1]), *rate_details(q_info)),
                notes=tuple(notes),
            ))  # fmt: skip
        return stats

    def workers(self) -> list[Worker]:
        """Connections consuming Dramatiq queues (management API only: AMQP cannot list consumers)."""
        listing = self.rabbit.directory.listing()
        consumers = self.rabbit.management.consumers() if listing is not None else None
        if not consumers:
            return []
        names = dramatiq_queues([q.name for q in listing or ()], listing)
        shown = {q: name for name in names for q in _trio(name)[:2]}
        # One row per process where its connections are named, else per client host (``workers``).
        return rabbit_workers(self.backend, self.system, consumer_connections(consumers, shown),
                              connection_names(self.rabbit.management))  # fmt: skip

    def inspects(self, queue: str) -> bool:
        return True  # its failed list is Q.XQ, read from the head

    def inspection_warning(self, queue: str) -> str | None:
        listing = self.rabbit.directory.listing()
        info = next((q for q in listing or () if q.name == f"{queue}.XQ"), None)
        return inspection_note(info.type, self.rabbit.version, info.arguments) if info is not None else None

    def inspect(self, queue: str) -> Inspection:
        def row(job_id: str, d: Delivery) -> FailedJob:
            return dramatiq.failed_row(dramatiq.parse(d.body, max_bytes=dramatiq.LIST_DECODE_LIMIT), job_id=job_id,
                                       failed_at=_died_at(d))  # fmt: skip

        return self._dlq(queue).inspect(row, lambda window, job_id, d: self._detail(queue, window, job_id, d))

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        """One page of dead letters: an inspection each call (the views hold one instead)."""
        return self.inspect(queue).page(cursor, limit)

    def job(self, queue: str, job_id: str) -> JobDetail:
        """One dead letter: an inspection each call (the views hold one instead)."""
        return self.inspect(queue).detail(job_id)

    def _detail(self, queue: str, window: Window, job_id: str, delivery: Delivery) -> JobDetail:
        death = next(iter(deaths(delivery.properties.headers)), None)
        details = [("dead-letter queue", f"{queue}.XQ"), ("position", f"{delivery.position + 1:,} of {window.ready:,}")]
        if death is not None:
            details += [("x-death reason", death.reason or "—"), ("x-death count", str(death.count)),
                        ("x-death queue", death.queue or "—")]  # fmt: skip
        notes = [INSPECTION]
        if window.truncated:
            notes.append(f"Only the first {len(window.items):,} of {window.ready:,} dead letters can be read.")
        return dramatiq.detail(dramatiq.parse(delivery.body), job_id=job_id, queue=queue, failed_at=_died_at(delivery),
                               details=tuple(details), notes=tuple(notes))  # fmt: skip

    # -- moves -------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        def plan(delivery: Delivery) -> Redrive | None:
            body = dramatiq.requeued(delivery.body, queue)
            if body is None:
                return None
            props = delivery.properties
            # As Dramatiq publishes (persistent, its priority); x-death is kept
            # so its count says how often the message has been dead-lettered.
            properties = pika.BasicProperties(delivery_mode=2, priority=props.priority, headers=props.headers)
            return Redrive(routing_key=queue, body=body, properties=properties)

        return self._dlq(queue).move(ids, plan)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        return self._dlq(queue).drop(ids)

    def purge(self, queue: str) -> ActionResult:
        """Ready messages of Q only: never Q.DQ (delayed) or Q.XQ (dead letters), unlike Dramatiq's flush."""
        return ActionResult(purge_queue(self.rabbit, queue))


def _died_at(delivery: Delivery) -> datetime | None:
    death = next(iter(deaths(delivery.properties.headers)), None)
    return death.time if death else None
