"""Dramatiq's messages in every state on RabbitMQ (DESIGN.md "Jobs in every state").

Waiting (``Q``) and delayed (``Q.DQ``) messages can be read only by taking them
and giving them back, which RabbitMQ counts as a delivery: an *inspection*,
done when the operator asks (``inspect_jobs``), never on a page view. Messages
a consumer holds (running, prefetched, and delayed ones a worker keeps until
their eta) cannot be read at all; finished ones are not kept. Delete and
enqueue-now are not offered: a message can be taken out of a RabbitMQ queue
only from its head, one delivery at a time.
"""

from __future__ import annotations

from typing import Any

from queuewatch.adapters.base import STATES, Inspection, Job, JobDetail, Page
from queuewatch.adapters.errors import Unsupported
from queuewatch.adapters.rabbitmq.amqp import Delivery
from queuewatch.adapters.rabbitmq.dead_letters import DeadLetterQueue, Window

from . import messages as dramatiq

INSPECTED = {"waiting": "", "scheduled": ".DQ"}  # state -> the queue read
REASONS = {
    "in_progress": "RabbitMQ does not tell which messages a consumer holds: only how many (unacked, on the counts).",
    "finished": "Dramatiq keeps no record of finished messages: RabbitMQ forgets a message once it is acked.",
    "canceled": "Dramatiq has no canceled state.",
}
READING = ("Reading {queue} takes its first messages unacknowledged and gives them back in place: nothing is lost or "
           "reordered, but RabbitMQ marks them redelivered. Messages a worker already holds are not among them.")  # fmt: skip


class DramatiqRabbitJobStates:
    """The job-state methods of ``DramatiqRabbitAdapter`` (a mixin)."""

    rabbit: Any
    inspect_limit: int

    def job_states(self, queue: str) -> dict[str, str | None]:
        return {state: REASONS.get(state) for state in STATES}

    def inspects_jobs(self, queue: str, state: str) -> bool:
        return state in INSPECTED or state == "failed"

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        if state in REASONS or state not in STATES:
            raise Unsupported(REASONS.get(state, f"no state {state!r}"))
        raise Unsupported(f"Listing the {state} messages of {queue!r} is an inspection: ask for one (inspect_jobs).")

    def inspect_jobs(self, queue: str, state: str) -> Inspection:
        if state == "failed":
            return self.inspect(queue)  # type: ignore[attr-defined]
        if state not in INSPECTED:
            raise Unsupported(REASONS.get(state, f"no state {state!r}"))
        name = queue + INSPECTED[state]
        from .on_rabbitmq import _message_id

        def row(job_id: str, delivery: Delivery) -> Job:
            message = dramatiq.parse(delivery.body, max_bytes=dramatiq.LIST_DECODE_LIMIT)
            base = dramatiq.failed_row(message, job_id=job_id, failed_at=None)
            return Job(base.id, base.function, base.args_preview, None, None, None,
                       message.retries + 1 if message.fields else None, state=state, enqueued_at=message.sent_at,
                       scheduled_for=dramatiq.ms_time(message.options.get("eta")))  # fmt: skip

        def detail(window: Window, job_id: str, delivery: Delivery) -> JobDetail:
            message = dramatiq.parse(delivery.body)
            base = dramatiq.detail(message, job_id=job_id, queue=queue, failed_at=None,
                                   details=(("queue read", name), ("position", f"{delivery.position + 1:,} of {window.ready:,}")),
                                   notes=(READING.format(queue=name),))  # fmt: skip
            notes = tuple(n for n in base.notes if not n.startswith(("Requeue", "Dramatiq stores", "The traceback")))
            return JobDetail.of(base, state=state, status="delayed" if state == "scheduled" else "enqueued", notes=notes,
                                error_type=None, error_message=None,
                                scheduled_for=dramatiq.ms_time(message.options.get("eta")))  # fmt: skip

        reader = DeadLetterQueue(self.rabbit, name, identify=_message_id, limit=self.inspect_limit)
        inspection = reader.inspect(row, detail, notes=(READING.format(queue=name),))  # type: ignore[arg-type]
        # The reader lists newest first (dead letters); waiting messages read next to run first.
        return Inspection(inspection.queue, inspection.rows[::-1], inspection.total, inspection.detail,
                          truncated=inspection.truncated, notes=inspection.notes)  # fmt: skip
