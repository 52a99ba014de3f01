"""Dramatiq's message format, shared by its Redis and RabbitMQ adapters.

A message is what Dramatiq's JSONEncoder writes: ``queue_name``, ``actor_name``,
``args``, ``kwargs``, ``options``, ``message_id``, ``message_timestamp`` (ms).
Options carry ``retries``, ``traceback`` (of the last attempt that was
retried), ``eta`` (delayed), ``redis_message_id`` (Redis broker) and whatever
middleware added. Brokers keep a message as it was last enqueued: the final
attempt's traceback never reaches them, so a message that failed without a
retry has none stored. Messages are decoded for display only (a PickleEncoder
message is walked, never loaded); a requeue rewrites only JSON messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from queuewatch.adapters.base import FailedJob, JobDetail
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.decoding.tracebacks import clip, split_exception

LIST_DECODE_LIMIT = 256 * 1024  # bytes of a message decoded per row of a list
TRACEBACK_LIMIT = 64_000
MESSAGE_LIMIT = 4_000
NO_TRACEBACK = "no traceback stored (it failed without a retry; see the worker's log)"


@dataclass(frozen=True)
class Message:
    """A Dramatiq message as the dashboard shows it."""

    fields: dict[str, Any]  # the decoded message object; {} when it is not one
    decoded: payload.Decoded

    @property
    def options(self) -> dict[str, Any]:
        options = self.fields.get("options")
        return options if isinstance(options, dict) else {}

    @property
    def message_id(self) -> str | None:
        value = self.fields.get("message_id")
        return value if isinstance(value, str) else None

    @property
    def retries(self) -> int:
        value = self.options.get("retries")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @property
    def traceback(self) -> str | None:
        value = self.options.get("traceback")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def sent_at(self) -> datetime | None:
        return ms_time(self.fields.get("message_timestamp"))


def parse(data: bytes | None, *, max_bytes: int = 16 * 1024 * 1024) -> Message:
    decoded = payload.decode(data, max_bytes=max_bytes)
    value = decoded.value
    return Message(value if decoded.error is None and isinstance(value, dict) else {}, decoded)


def message_id_of(body: bytes | None) -> str | None:
    """The message_id of a stored JSON message, or None."""
    try:
        value = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    message_id = value.get("message_id") if isinstance(value, dict) else None
    return message_id if isinstance(message_id, str) else None


def ms_time(value: Any) -> datetime | None:
    """Milliseconds since the epoch (Dramatiq's timestamps, XQ scores) as a UTC datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e15:
        return datetime.fromtimestamp(value / 1000, timezone.utc)
    return None


def _call(message: Message) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
    fields = message.fields
    actor = fields.get("actor_name")
    args = fields.get("args")
    kwargs = fields.get("kwargs")
    return (
        actor if isinstance(actor, str) else None,
        tuple(args) if isinstance(args, (list, tuple)) else (),
        {str(k): v for k, v in kwargs.items()} if isinstance(kwargs, dict) else {},
    )


def failed_row(message: Message, *, job_id: str, failed_at: datetime | None) -> FailedJob:
    """One row of a dead-letter list."""
    actor, args, kwargs = _call(message)
    if not message.fields:
        return FailedJob(job_id, None, message.decoded.error or "", None, None, failed_at, None)
    error_type, error_message = split_exception(message.traceback)
    if message.traceback is None:
        error_message = NO_TRACEBACK
    return FailedJob(
        id=job_id,
        function=actor,
        args_preview=args_preview(args, kwargs),
        error_type=error_type,
        error_message=clip(error_message, MESSAGE_LIMIT),
        failed_at=failed_at,
        attempts=message.retries + 1,  # the stored count is of retries before the final attempt
    )


def detail(message: Message, *, job_id: str, queue: str, failed_at: datetime | None,
           details: tuple[tuple[str, str], ...] = (), notes: tuple[str, ...] = ()) -> JobDetail:  # fmt: skip
    """A dead letter in full: arguments, options, the stored traceback, and what to know before acting."""
    row = failed_row(message, job_id=job_id, failed_at=failed_at)
    _, args, kwargs = _call(message)
    shown = [("message_id", message.message_id or "—"), ("queue_name", str(message.fields.get("queue_name", "—")))]
    shown += [(f"option {key}", value[:2_000] if isinstance(value, str) else payload.render(value, limit=2_000))
              for key, value in message.options.items() if key != "traceback"]  # fmt: skip
    told = list(notes)
    if message.fields:
        if message.traceback is None:
            told.append("Dramatiq stores a message as it was last enqueued, so the traceback of its final attempt "
                        "is never saved; this message failed without a retry, so none is stored.")  # fmt: skip
        else:
            told.append(f"The traceback is from attempt {message.retries} of {message.retries + 1}, the last one "
                        "that was retried: Dramatiq does not store the final attempt's.")  # fmt: skip
        told.append("Requeue resets retries and keeps message_timestamp: an actor whose max_age is shorter than "
                    "this message's age dead-letters it again at once (Dramatiq's AgeLimit).")  # fmt: skip
    return JobDetail.of(
        row,
        queue=queue,
        args=args,
        kwargs=kwargs,
        traceback=clip(message.traceback, TRACEBACK_LIMIT),
        payload_encoding=message.decoded.encoding,
        payload_error=message.decoded.error,
        status="dead-lettered",
        enqueued_at=message.sent_at,
        details=(*shown, *details),
        notes=tuple(told),
    )


def requeued(data: bytes, queue: str, *, redis_message_id: str | None = None) -> bytes | None:
    """The message a requeue enqueues: retries reset, no eta, on ``queue`` (and a
    fresh ``redis_message_id`` for the Redis broker). None when the stored
    message is not a JSON Dramatiq message, which cannot be rewritten safely."""
    try:
        fields = json.loads(data)
    except (ValueError, RecursionError):  # also UnicodeDecodeError
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("actor_name"), str):
        return None
    options = dict(fields["options"]) if isinstance(fields.get("options"), dict) else {}
    options["retries"] = 0
    options.pop("eta", None)  # a message with an eta would be delayed again, not run
    if redis_message_id is not None:
        options["redis_message_id"] = redis_message_id
    fields["options"] = options
    fields["queue_name"] = queue  # a message dead-lettered from the delay queue named "Q.DQ"
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")  # as Dramatiq's JSONEncoder writes it
