"""Dramatiq's workers as its brokers record them, made readable.

Redis: a worker process is a random broker id (``uuid4``) in ``NS:__heartbeats__``,
and the messages it holds are in ``NS:__acks__.ID.Q``; Dramatiq records no host or
pid. RabbitMQ: Dramatiq records nothing; a process opens one AMQP connection per
consumer thread (two per queue: ``Q`` and ``Q.DQ``), which the management API
lists as "127.0.0.1:43828 -> 127.0.0.1:5672". They are shown one row per process
where the connections carry a client-provided name (pika's
``client_properties={"connection_name": ...}``), else one row per client host
that says what it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from queuewatch.adapters.base import Worker

UNNAMED = ("Dramatiq names no AMQP connection: RabbitMQ cannot tell which worker process each belongs to "
           "(one per consumer thread). Give the broker's URL client_properties={'connection_name': NAME} "
           "to see one row per process.")  # fmt: skip
REDIS_RECORDS = "Dramatiq's Redis broker records a random id per worker process: no host or pid."


def connection_names(management: Any) -> list[dict[str, Any]] | None:
    """The vhost's connections from the management API (names, client properties), or None."""
    listing = management.get(f"vhosts/{quote(management.vhost, safe='')}/connections")
    return [c for c in listing if isinstance(c, dict)] if isinstance(listing, list) else None


def _given_name(connection: Mapping[str, Any]) -> str | None:
    props = connection.get("client_properties") or {}
    name = connection.get("user_provided_name") or (props.get("connection_name") if isinstance(props, dict) else None)
    return str(name) if name else None


def rabbit_workers(backend: str, system: str, consumers: Mapping[str, Mapping[str, Any]],
                   connections: Iterable[Mapping[str, Any]] | None) -> list[Worker]:  # fmt: skip
    """One Worker per named process, or per client host: ``consumers`` is ``consumer_connections``'
    answer (connection name → host, queues); ``connections`` the management API's listing."""
    about = {str(c.get("name")): c for c in connections or ()}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for connection, entry in consumers.items():
        info = about.get(connection, {})
        host = entry.get("host") or info.get("peer_host")
        if host is None and not info:
            continue  # the management API fills in a new consumer's channel details a few seconds late
        given = _given_name(info)
        key = (given or host or "unknown host", given or "")  # a named process, or a host's unnamed connections
        group = groups.setdefault(key, {"host": host, "queues": set(), "connections": 0, "since": []})
        group["queues"] |= set(entry["queues"])
        group["connections"] += 1
        if isinstance(info.get("connected_at"), (int, float)):
            group["since"].append(info["connected_at"] / 1000)
    workers = []
    for (label, named), group in sorted(groups.items()):
        given = named or None
        n = group["connections"]
        details = [("connections", f"{n:,} AMQP connection{'' if n == 1 else 's'}, one per consumer thread")]
        if given is None:
            details.append(("note", UNNAMED))
        since = min(group["since"]) if group["since"] else None
        workers.append(Worker(
            backend=backend, system=system,
            name=given or f"{label} ({n:,} connection{'' if n == 1 else 's'})",
            hostname=group["host"], pid=None, queues=tuple(sorted(group["queues"])), state="consuming", alive=True,
            last_heartbeat=None, current_job=None,
            started_at=datetime.fromtimestamp(since, timezone.utc) if since else None, details=tuple(details),
        ))  # fmt: skip
    return workers
