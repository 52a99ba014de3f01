"""RabbitMQ helpers every AMQP adapter shares (plain queues, Dramatiq, Celery).

Owns: the one boundary where pika's exceptions become ours (``amqp_errors``);
counting by passive declare; ``x-death`` parsing; and the two ways messages leave the head of a
queue: ``held`` (taken unacknowledged, and rejected with requeue unless acked)
and ``ConfirmedPublisher`` (publisher confirms + mandatory routing).

The ordering property the dead-letter views rely on: a message rejected or
nacked with requeue=True goes back to its original position in a classic
queue (RabbitMQ >= 2.7), and a connection that dies requeues its unacked
messages the same way. So reading a queue by taking messages unacked and
rejecting them keeps its order and count (tests/test_amqp_adapter.py proves
it); it sets their ``redelivered`` flag, and a quorum queue before RabbitMQ
4.3 counts it as a delivery (``inspection_note``).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pika
import pika.data
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from queuewatch.adapters.errors import AdapterError, BackendUnavailable, NotFound, Unsupported


def _keep_float_fields() -> None:
    """Make pika read and write AMQP float/double field values as they are.

    pika (1.3, 1.4) decodes them with ``long(...)``, so 4.5 becomes 4, and cannot
    encode a Python float at all. Celery's client (py-amqp) writes them (e.g. the
    ``timelimit`` header), so a dead letter moved through pika would silently
    change. Doubles are read and written as IEEE doubles, as RabbitMQ and py-amqp do.
    """
    decode, encode = pika.data.decode_value, pika.data.encode_value
    if getattr(decode, "queuewatch", False):
        return

    def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
        kind = encoded[offset : offset + 1]
        if kind == b"d":
            return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
        if kind == b"f":
            return struct.unpack_from(">f", encoded, offset + 1)[0], offset + 5
        return decode(encoded, offset)

    def encode_value(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return encode(pieces, value)

    decode_value.queuewatch = True  # type: ignore[attr-defined]
    pika.data.decode_value, pika.data.encode_value = decode_value, encode_value


_keep_float_fields()


@contextlib.contextmanager
def amqp_errors(what: str = "RabbitMQ") -> Iterator[None]:
    """Map pika's exceptions (and socket errors) to ours."""
    try:
        yield
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise NotFound(f"{what}: {exc.reply_text}") from exc
        raise BackendUnavailable(f"{what} refused the command: {exc.reply_code} {exc.reply_text}") from exc
    except pika.exceptions.ShortStringTooLong as exc:  # refused by pika before anything is sent
        raise NotFound(f"{what}: RabbitMQ names are at most 255 bytes, so there is no such queue") from exc
    except pika.exceptions.UnroutableError as exc:
        raise Unsupported(f"{what} could not route the message to its queue (does the queue exist?)") from exc
    except pika.exceptions.NackError as exc:
        raise BackendUnavailable(f"{what} refused to take the message (publisher confirm nacked)") from exc
    except pika.exceptions.UnsupportedAMQPFieldException as exc:
        # e.g. a float header written by py-amqp (Celery): pika reads it but cannot encode it.
        raise Unsupported(f"this message has a header value that cannot be written back ({exc}); "
                          "it was left where it is") from exc  # fmt: skip
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BackendUnavailable(f"{what} is unreachable: {exc!r}") from exc
    except AdapterError:
        raise
    except Exception as exc:  # pika raises more than AMQPError (connection workflow, assertions on a broken channel)
        raise BackendUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc


# --- counting -------------------------------------------------------------------


def declare_counts(conn: BlockingConnection, names: Iterable[str]) -> dict[str, tuple[int, int] | None]:
    """(ready, consumers) of each queue by passive declare: exact and current, never
    creates anything. None for a queue that does not exist (or is exclusive to
    another connection). Runs on its own channels: a failed declare closes one."""
    counts: dict[str, tuple[int, int] | None] = {}
    channel = conn.channel()
    for name in dict.fromkeys(names):
        try:
            ok = channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code not in (404, 405):
                raise
            counts[name] = None
            channel = conn.channel()
        else:
            counts[name] = (ok.method.message_count, ok.method.consumer_count)
    with contextlib.suppress(pika.exceptions.AMQPError):
        channel.close()
    return counts


def server_version(conn: BlockingConnection) -> tuple[int, ...] | None:
    """The broker's version from the AMQP handshake, e.g. (3, 10, 8)."""
    raw = (getattr(conn._impl, "server_properties", None) or {}).get("version")  # noqa: SLF001 - pika keeps it there
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw or "")
    parts = [int(p) for p in text.split("-")[0].split(".") if p.isdigit()]
    return tuple(parts) or None


def inspection_note(queue_type: str | None, version: tuple[int, ...] | None, arguments: Mapping[str, Any]) -> str | None:
    """The sentence an operator must read before inspecting a quorum queue, or None."""
    if queue_type != "quorum" or (version is not None and version >= (4, 3)):
        return None
    limit = arguments.get("x-delivery-limit")
    note = ("This is a quorum queue: before RabbitMQ 4.3, reading its messages here counts as a delivery "
            "attempt for each message read.")  # fmt: skip
    if limit is not None:
        note += f" With x-delivery-limit {limit}, a message read that many times is dropped or dead-lettered."
    elif version is not None and version >= (4, 0):
        note += " RabbitMQ 4 applies a default delivery limit of 20: a message read that many times is dropped or dead-lettered."
    return note


# --- x-death ----------------------------------------------------------------------


@dataclass(frozen=True)
class Death:
    """One entry of the ``x-death`` header RabbitMQ adds when it dead-letters a message."""

    queue: str | None
    reason: str | None  # rejected | expired | maxlen | delivery_limit
    count: int | None
    exchange: str | None
    routing_keys: tuple[str, ...]
    time: datetime | None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


def deaths(headers: Mapping[str, Any] | None) -> tuple[Death, ...]:
    """The ``x-death`` entries, most recent first (RabbitMQ keeps them in that order)."""
    entries = (headers or {}).get("x-death")
    if not isinstance(entries, list):
        return ()
    found = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        keys = entry.get("routing-keys")
        count = entry.get("count")
        found.append(
            Death(
                queue=_text(entry.get("queue")),
                reason=_text(entry.get("reason")),
                count=int(count) if isinstance(count, int) else None,
                exchange=_text(entry.get("exchange")),
                routing_keys=tuple(_text(k) or "" for k in keys) if isinstance(keys, list) else (),
                time=_time(entry.get("time")),
            )
        )
    return tuple(found)


def origin_queue(headers: Mapping[str, Any] | None) -> str | None:
    """The queue a dead letter last died in: where a redrive sends it back."""
    headers = headers or {}
    last = _text(headers.get("x-last-death-queue"))  # RabbitMQ >= 3.13
    if last:
        return last
    found = deaths(headers)
    if found and found[0].queue:
        return found[0].queue
    return _text(headers.get("x-first-death-queue"))


# --- taking messages off the head of a queue ---------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One message taken from a queue, still unacknowledged (so still the broker's)."""

    tag: int
    position: int  # 0 = the head of the queue when it was taken
    body: bytes
    properties: pika.BasicProperties
    redelivered: bool


class Held:
    """Messages taken from the head of ``queue`` without acknowledging them.

    Iterating yields up to ``limit`` messages in queue order. ``ack`` removes
    one for good; every message not acked when the block ends is rejected with
    requeue and goes back to where it was. If the process dies instead, the
    broker requeues them when the connection drops: a crash loses nothing.
    """

    def __init__(self, conn: BlockingConnection, queue: str, limit: int, *, prefetch: int = 1000,
                 idle_seconds: float = 0.5, max_bytes: int | None = None) -> None:  # fmt: skip
        self.queue = queue
        self.max_bytes = max_bytes  # stop taking once the bodies taken add up to this (a read, not a move)
        self.bytes = 0
        self.channel: BlockingChannel = conn.channel()
        ready = self.channel.queue_declare(queue, passive=True).method.message_count
        # Only what was there when we started: messages arriving meanwhile
        # (a requeued job failing again) are not chased.
        self.expected = min(ready, limit)
        self.ready = ready
        self.channel.basic_qos(prefetch_count=max(1, min(self.expected, prefetch, 65535)))
        self.idle_seconds = idle_seconds
        self.taken = 0
        self._consuming = False

    def __iter__(self) -> Iterator[Delivery]:
        if self.expected == 0:
            return
        self._consuming = True
        for method, properties, body in self.channel.consume(self.queue, inactivity_timeout=self.idle_seconds):
            if method is None:  # the queue ran dry before our count: someone else took messages
                break
            yield Delivery(method.delivery_tag, self.taken, body, properties, bool(method.redelivered))
            self.taken += 1
            self.bytes += len(body)
            if self.taken >= self.expected or (self.max_bytes is not None and self.bytes >= self.max_bytes):
                break

    def ack(self, delivery: Delivery) -> None:
        self.channel.basic_ack(delivery.tag)

    def release(self) -> None:
        """Give back every message not acked, in its original position."""
        if not self.channel.is_open:
            return
        if self._consuming:
            self.channel.cancel()  # rejects, with requeue, what pika had buffered
        self.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        self.channel.close()

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            self.release()


def peek(conn: BlockingConnection, queue: str, limit: int, max_bytes: int | None = None) -> tuple[int, list[Delivery]]:
    """(ready count, the first ``limit`` messages, or fewer once their bodies reach ``max_bytes``)
    of a queue, all given back at once."""
    with Held(conn, queue, limit, prefetch=limit, max_bytes=max_bytes) as held:
        return held.ready, list(held)


class ConfirmedPublisher:
    """Publishes with publisher confirms and mandatory routing: when ``publish``
    returns, the broker has the copy in a queue. Raises UnroutableError/NackError."""

    def __init__(self, conn: BlockingConnection) -> None:
        self.channel = conn.channel()
        self.channel.confirm_delivery()

    def publish(self, routing_key: str, body: bytes, properties: pika.BasicProperties, exchange: str = "") -> None:
        self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
