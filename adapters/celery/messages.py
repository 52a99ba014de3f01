"""Celery task messages (protocol 2), read and written without importing celery or kombu.

On a Redis broker a queue is the lists ``NAME`` and ``NAME\\x06\\x16{3,6,9}``
(kombu's priority steps 0, 3, 6, 9; a priority maps to the highest step not
above it). Kombu LPUSHes each message as its JSON envelope: ``body`` (base64
of the JSON ``[args, kwargs, embed]``), ``content-type``, ``content-encoding``,
``headers`` (``task``, ``id``, ``argsrepr``, ``retries``, ``root_id``,
``parent_id``, ...) and ``properties`` (``delivery_tag``, ``delivery_info``,
``priority``, ``body_encoding``...); workers BRPOP, so the oldest is at the
right end. With ``global_keyprefix`` every key and channel carries the prefix.

On RabbitMQ the body is the JSON itself and the headers are AMQP headers;
``from_amqp`` reads one (a dead letter) for display.

``new_task`` builds the message Celery's ``as_task_v2`` would for a fresh
call: new id, retries 0, the exact args and kwargs given.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import pika

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
CONTENT_TYPE = "application/json"
REPR_LIMIT = 1024  # Celery's argsrepr_maxsize / kwargsrepr_maxsize
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def priority_step(priority: Any) -> int:
    """The priority list a message of ``priority`` goes to (kombu clamps to 0..9)."""
    try:
        value = max(0, min(9, int(priority)))
    except (TypeError, ValueError):
        value = 0
    return PRIORITY_STEPS[bisect.bisect(PRIORITY_STEPS, value) - 1]


def list_key(queue: str, priority: Any = 0, prefix: str = "") -> str:
    step = priority_step(priority)
    return f"{prefix}{queue}{SEP}{step}" if step else f"{prefix}{queue}"


def priority_keys(queue: str, prefix: str = "") -> list[str]:
    """Every list of ``queue``, highest priority (consumed first) first."""
    return [list_key(queue, step, prefix) for step in PRIORITY_STEPS]


def queue_of_key(key: str, prefix: str = "") -> str | None:
    """The queue a priority list (``NAME\\x06\\x163``) belongs to; None for other keys."""
    if not key.startswith(prefix):
        return None
    name, sep, step = key[len(prefix) :].rpartition(SEP)
    return name if sep and step in ("3", "6", "9") and name else None


@dataclass(frozen=True)
class TaskMessage:
    """A Celery task message as the dashboard shows it."""

    id: str | None
    task: str | None
    args: tuple[Any, ...] | None  # display values; None: the body is not a task body
    kwargs: dict[str, Any] | None
    argsrepr: str | None
    kwargsrepr: str | None
    retries: int | None
    root_id: str | None
    parent_id: str | None
    eta: str | None
    priority: int | None
    headers: dict[str, Any] = field(default_factory=dict)
    encoding: str = "json"
    error: str | None = None  # why the body could not be read, with its size
    size: int = 0

    @property
    def preview(self) -> str:
        """One line of arguments: the decoded values, else the stored reprs."""
        if self.args is not None and self.kwargs is not None:
            return args_preview(self.args, self.kwargs)
        reprs = [r for r in (self.argsrepr, self.kwargsrepr) if r not in (None, "", "()", "{}")]
        return ", ".join(reprs) if reprs else (self.error or "")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read(body: bytes, content_type: str | None, headers: dict[str, Any], priority: Any, max_bytes: int) -> TaskMessage:
    """Protocol 2 (headers + ``[args, kwargs, embed]``) or 1 (one dict), decoded for display."""
    decoded = payload.decode(body, max_bytes=max_bytes)
    value = decoded.value if decoded.error is None else None
    fields = dict(headers)
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], list) and isinstance(value[1], dict):
        args, kwargs = tuple(value[0]), value[1]
    elif isinstance(value, dict) and "task" in value and "id" in value:  # protocol 1: everything in the body
        fields = {**value, **fields}
        args = tuple(value["args"]) if isinstance(value.get("args"), list) else None
        kwargs = value.get("kwargs") if isinstance(value.get("kwargs"), dict) else None
    error = decoded.error
    if error is None and (args is None or kwargs is None):
        error = f"{len(body)} bytes of {decoded.encoding} that are not a Celery task body"
    return TaskMessage(
        id=_text(fields.get("id")),
        task=_text(fields.get("task")),
        args=args,
        kwargs=kwargs,
        argsrepr=_text(fields.get("argsrepr")),
        kwargsrepr=_text(fields.get("kwargsrepr")),
        retries=_int(fields.get("retries")),
        root_id=_text(fields.get("root_id")),
        parent_id=_text(fields.get("parent_id")),
        eta=_text(fields.get("eta")),
        priority=_int(priority),
        headers=fields,
        encoding=decoded.encoding if content_type in (None, "", CONTENT_TYPE) else f"{content_type}: {decoded.encoding}",
        error=error,
        size=len(body),
    )


def from_amqp(body: bytes, properties: pika.BasicProperties, *, max_bytes: int = 16 * 1024 * 1024) -> TaskMessage:
    headers = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in (properties.headers or {}).items()}
    return _read(body, properties.content_type, headers, properties.priority, max_bytes)


def from_redis(entry: bytes, *, max_bytes: int = 16 * 1024 * 1024) -> TaskMessage:
    """One entry of a Redis priority list (kombu's JSON envelope), decoded for display."""
    try:
        envelope = json.loads(entry)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("body"), str):
        return TaskMessage(None, None, None, None, None, None, None, None, None, None, None,
                           error=f"{len(entry):,} bytes that are not a kombu message", size=len(entry))  # fmt: skip
    properties = envelope.get("properties") if isinstance(envelope.get("properties"), dict) else {}
    headers = envelope.get("headers") if isinstance(envelope.get("headers"), dict) else {}
    body = envelope["body"].encode("utf-8")
    if properties.get("body_encoding") == "base64":
        try:
            body = base64.b64decode(body, validate=True)
        except ValueError:
            pass  # shown as the text it is
    return _read(body, envelope.get("content-type"), headers, properties.get("priority"), max_bytes)


# -- writing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A protocol-2 task message ready for either transport."""

    id: str
    queue: str
    priority: int
    headers: dict[str, Any]
    body: bytes  # JSON [args, kwargs, embed]


def origin() -> str:
    """What Celery writes as a message's ``origin``: the sender's node name."""
    return f"queuewatch{os.getpid()}@{socket.gethostname()}"


def new_task(name: str, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any], *, queue: str,
             parent_id: str | None, root_id: str | None, priority: int = 0) -> Outgoing:  # fmt: skip
    """What Celery's ``as_task_v2`` makes for ``name.apply_async(args, kwargs)``, with a new id."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": payload.render(tuple(args), limit=REPR_LIMIT),
        "kwargsrepr": payload.render(dict(kwargs), limit=REPR_LIMIT),
        "origin": origin(),
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = json.dumps([list(args), kwargs, EMBED]).encode("utf-8")
    return Outgoing(task_id, queue, max(0, int(priority or 0)), headers, body)


def redis_envelope(message: Outgoing) -> bytes:
    """The list entry kombu's Redis transport would LPUSH for ``message``."""
    envelope = {
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": CONTENT_TYPE,
        "headers": message.headers,
        "properties": {
            "correlation_id": message.id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": message.queue},
            "priority": message.priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode("utf-8")


def amqp_properties(message: Outgoing) -> pika.BasicProperties:
    """The properties py-amqp would send with ``message`` (persistent, JSON)."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        headers=message.headers,
        correlation_id=message.id,
        delivery_mode=2,
        priority=message.priority or None,
    )
