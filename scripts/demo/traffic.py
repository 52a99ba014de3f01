"""Steady demo traffic into every job system: one job per system each
``--interval`` seconds, drawn from ``behaviour.KINDS``; now and then a job
scheduled minutes ahead. The first run against a fresh Redis also seeds a
burst (failures of every cause, a few scheduled jobs), once: a marker key in
the RQ database says it was done, so a restarted demo does not seed again.

Jobs are sent the way an application would, through each library's own
client API (never through the dashboard). Stops at SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import uuid
from datetime import timedelta

import dramatiq
import pika
import redis
from arq import create_pool
from arq.connections import RedisSettings
from rq import Queue, Retry

import amqp_jobs
import celery_jobs
from behaviour import KINDS, pick

REDIS = os.environ.get("DEMO_REDIS", "redis://127.0.0.1:6380").rstrip("/")
AMQP = os.environ.get("DEMO_AMQP", "amqp://guest:guest@127.0.0.1:5672/queuewatch-demo")
SEED_MARKER = "queuewatch-demo:seeded"


class RQProducer:
    name = "rq"

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(f"{REDIS}/0")
        self.queues = {name: Queue(name, connection=self.client) for name in ("emails", "payments", "reports")}

    def send(self, kind: str, n: int, delay: float | None = None) -> None:
        queue, function = random.choice((("emails", "rq_jobs.send_email"), ("payments", "rq_jobs.charge_card"),
                                         ("reports", "rq_jobs.render_report")))  # fmt: skip
        options = {"retry": Retry(max=1, interval=10)} if queue == "payments" else {}
        if delay:
            self.queues[queue].enqueue_in(timedelta(seconds=delay), function, kind, n, **options)
        else:
            self.queues[queue].enqueue(function, kind, n, result_ttl=3600, failure_ttl=6 * 3600, **options)


class CeleryProducer:
    def __init__(self, broker: str) -> None:
        self.name = f"celery on {broker}"
        self.app = celery_jobs.make_app(broker)

    def send(self, kind: str, n: int, delay: float | None = None) -> None:
        queue, task = random.choice((("celery", "celery_jobs.send_receipt"), ("payments", "celery_jobs.charge_card")))
        self.app.send_task(task, args=[kind, n], queue=queue, countdown=delay)


class DramatiqProducer:
    def __init__(self, broker: str) -> None:
        import dramatiq_jobs

        self.name = f"dramatiq on {broker}"
        self.broker = dramatiq_jobs.make_broker(broker)
        for queue in dramatiq_jobs.QUEUES:
            self.broker.declare_queue(queue)

    def send(self, kind: str, n: int, delay: float | None = None) -> None:
        queue, actor = random.choice((("default", "sync_inventory"), ("thumbnails", "make_thumbnail")))
        message = dramatiq.Message(queue_name=queue, actor_name=actor, args=(kind, n), kwargs={}, options={})
        self.broker.enqueue(message, delay=int(delay * 1000) if delay else None)


class ArqProducer:
    name = "arq"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(f"{REDIS}/3")))

    def send(self, kind: str, n: int, delay: float | None = None) -> None:
        function = random.choice(("resize_image", "notify_user"))
        defer = {"_defer_by": timedelta(seconds=delay)} if delay else {}
        self.loop.run_until_complete(self.pool.enqueue_job(function, kind, n, **defer))


class AMQPProducer:
    name = "amqp"

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        self.channel = self.connection.channel()
        amqp_jobs.declare(self.channel)

    def send(self, kind: str, n: int, delay: float | None = None) -> None:
        # No scheduling in plain AMQP: a "scheduled" message here is one that must be handled in time or expire.
        properties = pika.BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json", delivery_mode=2,
                                          expiration="4000" if delay or n % 9 == 0 else None, type="webhook.deliver")  # fmt: skip
        body = json.dumps({"kind": kind, "n": n, "url": f"https://hooks.example.com/{n % 13}"})
        self.channel.basic_publish("", amqp_jobs.QUEUE, body, properties)

    def idle(self, seconds: float) -> None:
        self.connection.sleep(seconds)  # keeps pika's heartbeats going


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default %(default)s)")
    args = parser.parse_args(argv)
    stopping: list[bool] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))

    producers = [RQProducer(), CeleryProducer("redis"), CeleryProducer("rabbitmq"), DramatiqProducer("redis"),
                 DramatiqProducer("rabbitmq"), ArqProducer(), AMQPProducer()]  # fmt: skip
    amqp = producers[-1]
    rng = random.Random()
    if redis.Redis.from_url(f"{REDIS}/0").set(SEED_MARKER, str(time.time()), nx=True):
        for producer in producers:
            for n, kind in enumerate(sorted(set(KINDS))):
                producer.send(kind, n)
            for n in range(3):
                producer.send("ok", 100 + n, delay=rng.uniform(120, 900))
        print("traffic: seeded every system (once: the marker key is in the RQ database)", flush=True)
    n = 1000
    while not stopping:
        for producer in producers:
            try:
                producer.send(pick(rng), n, delay=rng.uniform(60, 600) if n % 15 == 0 else None)
            except Exception as exc:  # a broker restarting: say so, keep going
                print(f"traffic: {producer.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        n += 1
        amqp.idle(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
