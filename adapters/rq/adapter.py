"""RQ (1.16 and 2.x) read and moved through its own Redis keys, never ``import rq``.

Keys: ``rq:queues`` (set of ``rq:queue:NAME``), the queue lists, the registries
``rq:{wip,started,failed,finished,deferred,scheduled,canceled}:NAME`` (zsets
scored by expiry time), job hashes ``rq:job:ID``, failure tracebacks in the
``rq:results:ID`` stream (2.x) or the job's ``exc_info`` (1.x), and workers in
``rq:workers`` → ``rq:worker:NAME`` hashes.

Every count is O(1) and the overview costs a constant number of round trips;
lists cost O(page). Moves run as Lua scripts, one chunk per call.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from queuewatch.adapters.base import (ALL, ActionResult, Adapter, FailedJob, JobDetail, Page, QueueStats, Selection, Tally,
                                      Worker, chunks, unique)  # fmt: skip
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.decoding.tracebacks import clip, split_exception
from queuewatch.adapters.errors import NotFound
from queuewatch.adapters.redis_errors import redis_errors

from .jobs import (DETAIL_DATA_LIMIT, EPOCH, JOB_PREFIX, LARGE_FIELDS, LIST_DECODE_LIMIT, MESSAGE_LIMIT, QUEUE_PREFIX,
                   QUEUES_KEY, REGISTRIES, RESULTS_PREFIX, ROW_FIELDS, TRACEBACK_LIMIT, WORKERS_KEY, call_parts, failure_text,
                   format_time, int_of, parse_time, text_of)  # fmt: skip

CHUNK = 1000  # ids per Lua call: a few ms of Redis time each
MAX_QUEUES = 10_000  # queues read per snapshot at most: discovery stays bounded whatever rq:queues holds
MAX_WORKERS = 5_000
_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("requeue", "delete", "purge")}


class RQAdapter(Adapter):
    """RQ on one Redis database."""

    system = "rq"
    label = "RQ"

    def __init__(self, *, backend: str, client: redis.Redis) -> None:
        super().__init__(backend=backend)
        self.client = client
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._capped: dict[str, tuple[int, int]] = {}  # "queues"/"workers" -> (members, shown) when over the cap

    @classmethod
    def detect(cls, client: redis.Redis) -> bool:
        """RQ is here if it has registered a queue or a worker."""
        return bool(client.exists(QUEUES_KEY, WORKERS_KEY))

    # -- reads -------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def workers(self) -> list[Worker]:
        return self.overview()[1]

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        """Queues and workers in four round trips, however many there are (up to the caps)."""
        with redis_errors():
            queue_keys = self._members(QUEUES_KEY, MAX_QUEUES, "queues")
            workers = self._read_workers(sorted(self._members(WORKERS_KEY, MAX_WORKERS, "workers")))
            names = {key.decode("utf-8", "replace").removeprefix(QUEUE_PREFIX) for key in queue_keys}
            names.update(q for w in workers for q in w.queues)
            stats = self._read_queues(sorted(names)[: MAX_QUEUES + MAX_WORKERS], workers)
        return stats, workers

    def _members(self, key: bytes, cap: int, what: str) -> set[bytes]:
        """A set's members, up to ``cap``: SMEMBERS when it is small, else SSCAN until the cap.
        A set far larger than any real deployment (100,000 bogus members) costs a bounded read,
        and ``notes()`` says how many were left out."""
        size = self.client.scard(key)
        if size <= cap:
            self._capped.pop(what, None)
            return set(self.client.smembers(key))
        found: set[bytes] = set()
        cursor = 0
        while len(found) < cap:
            cursor, members = self.client.sscan(key, cursor, count=1000)
            found.update(members)
            if int(cursor) == 0:
                break
        found = set(sorted(found)[:cap])
        self._capped[what] = (size, len(found))
        return found

    def notes(self) -> tuple[str, ...]:
        return tuple(f"RQ's {key.decode()} holds {size:,} {what}: the first {shown:,} found are shown, {size - shown:,} are "
                     f"not (far more than any real deployment: leftovers, or a client writing there by mistake)."
                     for what, (size, shown) in sorted(self._capped.items())
                     for key in [QUEUES_KEY if what == "queues" else WORKERS_KEY])  # fmt: skip

    def queue(self, name: str) -> QueueStats:
        with redis_errors():
            workers = self._read_workers(sorted(self.client.smembers(WORKERS_KEY)))
            stats = self._read_queues([name], workers)[0]
            known = self.client.sismember(QUEUES_KEY, QUEUE_PREFIX + name)
        counts = [stats.depth, stats.in_progress, stats.scheduled, stats.failed, stats.workers]
        if not known and not any(counts + [value for _, value in stats.details]):
            raise NotFound(f"no RQ queue named {name!r}")
        return stats

    def _read_queues(self, names: list[str], workers: list[Worker]) -> list[QueueStats]:
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(QUEUE_PREFIX + name)
                pipe.llen(f"{QUEUE_PREFIX}{name}:intermediate")
                pipe.lindex(QUEUE_PREFIX + name, 0)
                for registry in REGISTRIES:
                    pipe.zcard(f"rq:{registry}:{name}")
            replies = pipe.execute(raise_on_error=False)
        width = 3 + len(REGISTRIES)
        rows = [
            [None if isinstance(r, Exception) else r for r in replies[i * width : (i + 1) * width]]
            for i in range(len(names))
        ]
        # Age of the oldest waiting job: the enqueued_at of each queue's head.
        heads = [(i, row[2]) for i, row in enumerate(rows) if row[2]]
        enqueued: list[Any] = [None] * len(names)
        if heads:
            with self.client.pipeline(transaction=False) as pipe:
                for _, job_id in heads:
                    pipe.hget(JOB_PREFIX + job_id.decode("utf-8", "replace"), "enqueued_at")
                for (i, _), value in zip(heads, pipe.execute(raise_on_error=False)):
                    enqueued[i] = value
        now = datetime.now(timezone.utc)
        stats = []
        for name, row, enqueued_at in zip(names, rows, enqueued):
            depth, intermediate, _, *counts = row
            reg = dict(zip(REGISTRIES, counts))
            when = None if isinstance(enqueued_at, Exception) else parse_time(enqueued_at)
            in_progress = _sum(reg["wip"], reg["started"], intermediate)
            stats.append(
                QueueStats(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    depth=depth,
                    in_progress=in_progress,
                    scheduled=_sum(reg["scheduled"], reg["deferred"]),
                    failed=reg["failed"],
                    workers=sum(1 for w in workers if w.alive and name in w.queues),
                    oldest_age_seconds=max(0.0, (now - when).total_seconds()) if when else None,
                    details=(
                        ("scheduled", reg["scheduled"]),
                        ("deferred", reg["deferred"]),
                        ("finished", reg["finished"]),
                        ("canceled", reg["canceled"]),
                    ),
                )
            )
        return stats

    def _read_workers(self, keys: list[bytes]) -> list[Worker]:
        if not keys:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes = pipe.execute(raise_on_error=False)
        workers = []
        for key, fields in zip(keys, hashes):
            name = key.decode("utf-8", "replace").removeprefix("rq:worker:")
            if isinstance(fields, Exception):
                fields = {}
            # A worker that died without cleaning up lingers in rq:workers after
            # its hash expired; one that shut down cleanly left a "death" field.
            alive = bool(fields) and b"death" not in fields
            queues = tuple(q for q in (text_of(fields.get(b"queues")) or "").split(",") if q)
            workers.append(
                Worker(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    hostname=text_of(fields.get(b"hostname")),
                    pid=int_of(fields.get(b"pid")),
                    queues=queues,
                    state=(text_of(fields.get(b"state")) or "unknown") if alive else "dead",
                    alive=alive,
                    last_heartbeat=parse_time(fields.get(b"last_heartbeat")),
                    current_job=text_of(fields.get(b"current_job")),
                    started_at=parse_time(fields.get(b"birth")),
                    # RQ writes a counter at its first increment: a live worker without one has done 0.
                    successful_jobs=int_of(fields.get(b"successful_job_count", b"0" if fields else None)),
                    failed_jobs=int_of(fields.get(b"failed_job_count", b"0" if fields else None)),
                    version=text_of(fields.get(b"version")),
                )
            )
        return workers

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        offset = _offset(cursor)
        key = f"rq:failed:{queue}"
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1, withscores=True)
                total, scored = pipe.execute()
            ids = [i.decode("utf-8", "replace") for i, _ in scored]
            rows = self._read_jobs(ids)
        # The registry's score is when RQ will drop the job (-1: never).
        jobs = [
            replace(self._failed_row(job_id, fields, results), expires_at=_expiry(score))
            for job_id, (fields, results), (_, score) in zip(ids, rows, scored)
        ]
        # RQ scores the registry in whole seconds; order ties by the failure time it also keeps.
        jobs.sort(key=lambda j: j.failed_at or EPOCH, reverse=True)
        next_offset = offset + len(ids)
        return Page(
            items=tuple(jobs),
            total=total,
            next_cursor=str(next_offset) if next_offset < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def failed_ids(self, queue: str, limit: int, cursor: str | None = None) -> Page[str]:
        """Ids only: one ZREVRANGE, the cursors of ``failed``."""
        offset = _offset(cursor)
        key = f"rq:failed:{queue}"
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1)
                total, ids = pipe.execute()
        next_offset = offset + len(ids)
        return Page(
            items=tuple(i.decode("utf-8", "replace") for i in ids),
            total=total,
            next_cursor=str(next_offset) if next_offset < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def _read_jobs(self, ids: list[str]) -> list[tuple[dict[bytes, bytes], Any]]:
        """Job hash fields and the newest results of every id: one round trip for the small
        fields and the sizes of the large ones, one more for the large ones small enough to
        show. A list row never reads a 50 MB ``data`` field."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(JOB_PREFIX + job_id, ROW_FIELDS)
                for name in LARGE_FIELDS:
                    pipe.hstrlen(JOB_PREFIX + job_id, name)
                pipe.xrevrange(RESULTS_PREFIX + job_id, count=3)
            replies = pipe.execute(raise_on_error=False)
        step = 2 + len(LARGE_FIELDS)
        rows: list[tuple[dict[bytes, bytes], Any]] = []
        wanted: list[tuple[int, bytes]] = []
        for i in range(len(ids)):
            values, results = replies[step * i], replies[step * i + step - 1]
            fields = {} if isinstance(values, Exception) else {k: v for k, v in zip(ROW_FIELDS, values) if v is not None}
            for n, name in enumerate(LARGE_FIELDS):
                size = replies[step * i + 1 + n]
                if isinstance(size, int) and 0 < size <= LIST_DECODE_LIMIT:
                    wanted.append((i, name))
                elif isinstance(size, int) and size > LIST_DECODE_LIMIT:
                    fields[b"size:" + name] = str(size).encode()
            rows.append((fields, results))
        if wanted:
            with self.client.pipeline(transaction=False) as pipe:
                for i, name in wanted:
                    pipe.hget(JOB_PREFIX + ids[i], name)
                for (i, name), value in zip(wanted, pipe.execute(raise_on_error=False)):
                    if isinstance(value, bytes):
                        rows[i][0][name] = value
        return rows

    def _failed_row(self, job_id: str, fields: dict[bytes, bytes], results: Any) -> FailedJob:
        if not fields:
            return FailedJob(job_id, None, "(job data has expired)", None, None, None, None)
        too_large = fields.get(b"size:data")
        decoded = payload.decode(fields.get(b"data"), max_bytes=LIST_DECODE_LIMIT)
        function, args, kwargs = call_parts(decoded)
        if too_large is not None:
            function = text_of(fields.get(b"description"))
            preview = f"({int(too_large):,} bytes of job data: open the job to see it)"
        elif function is None:
            function = text_of(fields.get(b"description"))
            preview = decoded.error or ""
        else:
            preview = args_preview(args, kwargs)
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

    def job(self, queue: str, job_id: str) -> JobDetail:
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hkeys(JOB_PREFIX + job_id)
                pipe.hstrlen(JOB_PREFIX + job_id, b"data")
                pipe.xrevrange(RESULTS_PREFIX + job_id, count=10)
                names, data_size, results = pipe.execute(raise_on_error=False)
            if isinstance(names, Exception) or not names:
                raise NotFound(f"RQ job {job_id!r} does not exist (any more)")
            # Every field but a data field too large to decode (read as its size instead).
            large = isinstance(data_size, int) and data_size > DETAIL_DATA_LIMIT
            names = [n for n in names if not (large and n == b"data")]
            fields = dict(zip(names, self.client.hmget(JOB_PREFIX + job_id, names)))
            fields = {k: v for k, v in fields.items() if v is not None}
        if large:
            fields[b"size:data"] = str(data_size).encode()
        if not fields:
            raise NotFound(f"RQ job {job_id!r} does not exist (any more)")
        origin = text_of(fields.get(b"origin"))
        if origin is not None and origin != queue:
            raise NotFound(f"RQ job {job_id!r} belongs to queue {origin!r}, not {queue!r}")
        row = self._failed_row(job_id, fields, results)
        if large:
            decoded = payload.Decoded(None, "bytes", f"{data_size:,} bytes of job data: too large to decode here "
                                      f"(at most {DETAIL_DATA_LIMIT // 1024 // 1024} MB)", data_size)  # fmt: skip
        else:
            decoded = payload.decode(fields.get(b"data"), max_bytes=DETAIL_DATA_LIMIT)
        _, args, kwargs = call_parts(decoded)
        shown = (b"timeout", b"result_ttl", b"failure_ttl", b"ttl", b"retries_left", b"created_at",
                 b"description", b"group_id", b"dependency_ids", b"last_heartbeat")  # fmt: skip
        details = tuple((k.decode(), clip(text_of(fields[k]), 2_000) or "") for k in shown if fields.get(k))
        return JobDetail.of(
            row,
            queue=queue,
            args=args,
            kwargs=kwargs,
            traceback=clip(failure_text(results, fields.get(b"exc_info")), TRACEBACK_LIMIT),
            payload_encoding=decoded.encoding,
            payload_error=decoded.error,
            status=text_of(fields.get(b"status")),
            enqueued_at=parse_time(fields.get(b"enqueued_at")),
            worker=text_of(fields.get(b"worker_name")),
            details=details,
        )

    # -- moves -------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        keys = [f"rq:failed:{queue}", QUEUE_PREFIX + queue, QUEUES_KEY]
        head = [JOB_PREFIX, format_time(datetime.now(timezone.utc)), QUEUE_PREFIX + queue]
        return self._move(self._scripts["requeue"], keys, head, queue, ids)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        keys = [f"rq:failed:{queue}"]
        return self._move(self._scripts["delete"], keys, [JOB_PREFIX, RESULTS_PREFIX], queue, ids)

    def _move(self, script: Any, keys: list[Any], head: list[Any], queue: str, ids: Selection) -> ActionResult:
        """Run a requeue/delete script over ids, or over the whole registry, in chunks."""
        tally = Tally()
        with tally.reporting(), redis_errors():
            if ids is ALL:
                top = self.client.zrevrange(keys[0], 0, 0, withscores=True)
                if not top:
                    return ActionResult(0)
                max_score = repr(top[0][1])
                offset = 0  # jobs skipped because their hash is gone stay at the front
                while True:
                    done, gone, examined = script(keys=keys, args=[*head, "range", f"{max_score} {offset} {CHUNK}"])
                    tally.add(done, (_text(m) for m in gone))
                    offset += len(gone)
                    if examined == 0:
                        break
            else:
                for chunk in chunks(unique(ids), CHUNK):
                    done, gone, _ = script(keys=keys, args=[*head, "ids", "", *chunk])
                    tally.add(done, (_text(m) for m in gone))
        return tally.result()

    def purge(self, queue: str) -> ActionResult:
        key = QUEUE_PREFIX + queue
        tally = Tally()
        with tally.reporting(), redis_errors():
            remaining = self.client.llen(key)  # jobs enqueued during the purge are kept
            while remaining > 0:
                removed = self._scripts["purge"](keys=[key], args=[JOB_PREFIX, min(CHUNK, remaining)])
                if removed == 0:
                    break
                tally.add(removed)
                remaining -= removed
        return tally.result()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _expiry(score: float) -> datetime | None:
    """The registry score as a time; None for "never" (-1, inf) and for scores no date can hold."""
    if score < 0:
        return None
    try:
        return datetime.fromtimestamp(score, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _sum(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _offset(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    try:
        offset = int(cursor)
    except ValueError:
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out") from None
    if offset < 0:
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
    return offset
