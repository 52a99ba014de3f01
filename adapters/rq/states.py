"""RQ jobs in every state, one page at a time, and where a job id is now.

Each state is read from the lists RQ keeps for it, one after the other, and a cursor is
a rank across them:

- waiting: the queue list, head first (workers pop from the left: next to run first);
- scheduled: rq 3.0's ready registry (dependencies met, enqueued next), the scheduled
  registry by its score (the time RQ will enqueue the job), then the deferred registry
  (waiting for other jobs: its score is when the job was added, 2.6's is +inf);
- in_progress: the started registry (``rq:wip``; members ``jobid:execid`` in 2.x/3.x),
  then jobs a worker has taken off the queue and not yet started (``:intermediate``);
- finished, failed: their registries, newest first by score, which is when RQ drops the
  job (end + result_ttl / failure_ttl): jobs kept longer sort ahead of their time, so a
  page is also sorted by its jobs' own end times;
- canceled: the canceled registry, newest first by score (the time of the cancel).

Registry scores are expiry times except where said: rows report them as ``expires_at``,
and the event times from the job hash. Every page costs a constant number of round trips.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import redis

from queuewatch.adapters.base import STATES, Page
from queuewatch.adapters.errors import NotFound

from .jobs import EPOCH, STATE_OF_STATUS, split_member, text_of, unix_time
from .keys import Keys
from .rows import RowReader, state_row
from .values import RQJob

FIND_ID_LIMIT = 1_000  # characters of an id looked up
_NEVER = datetime.max.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Segment:
    """One list of a state: a zset read by rank (ascending or not) or a list read by index."""

    key: str
    kind: str  # "zset" | "zset-desc" | "list"
    role: str  # what the rows of this segment are: the registry's word


def segments(keys: Keys, queue: str, state: str) -> list[Segment]:
    reg = keys.registry
    return {
        "waiting": [Segment(keys.queue(queue), "list", "queue")],
        "scheduled": [Segment(reg("ready", queue), "zset", "ready"), Segment(reg("scheduled", queue), "zset", "scheduled"),
                      Segment(reg("deferred", queue), "zset", "deferred")],
        "in_progress": [Segment(reg("wip", queue), "zset", "wip"), Segment(reg("started", queue), "zset", "wip"),
                        Segment(keys.intermediate(queue), "list", "intermediate")],
        "finished": [Segment(reg("finished", queue), "zset-desc", "finished")],
        "failed": [Segment(reg("failed", queue), "zset-desc", "failed")],
        "canceled": [Segment(reg("canceled", queue), "zset-desc", "canceled")],
    }[state]  # fmt: skip


def _range(pipe: Any, segment: Segment, start: int, count: int) -> None:
    end = start + count - 1
    if segment.kind == "list":
        pipe.lrange(segment.key, start, end)
    elif segment.kind == "zset":
        pipe.zrange(segment.key, start, end, withscores=True)
    else:
        pipe.zrevrange(segment.key, start, end, withscores=True)


def _size(pipe: Any, segment: Segment) -> None:
    (pipe.llen if segment.kind == "list" else pipe.zcard)(segment.key)


class StateLists:
    """The per-state lists of one RQ adapter."""

    def __init__(self, client: redis.Redis, keys: Keys, rows: RowReader) -> None:
        self.client = client
        self.keys = keys
        self.rows = rows

    def page(self, queue: str, state: str, limit: int, offset: int) -> Page[RQJob]:
        if state not in STATES:
            raise NotFound(f"no state {state!r}")
        parts = segments(self.keys, queue, state)
        entries: list[tuple[Segment, bytes, float | None]] = []
        if len(parts) == 1:
            # One list: its size and the page in one round trip.
            with self.client.pipeline(transaction=False) as pipe:
                _size(pipe, parts[0])
                _range(pipe, parts[0], offset, limit)
                total, window = pipe.execute()
            entries = [_entry(parts[0], item) for item in window]
        else:
            with self.client.pipeline(transaction=False) as pipe:
                for part in parts:
                    _size(pipe, part)
                sizes = pipe.execute()
            total = sum(sizes)
            wanted, skip, remaining = [], offset, limit
            for part, size in zip(parts, sizes):
                if remaining <= 0:
                    break
                if skip >= size:
                    skip -= size
                    continue
                count = min(size - skip, remaining)
                wanted.append((part, skip, count))
                remaining, skip = remaining - count, 0
            if wanted:
                with self.client.pipeline(transaction=False) as pipe:
                    for part, first, count in wanted:
                        _range(pipe, part, first, count)
                    windows = pipe.execute()
                entries = [_entry(part, item) for (part, _, _), window in zip(wanted, windows) for item in window]
        rows = self._rows(state, entries)
        read = len(entries)
        return Page(
            items=tuple(rows),
            total=total,
            next_cursor=str(offset + read) if read and offset + read < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def _rows(self, state: str, entries: list[tuple[Segment, bytes, float | None]]) -> list[RQJob]:
        members = [split_member(member) if part.role == "wip" else (member.decode("utf-8", "replace"), None)
                   for part, member, _ in entries]  # fmt: skip
        ids = [job_id for job_id, _ in members]
        results = 3 if state == "failed" else 1 if state == "finished" else 0
        read = self.rows.read(ids, results=results)
        rows = []
        for (part, _, score), (job_id, execution), (fields, stream) in zip(entries, members, read):
            when = unix_time(score) if score is not None else None
            details: tuple[tuple[str, str], ...] = ()
            if execution:
                details += (("execution", execution),)
            if part.role == "ready":
                details += (("ready", "its dependencies are met: RQ enqueues it next"),)
            elif part.role == "deferred":
                details += (("deferred", "waits for other jobs to finish"),)
            elif part.role == "intermediate":
                details += (("taken", "a worker took it off the queue and has not started it yet"),)
            rows.append(state_row(
                state, job_id, fields, stream, details=details,
                expires_at=when if part.role in ("finished", "failed") else None,
                scheduled_for=when if part.role == "scheduled" else None,
                ended_at=when if part.role == "canceled" else None,
            ))  # fmt: skip
        if state == "in_progress":
            rows = self._running_workers(rows, [execution for _, execution in members])
            rows.sort(key=lambda j: j.started_at or _NEVER)
        elif state in ("finished", "failed"):
            # Scores are whole seconds plus a ttl that may differ per job: order by the end itself.
            rows.sort(key=lambda j: j.ended_at or EPOCH, reverse=True)
        return rows

    def _running_workers(self, rows: list[RQJob], executions: list[str | None]) -> list[RQJob]:
        """The worker of each run from its execution hash (rq 2.x/3.0), where the job hash does
        not say it yet: the worker registers the run a moment before it writes the job."""
        wanted = [(i, execution) for i, (row, execution) in enumerate(zip(rows, executions)) if execution and not row.worker]
        if not wanted:
            return rows
        with self.client.pipeline(transaction=False) as pipe:
            for i, execution in wanted:
                pipe.hget(self.keys.execution(rows[i].id, execution), b"worker_name")  # type: ignore[arg-type]
            names = pipe.execute(raise_on_error=False)
        rows = list(rows)
        for (i, _), name in zip(wanted, names):
            if isinstance(name, bytes) and name:
                rows[i] = replace(rows[i], worker=text_of(name))
        return rows

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """(queue, state) of a job id: one HMGET of its hash (two for a pasted ``jobid:execid``)."""
        if not job_id or len(job_id) > FIND_ID_LIMIT:
            return []
        candidates = [job_id]
        plain, execution = split_member(job_id)
        if execution:
            candidates.append(plain)
        with self.client.pipeline(transaction=False) as pipe:
            for candidate in candidates:
                pipe.hmget(self.keys.job(candidate), [b"origin", b"status"])
            answers = pipe.execute()
        for origin, status in answers:
            queue = text_of(origin)
            if queue is not None:
                word = text_of(status) or "unknown"
                return [(queue, STATE_OF_STATUS.get(word, word))]
        return []


def _entry(part: Segment, item: Any) -> tuple[Segment, bytes, float | None]:
    if isinstance(item, (tuple, list)):
        return part, item[0], item[1]
    return part, item, None
