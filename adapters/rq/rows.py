"""Rows of RQ job lists, read in a constant number of round trips per page.

A row reads the small fields of the job hash and the sizes of the large ones in one
pipelined round trip, and the large ones small enough to show in one more: a list
never reads a 50 MB ``data`` field. What cannot be read (an expired job, garbage in
its fields) becomes the row's text, never an exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from queuewatch.adapters.base import FailedJob
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.decoding.tracebacks import clip, split_exception

from .jobs import (LARGE_FIELDS, LIST_DECODE_LIMIT, MESSAGE_LIMIT, ROW_FIELDS, STATE_OF_STATUS, call_parts, dependency_ids,
                   failure_text, int_of, parse_time, text_of)  # fmt: skip
from .keys import Keys
from .values import RQJob

Fields = dict[bytes, bytes]
EXPIRED = "(job data has expired)"


class RowReader:
    """Reads job hashes (and, where asked, their newest results) for the rows of a page."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def read(self, ids: list[str], results: int = 0) -> list[tuple[Fields, Any]]:
        """(fields, newest ``results`` entries of the results stream) per id, in order."""
        if not ids:
            return []
        step = 1 + len(LARGE_FIELDS) + (1 if results else 0)
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                key = self.keys.job(job_id)
                pipe.hmget(key, ROW_FIELDS)
                for name in LARGE_FIELDS:
                    pipe.hstrlen(key, name)
                if results:
                    pipe.xrevrange(self.keys.results(job_id), count=results)
            replies = pipe.execute(raise_on_error=False)
        rows: list[tuple[Fields, Any]] = []
        wanted: list[tuple[int, bytes]] = []
        for i in range(len(ids)):
            values = replies[step * i]
            fields = {} if isinstance(values, Exception) else {k: v for k, v in zip(ROW_FIELDS, values) if v is not None}
            for n, name in enumerate(LARGE_FIELDS):
                size = replies[step * i + 1 + n]
                if isinstance(size, int) and 0 < size <= LIST_DECODE_LIMIT:
                    wanted.append((i, name))
                elif isinstance(size, int) and size > LIST_DECODE_LIMIT:
                    fields[b"size:" + name] = str(size).encode()
            rows.append((fields, replies[step * i + step - 1] if results else None))
        if wanted:
            with self.client.pipeline(transaction=False) as pipe:
                for i, name in wanted:
                    pipe.hget(self.keys.job(ids[i]), name)
                for (i, name), value in zip(wanted, pipe.execute(raise_on_error=False)):
                    if isinstance(value, bytes):
                        rows[i][0][name] = value
        return rows


def failed_row(job_id: str, fields: Fields, results: Any) -> FailedJob:
    """A failed-list row: the call, the exception, when it failed."""
    if not fields:
        return FailedJob(job_id, None, EXPIRED, None, None, None, None)
    function, preview = _call(fields)
    error_type, error_message = split_exception(failure_text(results, fields.get(b"exc_info")))
    retries = int_of(fields.get(b"number_of_retries"))
    return FailedJob(
        id=job_id,
        function=function,
        args_preview=preview,
        error_type=error_type,
        error_message=clip(error_message, MESSAGE_LIMIT),
        failed_at=parse_time(fields.get(b"ended_at")),
        attempts=(retries or 0) + 1,
        started_at=parse_time(fields.get(b"started_at")),
    )


def state_row(state: str, job_id: str, fields: Fields, results: Any = None, *, expires_at: datetime | None = None,
              scheduled_for: datetime | None = None, ended_at: datetime | None = None,
              details: tuple[tuple[str, str], ...] = ()) -> RQJob:  # fmt: skip
    """A row of the ``state`` list. Times the registry knows better than the hash (a
    scheduled time, a cancel time) are passed in; the rest comes from the hash."""
    status = text_of(fields.get(b"status"))
    if state == "failed":
        base = failed_row(job_id, fields, results)
        function, preview, error_type, error_message = base.function, base.args_preview, base.error_type, base.error_message
    elif fields:
        (function, preview), error_type, error_message = _call(fields), None, None
    else:
        function, preview, error_type, error_message = None, EXPIRED, None, None
    if fields and STATE_OF_STATUS.get(status or "") != state:
        # Registries and the hash are written in separate steps (and by hand): say when they disagree.
        details += (("status", f"RQ's status for it is {status or 'unset'}"),)
    waits = dependency_ids(fields)
    if status == "deferred" and waits:
        details += (("waiting for", ", ".join(waits)),)
    retries = int_of(fields.get(b"number_of_retries"))
    worker = text_of(fields.get(b"worker_name"))
    if worker is None and isinstance(results, list) and results:
        worker = text_of(results[0][1].get(b"worker_name"))  # the run that finished it (2.x, 3.x)
    return RQJob(
        id=job_id,
        function=function,
        args_preview=preview,
        error_type=error_type,
        error_message=error_message,
        failed_at=parse_time(fields.get(b"ended_at")) if state == "failed" else None,
        attempts=(retries or 0) + 1 if state == "failed" or retries else None,
        started_at=parse_time(fields.get(b"started_at")),
        expires_at=expires_at,
        state=state,
        enqueued_at=parse_time(fields.get(b"enqueued_at")),
        ended_at=ended_at or parse_time(fields.get(b"ended_at")),
        scheduled_for=scheduled_for,
        worker=worker,
        status=status,
        details=details,
    )


def _call(fields: Fields) -> tuple[str | None, str]:
    """(function, argument preview) of a job hash: decoded safely, or the description and why not."""
    too_large = fields.get(b"size:data")
    if too_large is not None:
        return text_of(fields.get(b"description")), f"({int(too_large):,} bytes of job data: open the job to see it)"
    decoded = payload.decode(fields.get(b"data"), max_bytes=LIST_DECODE_LIMIT)
    function, args, kwargs = call_parts(decoded)
    if function is None:
        return text_of(fields.get(b"description")), decoded.error or ""
    return function, args_preview(args, kwargs)
