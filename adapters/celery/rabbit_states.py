"""Celery's waiting tasks on a RabbitMQ broker (``states`` has the other states).

Waiting messages can be read only by taking them and giving them back, which
RabbitMQ counts as a delivery: an *inspection*, done when the operator asks
(``inspect_jobs``), never on a page view. Messages a worker holds (running,
prefetched, held for an ETA) are not among them: they are the scheduled and in
progress lists, from the workers' answers. Deleting waiting messages is not
offered: a message can be taken out of a RabbitMQ queue only from its head.
"""

from __future__ import annotations

from typing import Any

from queuewatch.adapters.base import Inspection, Job, JobDetail
from queuewatch.adapters.errors import Unsupported
from queuewatch.adapters.rabbitmq.amqp import Delivery
from queuewatch.adapters.rabbitmq.dead_letters import DeadLetterQueue, Window

from .messages import from_amqp

READING = ("Reading {queue} takes its first messages unacknowledged and gives them back in place: nothing is lost or "
           "reordered, but RabbitMQ marks them redelivered. Messages a worker already holds are not among them.")  # fmt: skip


class CeleryRabbitStates:
    """The waiting-task methods of ``CeleryRabbitAdapter`` (a mixin)."""

    rabbit: Any
    inspect_limit: int

    def inspects_jobs(self, queue: str, state: str) -> bool:
        if state == "failed":
            return self.inspects(queue)  # type: ignore[attr-defined]
        return state == "waiting"

    def inspect_jobs(self, queue: str, state: str) -> Inspection:
        if state == "failed":
            return self.inspect(queue)  # type: ignore[attr-defined]
        if state != "waiting":
            raise Unsupported(f"Celery lists {state} tasks of {queue!r} without an inspection")
        from .on_rabbitmq import _celery_id

        def row(job_id: str, delivery: Delivery) -> Job:
            message = from_amqp(delivery.body, delivery.properties, max_bytes=256 * 1024)
            return Job(job_id, message.task, message.preview, None, None, None,
                       None if message.retries is None else message.retries + 1, state="waiting")  # fmt: skip

        def detail(window: Window, job_id: str, delivery: Delivery) -> JobDetail:
            message = from_amqp(delivery.body, delivery.properties)
            return JobDetail(
                id=job_id, function=message.task, args_preview=message.preview, error_type=None, error_message=None,
                failed_at=None, attempts=None if message.retries is None else message.retries + 1, queue=queue,
                args=message.args or (), kwargs=message.kwargs or {}, payload_encoding=message.encoding,
                payload_error=message.error, status="waiting in RabbitMQ", state="waiting",
                details=(("position", f"{delivery.position + 1:,} of {window.ready:,}"),),
                notes=(READING.format(queue=queue),),
            )  # fmt: skip

        reader = DeadLetterQueue(self.rabbit, queue, identify=_celery_id, limit=self.inspect_limit)
        inspection = reader.inspect(row, detail, notes=(READING.format(queue=queue),))  # type: ignore[arg-type]
        # The reader lists newest first (dead letters); waiting messages read next to run first.
        return Inspection(inspection.queue, inspection.rows[::-1], inspection.total, inspection.detail,
                          truncated=inspection.truncated, notes=inspection.notes)  # fmt: skip
