"""Asking live Celery workers over their mailbox (kombu's pidbox), without celery.

A broadcast is a JSON ``{"method", "arguments", "destination", "pattern",
"matcher", "ticket", "reply_to": {"exchange": "reply.celery.pidbox",
"routing_key": OID}}`` on the fanout exchange ``celery.pidbox``; each worker
answers ``{hostname: reply}`` on the direct exchange ``reply.celery.pidbox``
with routing key OID. Used for ``active_queues`` (which queues a worker
consumes) and ``conf`` (its ``result_backend``, with the password masked).

- Redis: the request is PUBLISHed on ``{prefix}/{db}.celery.pidbox`` in
  kombu's envelope; for the answer to be routed, the member
  ``OID\\x06\\x16\\x06\\x16OID.reply.celery.pidbox`` is added to the set
  ``_kombu.binding.reply.celery.pidbox`` (as ``celery inspect`` does) and
  removed, with the reply list, once the answers are in.
- RabbitMQ: an exclusive reply queue bound to ``reply.celery.pidbox`` (declared
  as kombu declares it: direct, not durable), and a publish to
  ``celery.pidbox`` if a worker declared it.

Only the sampler asks, only while workers are alive, at most once a minute
per question, waiting at most ``timeout`` seconds.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
import redis

from .broker_scan import BINDING_PREFIX
from .messages import CONTENT_TYPE, SEP

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
MAX_REPLY_BYTES = 1024 * 1024


def request(method: str, arguments: dict[str, Any], oid: str | None, destination: list[str] | None) -> dict[str, Any]:
    """A broadcast as kombu's ``Mailbox._publish`` makes it; ``oid`` None: no reply wanted."""
    message = {"method": method, "arguments": arguments, "destination": destination, "pattern": None, "matcher": None}
    if oid is not None:
        message |= {"ticket": str(uuid.uuid4()), "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": oid}}
    return message


def _merge(replies: dict[str, Any], body: Any) -> None:
    if isinstance(body, dict):
        replies.update({k: v for k, v in body.items() if isinstance(k, str)})


class RedisMailbox:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self.db = client.connection_pool.connection_kwargs.get("db", 0)

    def ask(self, method: str, arguments: dict[str, Any], *, expect: int, timeout: float,
            destination: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """{hostname: reply} from the workers that answered within ``timeout`` (at most ``expect``)."""
        oid = str(uuid.uuid4())
        reply_queue = f"{self.prefix}{oid}.{REPLY_EXCHANGE}"
        binding = f"{self.prefix}{BINDING_PREFIX}{REPLY_EXCHANGE}"
        member = f"{oid}{SEP}{SEP}{oid}.{REPLY_EXCHANGE}"
        replies: dict[str, Any] = {}
        self.client.sadd(binding, member)
        try:
            self._publish(request(method, arguments, oid, destination), timeout)
            deadline = time.monotonic() + timeout
            while len(replies) < expect and (left := deadline - time.monotonic()) > 0:
                popped = self.client.brpop([reply_queue], timeout=max(0.05, min(left, 1.0)))
                if popped is None:
                    continue
                data = popped[1]
                if len(data) > MAX_REPLY_BYTES:
                    continue
                try:
                    reply = json.loads(data)
                    _merge(replies, json.loads(base64.b64decode(reply["body"])))
                except (ValueError, KeyError, TypeError):
                    continue
        finally:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.srem(binding, member)
                pipe.delete(reply_queue)
                pipe.execute()
        return replies

    def send(self, method: str, arguments: dict[str, Any], *, destination: list[str] | None = None,
             expires: float = 10.0) -> int:  # fmt: skip
        """Broadcast a command without asking for replies; how many workers' mailboxes received it."""
        return int(self._publish(request(method, arguments, None, destination), expires))

    def _publish(self, message: dict[str, Any], expires: float) -> int:
        body = json.dumps(message).encode()
        envelope = {
            "body": base64.b64encode(body).decode("ascii"), "content-encoding": "utf-8", "content-type": CONTENT_TYPE,
            "headers": {"clock": 1, "expires": time.time() + expires},
            "properties": {"delivery_mode": 1, "delivery_info": {"exchange": EXCHANGE, "routing_key": ""},
                           "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
        }  # fmt: skip
        return self.client.publish(f"{self.prefix}/{self.db}.{EXCHANGE}", json.dumps(envelope))


class AMQPMailbox:
    def __init__(self, rabbit: RabbitBackend) -> None:
        self.rabbit = rabbit

    def ask(self, method: str, arguments: dict[str, Any], *, expect: int, timeout: float,
            destination: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        oid = str(uuid.uuid4())
        replies: dict[str, Any] = {}
        with self.rabbit.connection() as conn:
            channel = conn.channel()
            try:
                channel.exchange_declare(EXCHANGE, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return replies  # no worker ever declared its mailbox
            channel = conn.channel()
            channel.exchange_declare(REPLY_EXCHANGE, exchange_type="direct", durable=False, auto_delete=False)
            queue = f"{oid}.{REPLY_EXCHANGE}"
            channel.queue_declare(queue, exclusive=True, auto_delete=True)
            channel.queue_bind(queue, REPLY_EXCHANGE, routing_key=oid)
            # pika has no float field type: whole seconds compare with the worker's float clock all the same
            expires = int(time.time() + timeout) + 1
            properties = pika.BasicProperties(content_type=CONTENT_TYPE, content_encoding="utf-8", delivery_mode=1,
                                              headers={"clock": 1, "expires": expires})  # fmt: skip
            channel.basic_publish(EXCHANGE, "", json.dumps(request(method, arguments, oid, destination)).encode(), properties)
            deadline = time.monotonic() + timeout
            for method_frame, _, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.1):
                if method_frame is not None and len(body) <= MAX_REPLY_BYTES:
                    try:
                        _merge(replies, json.loads(body))
                    except ValueError:
                        pass
                if len(replies) >= expect or time.monotonic() > deadline:
                    break
            channel.cancel()
        return replies

    def send(self, method: str, arguments: dict[str, Any], *, destination: list[str] | None = None,
             expires: float = 10.0) -> int:  # fmt: skip
        """Broadcast a command without asking for replies (publisher-confirmed); 0 when no worker ever
        declared its mailbox exchange, else 1 (RabbitMQ does not say how many mailboxes it reached)."""
        with self.rabbit.connection() as conn:
            channel = conn.channel()
            try:
                channel.exchange_declare(EXCHANGE, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return 0
            channel = conn.channel()
            channel.confirm_delivery()
            properties = pika.BasicProperties(content_type=CONTENT_TYPE, content_encoding="utf-8", delivery_mode=1,
                                              headers={"clock": 1, "expires": int(time.time() + expires) + 1})  # fmt: skip
            channel.basic_publish(EXCHANGE, "", json.dumps(request(method, arguments, None, destination)).encode(), properties)
        return 1


def queue_names(reply: Any) -> list[str]:
    """Queue names out of an ``active_queues`` reply."""
    if not isinstance(reply, list):
        return []
    return sorted({q["name"] for q in reply if isinstance(q, dict) and isinstance(q.get("name"), str) and q["name"]})
