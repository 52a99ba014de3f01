"""RabbitMQ: what every AMQP adapter shares, and plain queues as a system.

``amqp`` (pika's errors mapped, passive-declare counts, ``x-death``, taking
messages from a queue's head and giving them back, confirmed publishing),
``management`` (the management HTTP API and the vhost's queue directory),
``dead_letters`` (reading and moving a dead-letter queue), and
``plain_queues`` (system ``amqp``: the queues no job system claims, with their
dead-letter queues).
"""

from .plain_queues import AMQPAdapter

__all__ = ["AMQPAdapter"]
