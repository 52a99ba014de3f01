"""Dramatiq's messages in every state on its Redis broker (DESIGN.md "Jobs in every state").

- **waiting**: the list ``NS:Q`` (workers LPOP it: head first), bodies in ``Q.msgs``.
- **scheduled**: the delayed messages, all in ``Q.DQ.msgs``: those no worker has
  fetched yet are also in the list ``Q.DQ``; the others are held in a worker's
  memory until their eta (and in its ``__acks__.W.Q.DQ`` set). Dramatiq keeps
  no order by eta in Redis, so pages follow the hash (HSCAN, O(page)) and each
  page is sorted by eta.
- **in_progress**: what each worker has fetched and not acked
  (``__acks__.W.Q``: running or prefetched), with the worker; bounded by the
  workers' prefetch, so read whole.
- **failed**: the dead letters (``failed``). **finished**, **canceled**: not kept.

Ids shown are ``message_id``s; the keys are ``redis_message_id``s, new at every
enqueue. What pages showed is remembered (``_remember``); other ids are looked
for with a bounded HSCAN. Delete and enqueue-now act only on messages still in
a list, one Lua call per chunk: a fetched message lives on in its worker's memory.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from queuewatch.adapters.base import STATES, ActionResult, FailedJob, Job, JobDetail, Page, Tally, chunks, unique
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.rabbitmq.dead_letters import parse_offset
from queuewatch.adapters.redis_errors import redis_errors

from . import messages as dramatiq

MOVE_CHUNK = 50  # ids per Lua call: LREM walks the list from its head
LOCATE_SECONDS = 5.0

REASONS = {
    "finished": "Dramatiq keeps no record of finished messages: a worker deletes a message once it is acked "
                "(the Results middleware keeps return values under keys of its own, not per queue).",
    "canceled": "Dramatiq has no canceled state.",
}  # fmt: skip
HELD = ("A worker fetches delayed messages ahead of time and holds them in memory until their eta; those "
        "cannot be deleted or enqueued now (the worker would still enqueue its copy), only the ones no worker "
        "holds yet.")  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def enqueued_now(data: bytes, queue: str, redis_message_id: str) -> bytes | None:
    """A delayed message as a worker enqueues it at its eta: on ``queue``, no eta, a fresh
    redis_message_id, retries kept. None when it is not a JSON Dramatiq message."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("actor_name"), str):
        return None
    options = dict(message["options"]) if isinstance(message.get("options"), dict) else {}
    options.pop("eta", None)
    options["redis_message_id"] = redis_message_id
    return json.dumps(message | {"queue_name": queue, "options": options}, separators=(",", ":")).encode("utf-8")


class DramatiqRedisJobStates:
    """The job-state methods of ``DramatiqRedisAdapter`` (a mixin)."""

    client: Any
    prefix: str
    key: Any  # the adapter's: (queue, suffix) -> the Redis key

    def job_states(self, queue: str) -> dict[str, str | None]:
        return {state: REASONS.get(state) for state in STATES}

    def _workers_alive(self) -> list[str]:
        return [_text(w) for w in self.client.zrange(self.prefix + "__heartbeats__", 0, -1)]

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        if state not in STATES:
            raise Unsupported(f"no state {state!r}")
        if state in REASONS:
            raise Unsupported(REASONS[state])
        with redis_errors():
            if state == "failed":
                page = self.failed(queue, limit, cursor)  # type: ignore[attr-defined]
                rows = tuple(_as_job(j, "failed") for j in page.items)
                return Page(rows, page.total, page.next_cursor, page.prev_cursor, page.offset)
            if state == "waiting":
                return self._waiting(queue, limit, cursor)
            if state == "scheduled":
                return self._scheduled(queue, limit, cursor)
            return self._in_progress(queue, limit, cursor)

    def _waiting(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        offset = parse_offset(cursor)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(self.key(queue))
            pipe.lrange(self.key(queue), offset, offset + limit - 1)
            total, rids = pipe.execute()
        rids = [_text(r) for r in rids]
        rows = self._rows(queue, ".msgs", "waiting", [(r, None) for r in rids])
        end = offset + len(rids)
        return Page(rows, total, str(end) if end < total else None, str(max(0, offset - limit)) if offset else None, offset)

    def _scheduled(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        """A page of HSCAN over Q.DQ.msgs: cursor ``SCAN:SKIP`` (the rows of that batch already shown)."""
        scan, _, skip = (cursor or "0:0").partition(":")
        if not (scan.isdigit() and skip.isdigit()):
            raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
        msgs = self.key(queue, ".DQ.msgs")
        total = self.client.hlen(msgs)
        next_scan, batch = self.client.hscan(msgs, int(scan), count=max(limit, 10))
        ordered = sorted(batch.items(), key=lambda kv: (_eta(kv[1]) or 0, _text(kv[0])))
        shown = ordered[int(skip) : int(skip) + limit]
        held = self._holders(queue + ".DQ", [_text(r) for r, _ in shown])
        rows = tuple(self._row(queue, _text(rid), body, "scheduled", held.get(_text(rid))) for rid, body in shown)
        if int(skip) + limit < len(ordered):
            following: str | None = f"{scan}:{int(skip) + limit}"
        else:
            following = f"{int(next_scan)}:0" if int(next_scan) else None
        return Page(rows, total, following, None if cursor in (None, "", "0:0") else "0:0", 0)

    def _in_progress(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        offset = parse_offset(cursor)
        workers = self._workers_alive()
        with self.client.pipeline(transaction=False) as pipe:
            for worker in workers:
                pipe.smembers(f"{self.prefix}__acks__.{worker}.{queue}")
            held = pipe.execute(raise_on_error=False)
        pairs = sorted((worker, _text(rid)) for worker, rids in zip(workers, held) if isinstance(rids, set) for rid in rids)
        shown = pairs[offset : offset + limit]
        rows = self._rows(queue, ".msgs", "in_progress", [(rid, worker) for worker, rid in shown])
        end = offset + len(shown)
        return Page(rows, len(pairs), str(end) if end < len(pairs) else None,
                    str(max(0, offset - limit)) if offset else None, offset)  # fmt: skip

    def _holders(self, queue_name: str, rids: list[str]) -> dict[str, str]:
        """{rid: worker} for the rids some worker has fetched from ``queue_name`` (a queue or its Q.DQ)."""
        workers = self._workers_alive()
        if not rids or not workers:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for worker in workers:
                for rid in rids:
                    pipe.sismember(f"{self.prefix}__acks__.{worker}.{queue_name}", rid)
            replies = pipe.execute(raise_on_error=False)
        found: dict[str, str] = {}
        for i, worker in enumerate(workers):
            for j, rid in enumerate(rids):
                if replies[i * len(rids) + j] is True or replies[i * len(rids) + j] == 1:
                    found.setdefault(rid, worker)
        return found

    def _rows(self, queue: str, suffix: str, state: str, items: list[tuple[str, str | None]]) -> tuple[Job, ...]:
        if not items:
            return ()
        bodies = self.client.hmget(self.key(queue, suffix), [rid for rid, _ in items])
        return tuple(self._row(queue, rid, body, state, worker) for (rid, worker), body in zip(items, bodies))

    def _row(self, queue: str, rid: str, body: bytes | None, state: str, worker: str | None) -> Job:
        if body is None:
            return Job(rid, None, "(message data is gone: acked or moved meanwhile)", None, None, None, None,
                       state=state, worker=worker)  # fmt: skip
        message = dramatiq.parse(body, max_bytes=dramatiq.LIST_DECODE_LIMIT)
        row = dramatiq.failed_row(message, job_id=self._remember(queue, message, rid), failed_at=None)  # type: ignore[attr-defined]
        return Job(row.id, row.function, row.args_preview, None, None, None, message.retries + 1 if message.fields else None,
                   state=state, enqueued_at=message.sent_at, scheduled_for=dramatiq.ms_time(message.options.get("eta")),
                   worker=worker)  # fmt: skip

    # -- finding -----------------------------------------------------------

    def _live_rids(self, queue: str, ids: Sequence[str]) -> dict[str, str]:
        """{id: redis_message_id} of messages in Q.msgs or Q.DQ.msgs: remembered from pages, or the
        id itself; others by a bounded HSCAN of both hashes (past it, Unsupported)."""
        with self._hints_lock:  # type: ignore[attr-defined]
            hinted = {i: self._hints.get((queue, i), i) for i in ids}  # type: ignore[attr-defined]
        with self.client.pipeline(transaction=False) as pipe:
            for rid in hinted.values():
                pipe.hget(self.key(queue, ".msgs"), rid)
                pipe.hget(self.key(queue, ".DQ.msgs"), rid)
            replies = pipe.execute()
        found = {}
        for n, (job_id, rid) in enumerate(hinted.items()):
            body = replies[2 * n] or replies[2 * n + 1]
            if body is not None and (dramatiq.message_id_of(body) or rid) in (job_id, rid):
                found[job_id] = rid
        wanted = {i for i in ids if i not in found}
        deadline = time.monotonic() + LOCATE_SECONDS
        for suffix in (".msgs", ".DQ.msgs"):
            cursor = 0
            while wanted:
                cursor, entries = self.client.hscan(self.key(queue, suffix), cursor, count=500)
                for rid, body in entries.items():
                    message_id = dramatiq.message_id_of(body)
                    if message_id in wanted:
                        found[message_id] = _text(rid)
                        wanted.discard(message_id)
                if cursor == 0:
                    break
                if time.monotonic() > deadline:
                    raise Unsupported(f"Searched {queue!r} for {len(wanted):,} message ids this dashboard has not "
                                      f"shown for {LOCATE_SECONDS:.0f} s without finding them all; nothing was changed. "
                                      "Open the page that lists them first.")  # fmt: skip
        return found

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """By redis_message_id, or by a message_id this dashboard has listed: O(1) reads per queue."""
        queues = self._discovery.names()  # type: ignore[attr-defined]
        with self._hints_lock:  # type: ignore[attr-defined]
            rids = [self._hints.get((q, job_id), job_id) for q in queues]  # type: ignore[attr-defined]
        workers = self._workers_alive()
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            for queue, rid in zip(queues, rids):
                pipe.hget(self.key(queue, ".msgs"), rid)
                pipe.hexists(self.key(queue, ".DQ.msgs"), rid)
                pipe.zscore(self.key(queue, ".XQ"), rid)
                for worker in workers:
                    pipe.sismember(f"{self.prefix}__acks__.{worker}.{queue}", rid)
            replies = pipe.execute(raise_on_error=False)
        width = 3 + len(workers)
        matches = []
        for n, (queue, rid) in enumerate(zip(queues, rids)):
            body, delayed, dead, *held = replies[n * width : (n + 1) * width]
            if isinstance(body, bytes) and (dramatiq.message_id_of(body) or rid) in (job_id, rid):
                matches.append((queue, "in_progress" if any(h is True or h == 1 for h in held) else "waiting"))
            if delayed is True or delayed == 1:
                matches.append((queue, "scheduled"))
            if isinstance(dead, float):
                matches.append((queue, "failed"))
        return matches

    def live_job(self, queue: str, job_id: str) -> JobDetail:
        """A waiting, delayed or fetched message in full. Raises NotFound."""
        with redis_errors():
            rid = self._live_rids(queue, [job_id]).get(job_id)
            if rid is None:
                raise NotFound(f"no Dramatiq message {job_id!r} in queue {queue!r}")
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(self.key(queue, ".msgs"), rid)
                pipe.hget(self.key(queue, ".DQ.msgs"), rid)
                body, delayed = pipe.execute()
            held = self._holders(queue + ".DQ" if body is None else queue, [rid]).get(rid)
        if body is None and delayed is None:
            raise NotFound(f"Dramatiq message {job_id!r} of queue {queue!r} is gone")
        message = dramatiq.parse(body if body is not None else delayed)
        state = "scheduled" if body is None else "in_progress" if held else "waiting"
        base = dramatiq.detail(message, job_id=job_id, queue=queue, failed_at=None,
                               details=(("message key", f"{self.key(queue, '.msgs' if body is not None else '.DQ.msgs')} {rid}"),),
                               notes=(HELD,) if state == "scheduled" else ())  # fmt: skip
        notes = tuple(n for n in base.notes if not n.startswith(("Requeue", "Dramatiq stores", "The traceback")))
        status = {"scheduled": "delayed", "in_progress": "fetched by a worker", "waiting": "enqueued"}[state]
        return JobDetail.of(base, state=state, status=status, worker=held, notes=notes, error_type=None, error_message=None,
                            scheduled_for=dramatiq.ms_time(message.options.get("eta")))  # fmt: skip

    # -- moves -------------------------------------------------------------

    def _live_keys(self, queue: str) -> list[str]:
        return [self.key(queue), self.key(queue, ".msgs"), self.key(queue, ".DQ"), self.key(queue, ".DQ.msgs")]

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        wanted = unique(ids)
        tally = Tally()
        with tally.reporting(), redis_errors():
            located = self._live_rids(queue, wanted)
            by_rid = {rid: job_id for job_id, rid in located.items()}
            tally.add(0, [i for i in wanted if i not in located])
            for chunk in chunks(list(by_rid), MOVE_CHUNK):
                deleted, missing = self._state_script("delete_waiting")(keys=self._live_keys(queue), args=list(chunk))
                tally.add(deleted, [by_rid[_text(m)] for m in missing])
        return tally.result()

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        wanted = unique(ids)
        tally = Tally()
        with tally.reporting(), redis_errors():
            located = self._live_rids(queue, wanted)
            tally.add(0, [i for i in wanted if i not in located])
            by_rid = {rid: job_id for job_id, rid in located.items()}
            for chunk in chunks(list(by_rid), MOVE_CHUNK):
                bodies = self.client.hmget(self.key(queue, ".DQ.msgs"), list(chunk))
                # The soonest eta last: LPUSH puts each in front of the one before.
                plans = sorted(((rid, body) for rid, body in zip(chunk, bodies) if body is not None),
                               key=lambda p: -(_eta(p[1]) or 0))  # fmt: skip
                args: list[Any] = []
                missing = [by_rid[rid] for rid, body in zip(chunk, bodies) if body is None]
                for rid, body in plans:
                    new_rid = str(uuid.uuid4())
                    rewritten = enqueued_now(body, queue, new_rid)
                    if rewritten is None:
                        missing.append(by_rid[rid])
                    else:
                        args += [rid, hashlib.sha1(body).hexdigest(), new_rid, rewritten]
                moved, gone = self._state_script("enqueue_now")(keys=self._live_keys(queue), args=args) if args else (0, [])
                tally.add(moved, missing + [by_rid[_text(g)] for g in gone])
        return tally.result()

    def _state_script(self, name: str) -> Any:
        scripts = self.__dict__.setdefault("_state_scripts", {})
        if name not in scripts:
            scripts[name] = self.client.register_script(Path(__file__).with_name(f"{name}.lua").read_text())
        return scripts[name]


def _eta(body: bytes) -> float | None:
    try:
        value = json.loads(body).get("options", {}).get("eta")
    except (ValueError, RecursionError, AttributeError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _as_job(row: FailedJob, state: str) -> Job:
    return Job(**{f.name: getattr(row, f.name) for f in fields(FailedJob)}, state=state)
