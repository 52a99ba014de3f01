"""One RQ job in full, in any state, with its history, in two round trips.

The history is what RQ keeps of a job's life: when it was created and last enqueued
(its hash), one entry per finished run in the ``rq:results:ID`` stream (rq keeps the
last ten; 2.12 and 3.0 add the execution's id and times, 2.x its worker), and the runs
going on now (rq 2.x/3.x ``rq:executions:ID`` → ``rq:execution:ID:EXEC`` hashes, which
rq deletes when the run ends).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import redis

from queuewatch.adapters.base import JobDetail
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.tracebacks import clip, split_exception
from queuewatch.adapters.errors import NotFound

from .jobs import (DETAIL_DATA_LIMIT, STATE_OF_STATUS, TRACEBACK_LIMIT, call_parts, dependency_ids, failure_text, parse_time,
                   text_of, unix_time)  # fmt: skip
from .keys import Keys
from .rows import failed_row

RESULTS_READ = 10  # rq trims the stream to about ten entries itself
EXECUTIONS_READ = 20
OUTCOMES = {b"1": "finished", b"2": "failed", b"3": "stopped", b"4": "retried", b"5": "failed, no retries left"}
SHOWN = (b"timeout", b"result_ttl", b"failure_ttl", b"ttl", b"retries_left", b"created_at", b"description", b"group_id",
         b"dependency_ids", b"last_heartbeat", b"rate_limit_key", b"rate_limit_concurrency", b"enqueue_at_front")  # fmt: skip


def read_detail(client: redis.Redis, keys: Keys, queue: str, job_id: str) -> JobDetail:
    """The job page's job. Raises NotFound if it is gone or belongs to another queue."""
    key = keys.job(job_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.hkeys(key)
        pipe.hstrlen(key, b"data")
        pipe.xrevrange(keys.results(job_id), count=RESULTS_READ)
        pipe.zscore(keys.registry("scheduled", queue), job_id)
        pipe.zscore(keys.registry("canceled", queue), job_id)
        pipe.zrange(keys.executions(job_id), 0, EXECUTIONS_READ - 1)
        names, data_size, results, scheduled, canceled, executions = pipe.execute(raise_on_error=False)
    if isinstance(names, Exception) or not names:
        raise NotFound(f"RQ job {job_id!r} does not exist (any more)")
    # Every field but a data field too large to decode (read as its size instead).
    large = isinstance(data_size, int) and data_size > DETAIL_DATA_LIMIT
    names = [n for n in names if not (large and n == b"data")]
    running = [m.decode("utf-8", "replace") for m in executions] if isinstance(executions, list) else []
    with client.pipeline(transaction=False) as pipe:
        pipe.hmget(key, names)
        for execution in running:
            pipe.hgetall(keys.execution(job_id, execution))
        values, *runs = pipe.execute(raise_on_error=False)
    if isinstance(values, Exception):
        raise NotFound(f"RQ job {job_id!r} could not be read: {values}")
    fields = {k: v for k, v in zip(names, values) if v is not None}
    if large:
        fields[b"size:data"] = str(data_size).encode()
    if not fields:
        raise NotFound(f"RQ job {job_id!r} does not exist (any more)")
    origin = text_of(fields.get(b"origin"))
    if origin is not None and origin != queue:
        raise NotFound(f"RQ job {job_id!r} belongs to queue {origin!r}, not {queue!r}")
    if isinstance(results, Exception):
        results = []
    row = failed_row(job_id, fields, results)
    if large:
        decoded = payload.Decoded(None, "bytes", f"{data_size:,} bytes of job data: too large to decode here "
                                  f"(at most {DETAIL_DATA_LIMIT // 1024 // 1024} MB)", data_size)  # fmt: skip
    else:
        decoded = payload.decode(fields.get(b"data"), max_bytes=DETAIL_DATA_LIMIT)
    _, args, kwargs = call_parts(decoded)
    status = text_of(fields.get(b"status"))
    live = [(execution, run) for execution, run in zip(running, runs) if isinstance(run, dict) and run]
    details = tuple((k.decode(), clip(text_of(fields[k]), 2_000) or "") for k in SHOWN if fields.get(k))
    if isinstance(canceled, float):
        details += (("canceled at", _iso(unix_time(canceled))),)
    worker = text_of(fields.get(b"worker_name")) or next((text_of(run.get(b"worker_name")) for _, run in live), None)
    notes = ()
    if status == "deferred" and dependency_ids(fields):
        notes = (f"Deferred: RQ enqueues it when {', '.join(dependency_ids(fields))} has finished.",)
    elif status == "rate_limited":
        notes = ("Held back by its rate limit: RQ enqueues it when a slot is free.",)
    return JobDetail.of(
        row,
        queue=queue,
        args=args,
        kwargs=kwargs,
        traceback=clip(failure_text(results, fields.get(b"exc_info")), TRACEBACK_LIMIT),
        payload_encoding=decoded.encoding,
        payload_error=decoded.error,
        status=status,
        enqueued_at=parse_time(fields.get(b"enqueued_at")),
        worker=worker,
        details=details,
        notes=notes,
        state=STATE_OF_STATUS.get(status or ""),
        ended_at=parse_time(fields.get(b"ended_at")),
        scheduled_for=unix_time(scheduled) if isinstance(scheduled, float) and status == "scheduled" else None,
        history=history(fields, results, live),
        # Outside the failed list, a row's failure fields would describe an earlier run.
        **({} if STATE_OF_STATUS.get(status or "") == "failed" else {"failed_at": None}),
    )


def history(fields: dict[bytes, bytes], results: Any, live: list[tuple[str, dict[bytes, bytes]]]) -> tuple[tuple[str, str], ...]:
    """(time, what happened) rows, oldest first."""
    events: list[tuple[datetime | None, str]] = []
    created, enqueued = parse_time(fields.get(b"created_at")), parse_time(fields.get(b"enqueued_at"))
    if created:
        events.append((created, "created"))
    if enqueued:
        events.append((enqueued, "enqueued" if not results else "last enqueued"))
    for entry_id, entry in reversed(results if isinstance(results, list) else []):
        events.append(_run(entry_id, entry))
    for execution, run in live:
        since, beat = unix_time(run.get(b"created_at")), unix_time(run.get(b"last_heartbeat"))
        worker = text_of(run.get(b"worker_name"))
        events.append((since, f"running now: execution {execution}" + (f" on worker {worker}" if worker else "")
                       + (f", last heartbeat {_iso(beat)}" if beat else "")))  # fmt: skip
    events.sort(key=lambda e: (e[0] is None, e[0] or datetime.min))
    return tuple((_iso(when), text) for when, text in events)


def _run(entry_id: bytes, entry: dict[bytes, bytes]) -> tuple[datetime | None, str]:
    """One results-stream entry: how the run ended, where, how long it took."""
    outcome = OUTCOMES.get(entry.get(b"type", b""), f"ended (result type {text_of(entry.get(b'type')) or 'unset'})")
    started, ended = unix_time(entry.get(b"execution_started_at")), unix_time(entry.get(b"execution_ended_at"))
    text = outcome
    if worker := text_of(entry.get(b"worker_name")):
        text += f" on worker {worker}"
    if execution := text_of(entry.get(b"execution_id")):
        text += f", execution {execution}"
    if started and ended:
        text += f", ran {(ended - started).total_seconds():.3f} s"
    if entry.get(b"exc_string"):
        kind, message = split_exception(failure_text([(entry_id, entry)], None))
        if kind:
            text += f": {kind}" + (f": {clip(message, 300)}" if message else "")
    if value := entry.get(b"return_value"):
        try:
            shown = payload.decode(base64.b64decode(value, validate=True), max_bytes=64 * 1024)
            text += f", returned {payload.render(shown.value, limit=200) if shown.error is None else shown.error}"
        except (binascii.Error, ValueError):
            text += f", returned {len(value):,} bytes that are not base64"
    when = ended or started or _stream_time(entry_id)
    return when, text


def _stream_time(entry_id: bytes) -> datetime | None:
    millis, _, _ = entry_id.partition(b"-")
    return unix_time(int(millis) / 1000) if millis.isdigit() else None


def _iso(when: datetime | None) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z") if when else "—"
