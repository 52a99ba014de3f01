"""Celery task results in a Redis result backend: read, parsed, deleted and claimed.

A result is the string ``celery-task-meta-ID`` (behind ``global_keyprefix`` and
``_`` when ``result_backend_transport_options`` sets one), written with
SETEX for ``result_expires`` (one day by default). With the JSON result
serializer it is the meta dict in insertion order, so it starts with
``{"status": "``: a failure is classified from its first 32 bytes
(GETRANGE) without reading the rest. A FAILURE's ``result`` is
``{exc_type, exc_message, exc_module}``; ``traceback`` is text; with
``result_extended`` the record also keeps ``name``, ``args``, ``kwargs``,
``worker``, ``retries`` and ``queue`` (the delivery routing key). Pickled and
msgpack results are decoded by ``payload.decode`` for display only.

The result backend is often another database or server than the broker, so
this module owns its own client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.tracebacks import split_exception

TASK_PREFIX = "celery-task-meta-"
JSON_HEAD = b'{"status": "'
HEAD_BYTES = 32
CLAIM_PREFIX = "queuewatch:celery:requeue:"  # short-lived marker: one requeue of a task at a time
CLAIM_MS = 60_000
NO_EXTENDED = ("Celery stored no arguments for this task: the worker ran without result_extended=True, so it "
               "cannot be requeued from here (the argsrepr in events is truncated text, not the arguments).")  # fmt: skip
_EXC_REPR = re.compile(r"^([A-Za-z_][\w.]*)\((.*)\)$", re.DOTALL)


def results_prefix(global_keyprefix: str = "") -> str:
    """The key prefix of task results, as Celery's KeyValueStoreBackend builds it."""
    if global_keyprefix and global_keyprefix[-1] not in ":_-.":
        global_keyprefix += "_"
    return global_keyprefix + TASK_PREFIX


def glob_escape(text: str) -> str:
    """``text`` with glob characters escaped, for SCAN MATCH."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def status_from_head(head: bytes) -> str | None:
    """FAILURE, SUCCESS, ... from a JSON record's first bytes; None when it is not one."""
    if not head.startswith(JSON_HEAD):
        return None
    end = head.find(b'"', len(JSON_HEAD))
    return head[len(JSON_HEAD) : end].decode("ascii", "replace") if end > 0 else None


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def split_repr(text: str | None) -> tuple[str | None, str | None]:
    """("ValueError", "'boom'") from an exception repr as task-failed events carry it."""
    if not text:
        return None, None
    match = _EXC_REPR.match(text.strip())
    if match is None:
        return split_exception(text)
    inner = match.group(2)
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"" and inner.count(inner[0]) == 2:
        inner = inner[1:-1]  # the usual single string argument, shown without its quotes
    return match.group(1), inner


@dataclass(frozen=True)
class FailureRecord:
    """A FAILURE result as stored, decoded for display."""

    id: str
    name: str | None
    args: tuple[Any, ...] | None  # None: not stored (no result_extended) or not readable
    kwargs: dict[str, Any] | None
    queue: str | None
    worker: str | None
    retries: int | None
    parent_id: str | None
    group_id: str | None
    date_done: datetime | None
    error_type: str | None
    error_message: str | None
    exc_module: str | None
    traceback: str | None
    encoding: str
    error: str | None  # why the record could not be decoded, with its size
    size: int

    @property
    def refusal(self) -> str | None:
        """Why requeue must refuse this task, or None when it can republish it exactly."""
        if self.encoding != "json":
            return (f"The result record is {self.encoding}, not JSON: its arguments cannot be republished exactly "
                    "(use result_serializer='json' to requeue from here).")  # fmt: skip
        if self.name is None or self.args is None or self.kwargs is None:
            return NO_EXTENDED
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _error(result: Any) -> tuple[str | None, str | None, str | None]:
    """(type, message, module) of a stored exception: a JSON dict, or a pickled exception object."""
    if isinstance(result, dict):
        message = result.get("exc_message")
        if isinstance(message, list) and len(message) == 1 and isinstance(message[0], str):
            text: str | None = message[0]
        elif isinstance(message, (list, tuple)):
            text = ", ".join(payload.render(m, limit=2_000) for m in message)
        else:
            text = None if message is None else payload.render(message, limit=4_000)
        return _text(result.get("exc_type")), text, _text(result.get("exc_module"))
    if isinstance(result, payload.PickledObject):
        module, _, name = result.cls.rpartition(".")
        args = result.args
        text = args[0] if len(args) == 1 and isinstance(args[0], str) else ", ".join(payload.render(a, limit=2_000) for a in args)
        return name or result.cls, text, module or None
    return None, None if result is None else payload.render(result, limit=4_000), None


def parse_record(task_id: str, data: bytes, *, max_bytes: int = 16 * 1024 * 1024) -> FailureRecord | None:
    """The FAILURE record of ``task_id``; None when the result is anything else."""
    decoded = payload.decode(data, max_bytes=max_bytes)
    meta = decoded.value if decoded.error is None and isinstance(decoded.value, dict) else None
    if meta is None:
        # Undecodable: unless its head says otherwise, show it (its size) rather than hide a failure.
        status = status_from_head(data[:HEAD_BYTES])
        if status not in (None, "FAILURE"):
            return None
        return FailureRecord(task_id, None, None, None, None, None, None, None, None, None, None,
                             decoded.error or "not a result record", None, None, decoded.encoding,
                             decoded.error or f"{len(data)} bytes, not a result record", len(data))  # fmt: skip
    if meta.get("status") != "FAILURE":
        return None
    error_type, message, module = _error(meta.get("result"))
    traceback = _text(meta.get("traceback"))
    if error_type is None and traceback:
        error_type, message = split_exception(traceback)
    args = meta.get("args")
    kwargs = meta.get("kwargs")
    retries = meta.get("retries")
    return FailureRecord(
        id=task_id,
        name=_text(meta.get("name")),
        args=tuple(args) if isinstance(args, list) else None,
        kwargs=kwargs if isinstance(kwargs, dict) else None,
        queue=_text(meta.get("queue")),
        worker=_text(meta.get("worker")),
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        parent_id=_text(meta.get("parent_id")),
        group_id=_text(meta.get("group_id")),
        date_done=parse_time(meta.get("date_done")),
        error_type=error_type,
        error_message=message,
        exc_module=module,
        traceback=traceback,
        encoding=decoded.encoding,
        error=None,
        size=len(data),
    )


class ResultStore:
    """One Redis result backend: the client, the key prefix, and the few writes actions make."""

    def __init__(self, client: redis.Redis, *, keyprefix: str = "", label: str = "") -> None:
        self.client = client
        self.prefix = results_prefix(keyprefix)
        self.label = label  # where results are read from, for the operator: "redis://host:6379/15"

    def key(self, task_id: str) -> str:
        return self.prefix + task_id

    def task_id(self, key: bytes) -> str | None:
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text[len(self.prefix) :] if text.startswith(self.prefix) else None

    def read(self, ids: Iterable[str]) -> dict[str, bytes | None]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.get(self.key(task_id))
            return dict(zip(ids, pipe.execute()))

    def failures(self, ids: Iterable[str]) -> dict[str, FailureRecord | None]:
        """The FAILURE record of each id; None for ids whose result is gone or not a failure."""
        return {i: (parse_record(i, data) if data is not None else None) for i, data in self.read(ids).items()}

    def delete_failures(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete the records of ``ids`` that are still failures, atomically (WATCH/MULTI).
        Returns (deleted, not found)."""
        keys = [self.key(i) for i in ids]
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    values = pipe.mget(keys) if keys else []
                    doomed = [i for i, v in zip(ids, values) if v is not None and parse_record(i, v) is not None]
                    pipe.multi()
                    if doomed:
                        pipe.delete(*(self.key(i) for i in doomed))
                    pipe.execute()
                except redis.WatchError:
                    continue  # a worker wrote one of them meanwhile: look again
            return doomed, [i for i in ids if i not in doomed]

    def claim(self, task_id: str, token: str) -> bool:
        """Take the right to requeue ``task_id`` for a minute (one dashboard process at a time)."""
        return bool(self.client.set(CLAIM_PREFIX + task_id, token, nx=True, px=CLAIM_MS))

    def release(self, task_id: str) -> None:
        self.client.delete(CLAIM_PREFIX + task_id)
