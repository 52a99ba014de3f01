"""A plain RabbitMQ consumer with a dead-letter queue: no job library, just pika.

``webhooks`` is declared with a dead-letter exchange, so a message the
consumer rejects lands in ``webhooks.dlq`` with an ``x-death`` header saying
``rejected``; a message whose ``expiration`` passes while slow jobs hold the
consumer lands there as ``expired``. Run as ``python amqp_jobs.py`` with
``DEMO_AMQP``; stops at SIGTERM or SIGINT after the message in hand.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pika

from behaviour import behave

QUEUE, DEAD_LETTERS = "webhooks", "webhooks.dlq"


def declare(channel) -> None:  # type: ignore[no-untyped-def]
    channel.queue_declare(DEAD_LETTERS, durable=True)
    channel.queue_declare(QUEUE, durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DEAD_LETTERS})


def main() -> int:
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["DEMO_AMQP"]))
    channel = connection.channel()
    declare(channel)
    channel.basic_qos(prefetch_count=1)
    for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=1):
        if stopping:
            break
        if method is None:
            continue
        job = json.loads(body)
        try:
            behave(job["kind"], job["n"])
        except Exception:
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_ack(method.delivery_tag)
    channel.cancel()
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
