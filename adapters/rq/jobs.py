"""RQ's job hashes as read: fields, times, tracebacks, the call, the state.

RQ keeps a job in the hash ``rq:job:ID`` (empty string means unset; times as
``%Y-%m-%dT%H:%M:%S.%fZ``); its ``data`` is zlib of the serializer's
``(func, instance, args, kwargs)``, decoded without unpickling. A failure's
text is in the ``rq:results:ID`` stream (2.x: ``exc_string`` =
base64(zlib(text))) or the job's ``exc_info`` (1.x: zlib(text)). Key names
are in ``keys``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from datetime import datetime, timezone
from typing import Any

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.tracebacks import KEEP, inflate_text

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LIST_DECODE_LIMIT = 256 * 1024  # bytes of job data decoded per row of a list
TRACEBACK_LIMIT = 64_000  # characters of a traceback shown; the rest is cut from the middle
MESSAGE_LIMIT = 4_000  # characters of an exception message in a list row
# A row of a list reads these, and ``data`` / ``exc_info`` only when small enough to show (HSTRLEN first).
ROW_FIELDS = (b"description", b"status", b"origin", b"enqueued_at", b"started_at", b"ended_at", b"worker_name",
              b"number_of_retries", b"dependency_ids", b"dependency_id")  # fmt: skip
LARGE_FIELDS = (b"data", b"exc_info")
DETAIL_DATA_LIMIT = 4 * 1024 * 1024  # bytes of job data a job page reads and decodes at most

# RQ's status words (1.16 to 3.0) in the words every system shares (base.STATES). "created"
# (made, never enqueued) has none. rq 3.0 adds "rate_limited" (held back until its rate
# limit has a free slot) and "ready_to_enqueue" (dependencies met, about to be enqueued):
# both wait for something, like "scheduled" and "deferred".
STATE_OF_STATUS = {
    "queued": "waiting",
    "scheduled": "scheduled",
    "deferred": "scheduled",
    "ready_to_enqueue": "scheduled",
    "rate_limited": "scheduled",
    "started": "in_progress",
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "canceled",
}
# An execution id, as rq 2.x/3.x append it to started-registry members ("jobid:execid").
_EXECUTION_ID = re.compile(r"[0-9a-f]{32}")


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


def unix_time(value: bytes | str | float | None) -> datetime | None:
    """A unix time (execution hashes, result entries, registry scores) as an aware UTC datetime;
    None for what is no time (empty, garbage, "inf", beyond what a date can hold)."""
    try:
        seconds = float(value.decode("ascii", "replace") if isinstance(value, bytes) else value)  # type: ignore[arg-type]
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def split_member(member: bytes | str) -> tuple[str, str | None]:
    """(job id, execution id) of a started-registry member: ``jobid:execid`` in rq 2.x/3.x, the
    bare job id in 1.16 (whose ids may themselves hold a colon, so only a 32-hex tail counts)."""
    text = member.decode("utf-8", "replace") if isinstance(member, bytes) else member
    head, sep, tail = text.rpartition(":")
    if sep and head and _EXECUTION_ID.fullmatch(tail):
        return head, tail
    return text, None


def dependency_ids(fields: dict[bytes, bytes]) -> tuple[str, ...]:
    """The ids a job waits for: ``dependency_ids`` (a JSON list) or 1.x's single ``dependency_id``."""
    raw = fields.get(b"dependency_ids")
    if raw:
        try:
            ids = json.loads(raw)
        except ValueError:
            ids = None
        if isinstance(ids, list):
            return tuple(str(i) for i in ids[:100])
    single = text_of(fields.get(b"dependency_id"))
    return (single,) if single else ()


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
