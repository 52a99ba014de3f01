"""The demo's Celery app and tasks, on either broker.

``celery -A celery_jobs worker`` with ``DEMO_BROKER=redis`` (broker and
results in the demo's Redis database 1) or ``rabbitmq`` (broker: the demo's
vhost; results: Redis database 4). ``result_extended`` keeps a failed task's
name and arguments, which the dashboard shows and requeues with.
"""

from __future__ import annotations

import os

from celery import Celery

from behaviour import behave

QUEUES = ("celery", "payments")


def urls(broker: str) -> tuple[str, str]:
    """(broker URL, result backend URL) for ``broker``."""
    redis = os.environ.get("DEMO_REDIS", "redis://127.0.0.1:6380").rstrip("/")
    if broker == "rabbitmq":
        return os.environ.get("DEMO_AMQP", "amqp://guest:guest@127.0.0.1:5672/queuewatch-demo"), f"{redis}/4"
    return f"{redis}/1", f"{redis}/1"


def make_app(broker: str) -> Celery:
    broker_url, results_url = urls(broker)
    app = Celery("celery_jobs", broker=broker_url, backend=results_url, set_as_current=False)
    app.conf.update(
        result_extended=True,
        result_expires=6 * 3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue="celery",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(os.environ.get("DEMO_BROKER", "redis"))


@app.task(name="celery_jobs.charge_card")
def charge_card(kind, n):
    return behave(kind, n)


@app.task(name="celery_jobs.send_receipt")
def send_receipt(kind, n):
    return behave(kind, n)
