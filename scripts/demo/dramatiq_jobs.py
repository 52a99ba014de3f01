"""The demo's Dramatiq actors, on either broker.

``dramatiq dramatiq_jobs`` with ``DEMO_BROKER=redis`` (the demo's Redis
database 2) or ``rabbitmq`` (the demo's vhost). Failures are retried once,
after a second (so the delayed queue has something in it), then dead-lettered.
"""

from __future__ import annotations

import os

import dramatiq

from behaviour import behave

QUEUES = ("default", "thumbnails")


def make_broker(broker: str) -> dramatiq.Broker:
    if broker == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=os.environ.get("DEMO_AMQP", "amqp://guest:guest@127.0.0.1:5672/queuewatch-demo"))
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=os.environ.get("DEMO_REDIS", "redis://127.0.0.1:6380").rstrip("/") + "/2")


dramatiq.set_broker(make_broker(os.environ.get("DEMO_BROKER", "redis")))
RETRY = {"max_retries": 1, "min_backoff": 1000, "max_backoff": 2000}


@dramatiq.actor(queue_name="default", **RETRY)
def sync_inventory(kind, n):
    behave(kind, n)


@dramatiq.actor(queue_name="thumbnails", **RETRY)
def make_thumbnail(kind, n):
    behave(kind, n)
