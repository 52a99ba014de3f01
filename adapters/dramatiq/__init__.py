"""Dramatiq on Redis or RabbitMQ: ``messages`` (its message format, shared),
``on_redis`` and ``on_rabbitmq`` (an adapter per broker), ``discovery`` (queue
names found on Redis), and the Lua scripts of the Redis moves."""

from .on_rabbitmq import DramatiqRabbitAdapter
from .on_redis import DramatiqRedisAdapter

__all__ = ["DramatiqRabbitAdapter", "DramatiqRedisAdapter"]
