"""Adapters: everything that talks to Redis and RabbitMQ.

The contract at this level: ``base`` (the ``Adapter`` interface and the frozen
values it answers with), ``errors`` (the only three errors an adapter raises),
``backends`` (a Redis database or RabbitMQ vhost, the registry of systems and
discovery). A package per job system (``rq``, ``celery``, ``dramatiq``,
``arq``, ``rabbitmq``), each with its helpers and Lua scripts beside it;
``decoding`` (payloads, never unpickled); ``failure_index`` (failures learned
by scanning, for the systems with no failed list); ``store`` (the dashboard's
own store); ``redis_errors`` (redis-py's exceptions mapped). No Flask here; no
job library is imported at run time (DESIGN.md).
"""
