"""RQ's keys and job hashes as read: names, fields, times, tracebacks, the call.

RQ keeps a job in the hash ``rq:job:ID`` (empty string means unset; times as
``%Y-%m-%dT%H:%M:%S.%fZ``); its ``data`` is zlib of the serializer's
``(func, instance, args, kwargs)``, decoded without unpickling. A failure's
text is in the ``rq:results:ID`` stream (2.x: ``exc_string`` =
base64(zlib(text))) or the job's ``exc_info`` (1.x: zlib(text)).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from datetime import datetime, timezone
from typing import Any

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.tracebacks import KEEP, inflate_text

QUEUES_KEY = b"rq:queues"
WORKERS_KEY = b"rq:workers"
QUEUE_PREFIX = "rq:queue:"
JOB_PREFIX = "rq:job:"
RESULTS_PREFIX = "rq:results:"
# Registries by the label the queue page shows. 1.x named the started registry
# "started"; 2.x names it "wip". Both are read and summed.
REGISTRIES = ("wip", "started", "scheduled", "deferred", "failed", "finished", "canceled")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LIST_DECODE_LIMIT = 256 * 1024  # bytes of job data decoded per row of a list
TRACEBACK_LIMIT = 64_000  # characters of a traceback shown; the rest is cut from the middle
MESSAGE_LIMIT = 4_000  # characters of an exception message in a list row
# A row of a list reads these, and ``data`` / ``exc_info`` only when small enough to show (HSTRLEN first).
ROW_FIELDS = (b"description", b"status", b"origin", b"enqueued_at", b"started_at", b"ended_at", b"worker_name",
              b"number_of_retries")  # fmt: skip
LARGE_FIELDS = (b"data", b"exc_info")
DETAIL_DATA_LIMIT = 4 * 1024 * 1024  # bytes of job data a job page reads and decodes at most



def text_of(value: bytes | None) -> str | None:
    if value is None or value == b"":
        return None
    return value.decode("utf-8", "replace")


def parse_time(value: bytes | str | None) -> datetime | None:
    """RQ's ``%Y-%m-%dT%H:%M:%S.%fZ`` (and older variants) as an aware UTC datetime."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_time(moment: datetime) -> str:
    """A time the way RQ writes it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def int_of(value: bytes | None) -> int | None:
    try:
        return int(value) if value not in (None, b"") else None
    except ValueError:
        return None


def failure_text(results: Any, exc_info: bytes | None) -> str | None:
    """The failure text: newest stream entry that has one (2.x), else the 1.x hash field.
    Inflated a piece at a time, within bounds (``tracebacks.inflate_text``): never a bomb."""
    if isinstance(results, list):
        for _entry_id, fields in results:
            encoded = fields.get(b"exc_string")
            if encoded:
                try:
                    return inflate_text(base64.b64decode(encoded))
                except (binascii.Error, zlib.error, ValueError):
                    return f"<{len(encoded)} bytes of traceback, not decodable>"
    if exc_info:
        try:
            return inflate_text(exc_info)
        except zlib.error:
            return exc_info[: 2 * KEEP].decode("utf-8", "replace")
    return None


def call_parts(decoded: payload.Decoded) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
    """(function, args, kwargs) from RQ's (func_name, instance, args, kwargs) payload."""
    value = decoded.value
    if decoded.error is None and isinstance(value, (list, tuple)) and len(value) == 4:
        func, instance, args, kwargs = value
        name = func if isinstance(func, str) else payload.render(func, limit=200)
        if instance is not None:
            name = f"{payload.render(instance, limit=80)}.{name}"
        args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
        kwargs = {str(k): v for k, v in kwargs.items()} if isinstance(kwargs, dict) else {}
        return name, args, kwargs
    return None, (), {}
