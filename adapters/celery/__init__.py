"""Celery on a Redis or RabbitMQ broker, with a Redis result backend.

``base`` is what both brokers share (``CeleryAdapterBase``: workers from events,
failed tasks from results, requeue as a new task); ``on_redis`` and
``on_rabbitmq`` add each broker's queues, counts, purge and publishing. The
concerns they are made of: ``messages`` (task messages, protocol 2),
``results`` (result records), ``index`` (failed tasks learned by scanning),
``failures`` (how a failure is shown), ``events`` (the event listener and what
it learned), ``workers`` (workers as shown), ``pidbox`` (asking live workers),
``broker_scan`` (queue names found on a Redis broker); Lua scripts beside them.
"""

from .on_rabbitmq import CeleryRabbitAdapter
from .on_redis import CeleryRedisAdapter

__all__ = ["CeleryRabbitAdapter", "CeleryRedisAdapter"]
