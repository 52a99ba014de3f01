"""Arq's jobs in every state (DESIGN.md "Jobs in every state"), read and moved through its keys.

- **waiting**: ready jobs (score <= now) of the queue zset without an
  ``arq:in-progress:ID`` key, lowest score first (the order workers take them);
  a page passes over at most ``SKIP_RUNNING`` running ones (``ready_page.lua``).
- **scheduled**: deferred jobs (score > now), soonest first, with their run-at time.
- **in_progress**: ready jobs with an in-progress key, among the first ``HEAD``
  ready ones (where workers take jobs from; the counts look at the same ones).
- **finished**: not listed. A result ``arq:result:ID`` is found by its id
  (``find``), but arq keeps no per-queue list of them: listing would need a
  SCAN of the whole keyspace on a page view.
- **failed**: the existing failed list (``index.ArqFailures``).

Moves are one Lua call per chunk: ``delete_jobs.lua`` removes a job from its
zset with its record and try counter unless a worker has started it;
``enqueue_now.lua`` gives deferred jobs scores just ahead of the ready ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from queuewatch.adapters.base import STATES, ActionResult, FailedJob, Job, Page, Tally, chunks, unique
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.errors import Unsupported
from queuewatch.adapters.rabbitmq.dead_letters import parse_offset
from queuewatch.adapters.redis_errors import redis_errors

from .index import DEFAULT_QUEUE, RESULT_PREFIX
from .records import ms_time, read_record

JOB_PREFIX = "arq:job:"
IN_PROGRESS_PREFIX = "arq:in-progress:"
RETRY_PREFIX = "arq:retry:"
HEAD = 1_000  # ready jobs looked at for running ones (as counts.lua does)
SKIP_RUNNING = 1_000  # running jobs a page of waiting ones may pass over
ROW_BYTES = 256 * 1024  # of a job record decoded per row
MOVE_CHUNK = 200  # ids per Lua call

REASONS = {
    "finished": "Arq keeps a finished job only as its result (arq:result:ID, for keep_result seconds) and no "
                "list of them per queue: listing them would need a scan of the whole database. Find one by its id.",
    "canceled": "Arq has no canceled state: an aborted job ends as a failed result.",
}  # fmt: skip

_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("ready_page", "delete_jobs", "enqueue_now")}


class ArqJobStates:
    """The job-state methods of ``ArqAdapter`` (a mixin: it provides ``client``, ``label``, ``backend``)."""

    client: Any
    label: str

    def _state_script(self, name: str) -> Any:
        scripts = self.__dict__.setdefault("_state_scripts", {})
        if name not in scripts:
            scripts[name] = self.client.register_script(_SCRIPTS[name])
        return scripts[name]

    def job_states(self, queue: str) -> dict[str, str | None]:
        return {state: REASONS.get(state) for state in STATES}

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        if state not in STATES:
            raise Unsupported(f"no state {state!r}")
        if state in REASONS:
            raise Unsupported(REASONS[state])
        if state == "failed":
            page = self.failed(queue, limit, cursor)  # type: ignore[attr-defined]
            rows = tuple(Job(**{f.name: getattr(j, f.name) for f in fields(FailedJob)}, state="failed") for j in page.items)
            return Page(rows, page.total, page.next_cursor, page.prev_cursor, page.offset)
        offset = parse_offset(cursor)
        now_ms = int(time.time() * 1000)
        with redis_errors():
            counts = self._scripts["counts"]  # type: ignore[attr-defined]
            _jobs, ready, running, _checked, _oldest = counts(keys=[queue], args=[now_ms, HEAD, IN_PROGRESS_PREFIX])
            if state == "scheduled":
                total = self.client.zcard(queue) - ready
                members = self.client.zrangebyscore(queue, f"({now_ms}", "+inf", start=offset, num=limit, withscores=True)
                found = [(m.decode(), float(s)) for m, s in members]
                end, last = offset + len(found), total
            else:
                busy = state == "in_progress"
                stop = HEAD if busy else offset + limit + SKIP_RUNNING
                page, end = self._state_script("ready_page")(
                    keys=[queue], args=[now_ms, offset, limit, IN_PROGRESS_PREFIX, int(busy), stop]
                )
                found = [(page[i].decode(), float(page[i + 1])) for i in range(0, len(page), 2)]
                total = running if busy else max(0, ready - running)
                last = min(ready, HEAD) if busy else ready
            rows = self._rows(queue, state, found)
        prev = str(max(0, offset - limit)) if offset > 0 else None
        return Page(rows, total, str(end) if end < last else None, prev, offset)

    def _rows(self, queue: str, state: str, found: list[tuple[str, float]]) -> tuple[Job, ...]:
        """Rows for (id, score) pairs: the job records in one pipeline, each decoded within ROW_BYTES."""
        if not found:
            return ()
        with self.client.pipeline(transaction=False) as pipe:
            for job_id, _ in found:
                pipe.strlen(JOB_PREFIX + job_id)
                pipe.getrange(JOB_PREFIX + job_id, 0, ROW_BYTES)
            replies = pipe.execute(raise_on_error=False)
        rows = []
        for n, (job_id, score) in enumerate(found):
            size, data = replies[2 * n], replies[2 * n + 1]
            worker = f"arq worker on {queue}" if state == "in_progress" else None
            when = ms_time(int(score)) if state == "scheduled" else None
            if not isinstance(data, bytes) or not data:
                rows.append(Job(job_id, None, "(the job record is gone: arq will drop this id as expired)", None, None,
                                None, None, state=state, scheduled_for=when, worker=worker))  # fmt: skip
                continue
            if isinstance(size, int) and size > ROW_BYTES:
                preview, function, record = f"({size:,} bytes: open the job to read it)", None, None
            else:
                record = read_record(data)
                function = record.function
                preview = args_preview(record.args, record.kwargs) if record.error is None else record.error
            rows.append(Job(job_id, function, preview, None, None, None, record.job_try if record else None,
                            state=state, enqueued_at=ms_time(record.enqueued_ms) if record else None,
                            scheduled_for=when, worker=worker))  # fmt: skip
        return tuple(rows)

    def _known_queues(self) -> list[str]:
        names = set(self.configured) | self.index.queue_names() | set(self._reports) | {DEFAULT_QUEUE}  # type: ignore[attr-defined]
        return sorted(names)

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """Its result (finished or failed, naming its queue) and its score in each known queue:
        one pipeline of O(1) reads per queue."""
        queues = self._known_queues()
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.strlen(RESULT_PREFIX + job_id)
                pipe.exists(IN_PROGRESS_PREFIX + job_id)
                for queue in queues:
                    pipe.zscore(queue, job_id)
                size, running, *scores = pipe.execute(raise_on_error=False)
            result = self.client.get(RESULT_PREFIX + job_id) if isinstance(size, int) and 0 < size <= 16 << 20 else None
        matches = []
        if isinstance(result, bytes):
            record = read_record(result)
            if record.error is None and record.is_result:
                matches.append((record.queue or DEFAULT_QUEUE, "failed" if record.failed else "finished"))
        now_ms = time.time() * 1000
        for queue, score in zip(queues, scores):
            if isinstance(score, float):
                state = "scheduled" if score > now_ms else "in_progress" if running else "waiting"
                matches.append((queue, state))
        return matches

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        script = self._state_script("delete_jobs")
        tally = Tally()
        with tally.reporting(), redis_errors():
            for chunk in chunks(unique(ids), MOVE_CHUNK):
                deleted, missing = script(keys=[queue], args=[JOB_PREFIX, IN_PROGRESS_PREFIX, RETRY_PREFIX, *chunk])
                tally.add(deleted, [m.decode() for m in missing])
        return tally.result()

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        script = self._state_script("enqueue_now")
        tally = Tally()
        with tally.reporting(), redis_errors():
            for chunk in chunks(unique(ids), MOVE_CHUNK):
                moved, missing = script(keys=[queue], args=[int(time.time() * 1000), *chunk])
                tally.add(moved, [m.decode() for m in missing])
        return tally.result()
