"""Dead-letter queues on RabbitMQ, read and moved over AMQP: the part every AMQP
adapter shares (plain queues' DLQs, Dramatiq's ``Q.XQ``, Celery's DLQs).

A system adapter says how to name a message (``identify``) and, for a requeue,
where it goes and with what body (``plan``); this module pages, finds, moves
and drops.

Reading: a queue can only be read from its head. A page newest first is cut
from a window of the first ``limit`` messages, taken unacked and given back in
place (``amqp.Held``); a longer queue shows the newest of its oldest
``limit`` messages, and ``Window.truncated`` says so.

Moving: each message is republished with publisher confirms and mandatory
routing, and only after the broker confirmed the copy is it acked in the
dead-letter queue. A crash in between leaves it in both (a duplicate), never
in neither. "All" moves what the queue held when the move began, so messages
that fail again meanwhile are not chased.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pika
import pika.exceptions

from queuewatch.adapters.base import ALL, ActionResult, FailedJob, Inspection, JobDetail, Page, Selection, Tally
from queuewatch.adapters.errors import NotFound, Unsupported

from .amqp import ConfirmedPublisher, Delivery, Held, amqp_errors, origin_queue, peek, server_version

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

WINDOW = 10_000  # messages read to show a page: RabbitMQ queues are read from the head
WINDOW_BYTES = 16 * 1024 * 1024  # ... or fewer, once their bodies add up to this: an inspection's memory is bounded
MOVE_PREFETCH = 500  # messages in flight while moving "all"


@dataclass(frozen=True)
class Redrive:
    """Where a requeued message is published, and as what."""

    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    exchange: str = ""


@dataclass(frozen=True)
class Window:
    """The first messages of a queue, as they were when read (all given back)."""

    ready: int  # messages in the queue when it was read
    items: tuple[tuple[str, Delivery], ...]  # (id, message), head first
    server_version: tuple[int, ...] | None

    @property
    def truncated(self) -> bool:
        return self.ready > len(self.items)


# The detail that names where a requeue publishes a dead letter: the queue it last died in (x-death),
# as every AMQP adapter's requeue plans it. The job page's confirmation names it (app/views/pages.py).
REQUEUE_TO = "requeue goes to"


def with_destination(job: JobDetail, destination: str | None) -> JobDetail:
    """``job`` with the queue a requeue sends it to first among its details (empty: it cannot be requeued)."""
    if any(label == REQUEUE_TO for label, _ in job.details):
        return job
    return replace(job, details=((REQUEUE_TO, destination or ""), *job.details))


def message_identity(delivery: Delivery) -> str:
    """A plain RabbitMQ message's id: its ``message_id`` property, else a digest of
    its body and properties (stable while it sits in the queue)."""
    props = delivery.properties
    if props.message_id:
        return str(props.message_id)
    digest = hashlib.sha256(delivery.body)
    fields = {k: v for k, v in sorted(vars(props).items()) if v is not None}
    digest.update(repr(fields).encode("utf-8", "surrogatepass"))
    return "sha256-" + digest.hexdigest()[:24]


class DeadLetterQueue:
    """One dead-letter queue of a RabbitMQ vhost, read and moved over AMQP."""

    def __init__(self, rabbit: RabbitBackend, queue: str, *, identify: Callable[[Delivery], str] = message_identity,
                 limit: int = WINDOW, requeue_to: Callable[[Delivery], str | None] | None = None) -> None:  # fmt: skip
        self.rabbit = rabbit
        self.queue = queue
        self.identify = identify
        self.limit = limit
        # Where the adapter's requeue publishes a message (its ``plan``): by default the queue it last died in.
        self.requeue_to = requeue_to or (lambda delivery: origin_queue(delivery.properties.headers))

    def _named(self, deliveries: Iterable[Delivery]) -> Iterator[tuple[str, Delivery]]:
        """(id, message) in queue order; the second of two identical messages is "ID~2"."""
        seen: dict[str, int] = {}
        for delivery in deliveries:
            base = self.identify(delivery)
            seen[base] = seen.get(base, 0) + 1
            yield (base if seen[base] == 1 else f"{base}~{seen[base]}"), delivery

    def window(self) -> Window:
        """Read (inspect) the head of the queue; everything goes back where it was."""
        with self.rabbit.connection() as conn, amqp_errors(f"RabbitMQ queue {self.queue!r}"):
            ready, deliveries = peek(conn, self.queue, self.limit, max_bytes=WINDOW_BYTES)
            version = server_version(conn)
        return Window(ready, tuple(self._named(deliveries)), version)

    def inspect(self, row: Callable[[str, Delivery], FailedJob], detail: Callable[[Window, str, Delivery], JobDetail],
                keep: Callable[[Delivery], bool] | None = None, notes: Sequence[str] = (),
                window: Window | None = None) -> Inspection:  # fmt: skip
        """One reading of the queue (``window``), held as an ``Inspection``: its messages that ``keep``
        accepts, newest first, as rows, and each one's detail on demand from what was read."""
        window = window or self.window()
        items = [(i, d) for i, d in window.items if keep is None or keep(d)][::-1]
        by_id = dict(items)
        total = window.ready if keep is None else (None if window.truncated else len(items))

        def one(job_id: str) -> JobDetail:
            delivery = by_id.get(job_id)
            if delivery is None:
                raise NotFound(f"no message {job_id!r} among the {len(window.items):,} read from RabbitMQ queue {self.queue!r}")
            return with_destination(detail(window, job_id, delivery), self.requeue_to(delivery))

        more = list(notes)
        if window.truncated:
            more.append(f"Only the first {len(window.items):,} of {window.ready:,} messages of {self.queue} were read "
                        f"(at most {self.limit:,}, or {WINDOW_BYTES // 1024 // 1024} MB of bodies).")  # fmt: skip
        return Inspection(self.queue, [row(i, d) for i, d in items], total, one, truncated=window.truncated, notes=more)

    def page(self, window: Window, cursor: str | None, limit: int,
             keep: Callable[[Delivery], bool] | None = None) -> Page[tuple[str, Delivery]]:  # fmt: skip
        """One page, newest first, of the window's messages that ``keep`` accepts."""
        offset = parse_offset(cursor)
        rows = [row for row in window.items if keep is None or keep(row[1])][::-1]
        total: int | None = len(rows)
        if keep is None:
            total = window.ready
        elif window.truncated:
            total = None  # how many of the unread messages ``keep`` accepts is unknown
        end = offset + limit
        return Page(
            items=tuple(rows[offset:end]),
            total=total,
            next_cursor=str(end) if end < len(rows) else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def find(self, job_id: str, window: Window | None = None) -> Delivery:
        """The message named ``job_id`` within the window. Raises NotFound."""
        for name, delivery in (window or self.window()).items:
            if name == job_id:
                return delivery
        raise NotFound(f"no message {job_id!r} among the first {self.limit:,} of RabbitMQ queue {self.queue!r}")

    def move(self, ids: Selection, plan: Callable[[Delivery], Redrive | None],
             keep: Callable[[Delivery], bool] | None = None) -> ActionResult:  # fmt: skip
        """Republish (confirmed), then ack, each selected message. A message ``plan``
        answers None for is left in place and reported as not found."""
        return self._take(ids, plan, keep)

    def drop(self, ids: Selection, keep: Callable[[Delivery], bool] | None = None) -> ActionResult:
        """Ack (delete) each selected message."""
        return self._take(ids, None, keep)

    def _take(self, ids: Selection, plan: Callable[[Delivery], Redrive | None] | None,
              keep: Callable[[Delivery], bool] | None) -> ActionResult:  # fmt: skip
        wanted = None if ids is ALL else dict.fromkeys(ids)
        refused: list[str] = []
        tally = Tally()  # a connection cut part of the way through is reported with what moved before it
        try:
            with tally.reporting(), self.rabbit.connection() as conn, amqp_errors(f"RabbitMQ queue {self.queue!r}"):
                publisher = ConfirmedPublisher(conn) if plan is not None else None
                everything = wanted is None and keep is None
                # Messages passed over stay unacked until the end, so they need
                # room in the prefetch window; a plain "all" acks as it goes.
                with Held(conn, self.queue, limit=1 << 62 if wanted is None else self.limit,
                          prefetch=MOVE_PREFETCH if everything else 65535) as held:  # fmt: skip
                    for job_id, delivery in self._named(held):
                        if (wanted is not None and job_id not in wanted) or (keep is not None and not keep(delivery)):
                            continue
                        if wanted is not None:
                            del wanted[job_id]
                        redrive = plan(delivery) if plan is not None else None
                        if plan is not None and redrive is None:
                            refused.append(job_id)
                        else:
                            if publisher is not None and redrive is not None:
                                _publish(publisher, redrive, tally.affected, self.queue)
                            held.ack(delivery)  # only now: the copy is confirmed
                            tally.add(1)
                        if wanted is not None and not wanted:
                            break
        finally:
            self.rabbit.directory.changed()
        return ActionResult(tally.affected, tuple([*(wanted or ()), *refused]))

    def purge(self) -> int:
        """Remove every message of the dead-letter queue."""
        return purge_queue(self.rabbit, self.queue)


def _publish(publisher: ConfirmedPublisher, redrive: Redrive, done: int, source: str) -> None:
    try:
        publisher.publish(redrive.routing_key, redrive.body, redrive.properties, exchange=redrive.exchange)
    except pika.exceptions.UnroutableError:
        raise Unsupported(
            f"Moved {done:,}; then RabbitMQ could not route a message to queue {redrive.routing_key!r} "
            f"(does it exist?). That message and the rest are still in {source!r}."
        ) from None


def purge_queue(rabbit: RabbitBackend, queue: str) -> int:
    """queue.purge: the number of ready messages removed; unacked ones stay with
    their consumers. Raises NotFound."""
    try:
        with rabbit.connection() as conn, amqp_errors(f"RabbitMQ queue {queue!r}"):
            return conn.channel().queue_purge(queue).method.message_count
    finally:
        rabbit.directory.changed()


def parse_offset(cursor: str | None) -> int:
    """A page cursor as an offset. Raises NotFound for one we did not give out."""
    if cursor in (None, ""):
        return 0
    if not cursor.isdigit():
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
    return int(cursor)
