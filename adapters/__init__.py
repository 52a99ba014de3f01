"""Adapters: one module per job system, reading and moving jobs through the
system's own Redis keys and RabbitMQ queues. No Flask here; no job library is
imported at run time (DESIGN.md)."""
