"""Dramatiq on Redis, read and moved through its own keys, never ``import dramatiq``.

Keys under the namespace (``dramatiq`` unless configured), as Dramatiq's
``brokers/redis/dispatch.lua`` keeps them: ``NS:Q`` (list of redis message
ids), ``NS:Q.msgs`` (hash id -> JSON message), ``NS:Q.DQ`` + ``NS:Q.DQ.msgs``
(delayed), ``NS:Q.XQ`` (dead letters, zset scored by the ms they died) +
``NS:Q.XQ.msgs``, ``NS:__acks__.WORKER.Q`` (sets of ids a worker holds) and
``NS:__heartbeats__`` (zset worker -> ms of its last command).

Keys are named by each enqueue's ``options.redis_message_id``; the ids shown
are Dramatiq's ``message_id``, mapped back through what pages showed (or, for
ids never shown here, a bounded HSCAN). Queues are found by a SCAN bounded per
call, which says when its answer is still partial. Moves are Lua scripts, one
call per chunk: a message is in the dead letters or in its queue, never in neither.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from queuewatch.adapters.base import (ALL, ActionResult, Adapter, FailedJob, JobDetail, Option, Page, QueueStats, Selection, Tally, Worker,
                                      unique)  # fmt: skip
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.rabbitmq.dead_letters import parse_offset
from queuewatch.adapters.redis_errors import redis_errors

from . import messages as dramatiq
from .control import DramatiqControl
from .discovery import MAX_QUEUES as MAX_DISCOVERED
from .discovery import QueueDiscovery
from .redis_states import DramatiqRedisJobStates
from .timings import DramatiqTimings
from .workers import REDIS_RECORDS

CHUNK = 500  # messages per Lua call
SCAN_KEYS = 20_000  # keys a snapshot's discovery SCAN may walk before answering
LOCATE_SECONDS = 10.0  # time a requeue/delete by id may spend finding ids it never showed
HINTS = 100_000  # message_id -> redis_message_id pairs remembered from pages shown
EXPIRY = "Dramatiq's workers delete dead letters older than their dead_message_ttl (7 days unless configured)."

_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("requeue", "delete", "purge")}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class DramatiqRedisAdapter(DramatiqTimings, DramatiqControl, DramatiqRedisJobStates, Adapter):
    """Dramatiq's Redis broker on one Redis database."""

    system = "dramatiq"
    label = "Dramatiq"
    options = (Option("DRAMATIQ_NAMESPACE", "namespace"),)
    failed_label = "Dead letters"
    failed_noun = ("dead letter", "dead letters")

    def __init__(self, *, backend: str, client: redis.Redis, namespace: str = "dramatiq",
                 heartbeat_timeout_ms: int = 60_000) -> None:  # fmt: skip
        super().__init__(backend=backend)
        self.client = client
        self.prefix = namespace + ":"
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._discovery = QueueDiscovery(client, self.prefix)
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._hints: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._hints_lock = threading.Lock()

    @classmethod
    def detect(cls, client: redis.Redis, namespace: str = "dramatiq") -> bool:
        """Dramatiq is here if a broker process has dispatched a command (its heartbeats);
        leftover keys without one are found by the backend's survey (``recognizes``)."""
        return bool(client.exists(f"{namespace}:__heartbeats__"))

    @classmethod
    def recognizes(cls, key: bytes) -> bool:
        return key.startswith(b"dramatiq:")

    def key(self, queue: str, suffix: str = "") -> str:
        return f"{self.prefix}{queue}{suffix}"

    # -- reads -------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        return self.overview()[0]

    def workers(self) -> list[Worker]:
        return self.overview()[1]

    def maintain(self, budget_seconds: float) -> None:
        """Advance queue discovery (a SCAN; reads only)."""
        with redis_errors():
            self._discovery.advance(max_keys=10 * SCAN_KEYS, max_seconds=budget_seconds)

    def overview(self) -> tuple[list[QueueStats], list[Worker]]:
        with redis_errors():
            self._discovery.advance(max_keys=SCAN_KEYS, max_seconds=0.25)
            return self._read(self._discovery.names())

    def queue(self, name: str) -> QueueStats:
        with redis_errors():
            [stats], _ = self._read([name])
        known = name in self._discovery.names()
        if not known and not any([stats.depth, stats.in_progress, stats.scheduled, stats.failed]):
            raise NotFound(f"no Dramatiq queue named {name!r}")
        return stats

    def _read(self, names: list[str]) -> tuple[list[QueueStats], list[Worker]]:
        """Counts and workers in at most five round trips, however many queues and workers."""
        beats = [(_text(w), score) for w, score in self.client.zrange(self.prefix + "__heartbeats__", 0, -1, withscores=True)]
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(self.key(name))
                pipe.hlen(self.key(name, ".DQ.msgs"))
                pipe.zcard(self.key(name, ".XQ"))
                pipe.lindex(self.key(name), 0)
                for worker, _ in beats:
                    pipe.scard(f"{self.prefix}__acks__.{worker}.{name}")
                    pipe.scard(f"{self.prefix}__acks__.{worker}.{name}.DQ")
            replies = [None if isinstance(r, Exception) else r for r in pipe.execute(raise_on_error=False)]
        width = 4 + 2 * len(beats)
        rows = [replies[i * width : (i + 1) * width] for i in range(len(names))]
        sent = self._head_times([(name, row[3]) for name, row in zip(names, rows)])
        now_ms = time.time() * 1000
        alive = {w: now_ms - score < self.heartbeat_timeout_ms for w, score in beats}
        holding: dict[str, list[str]] = {w: [] for w, _ in beats}
        held_by: dict[str, int] = {w: 0 for w, _ in beats}  # messages each worker holds (running or prefetched)
        stats = []
        partial = () if self._discovery.complete else (
            "Still discovering queues (an incremental SCAN of this Redis database): more may appear.",)  # fmt: skip
        for name, row in zip(names, rows):
            depth, delayed, dead, _head, *acks = row
            held = [(acks[2 * i] or 0, acks[2 * i + 1] or 0) for i in range(len(beats))]
            in_progress = sum(q for q, _ in held)
            by_dead = sum(q for (w, _), (q, _d) in zip(beats, held) if not alive[w])
            serving = 0
            for (worker, _), (q, d) in zip(beats, held):
                held_by[worker] += q + d
                if q or d:
                    holding[worker].append(name)
                    serving += alive[worker]
            age = (datetime.now(timezone.utc) - sent[name]).total_seconds() if sent.get(name) else None
            stats.append(QueueStats(
                backend=self.backend, system=self.system, name=name,
                depth=depth, in_progress=in_progress, scheduled=delayed, failed=dead, workers=serving,
                oldest_age_seconds=None if age is None else max(0.0, age),
                details=(("delayed", delayed), ("dead-lettered", dead), ("held by dead workers", by_dead)),
                notes=(*partial, "Workers: live Dramatiq processes holding this queue's messages now; the Redis broker "
                       "does not record which queues an idle worker listens to. In progress counts prefetched "
                       "messages too.", EXPIRY),
            ))  # fmt: skip
        workers = [
            Worker(backend=self.backend, system=self.system, name=worker, hostname=None, pid=None,
                   queues=tuple(holding[worker]),
                   state=("busy" if holding[worker] else "idle") if alive[worker] else "dead", alive=alive[worker],
                   last_heartbeat=dramatiq.ms_time(score), current_job=None,
                   details=((("holding", f"{held_by[worker]:,} message{'' if held_by[worker] == 1 else 's'}, running or prefetched"),)
                            if held_by[worker] else ()) + (("note", REDIS_RECORDS),))
            for worker, score in beats
        ]  # fmt: skip
        return stats, workers

    def _head_times(self, heads: list[tuple[str, Any]]) -> dict[str, datetime | None]:
        """message_timestamp of each queue's first message (skipping huge ones: this runs every snapshot)."""
        heads = [(name, _text(head)) for name, head in heads if head]
        if not heads:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for name, head in heads:
                pipe.hstrlen(self.key(name, ".msgs"), head)
            sizes = pipe.execute(raise_on_error=False)
        small = [(name, head) for (name, head), size in zip(heads, sizes) if isinstance(size, int) and 0 < size <= 65536]
        with self.client.pipeline(transaction=False) as pipe:
            for name, head in small:
                pipe.hget(self.key(name, ".msgs"), head)
            bodies = pipe.execute(raise_on_error=False)
        return {name: dramatiq.parse(body).sent_at if isinstance(body, bytes) else None
                for (name, _), body in zip(small, bodies)}  # fmt: skip

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        offset = parse_offset(cursor)
        with redis_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(self.key(queue, ".XQ"))
                pipe.zrevrange(self.key(queue, ".XQ"), offset, offset + limit - 1, withscores=True)
                total, members = pipe.execute()
            rids = [_text(m) for m, _ in members]
            bodies = self.client.hmget(self.key(queue, ".XQ.msgs"), rids) if rids else []
        jobs = []
        for rid, (_, score), body in zip(rids, members, bodies):
            when = dramatiq.ms_time(score)
            if body is None:
                jobs.append(FailedJob(rid, None, "(message data is gone)", None, None, when, None))
                continue
            message = dramatiq.parse(body, max_bytes=dramatiq.LIST_DECODE_LIMIT)
            jobs.append(dramatiq.failed_row(message, job_id=self._remember(queue, message, rid), failed_at=when))
        end = offset + len(rids)
        return Page(
            items=tuple(jobs),
            total=total,
            next_cursor=str(end) if end < total else None,
            prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
            offset=offset,
        )

    def job(self, queue: str, job_id: str) -> JobDetail:
        with redis_errors():
            rid = self._locate(queue, [job_id]).get(job_id)
            if rid is None:  # not a dead letter: waiting, delayed or fetched by a worker?
                return self.live_job(queue, job_id)
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(self.key(queue, ".XQ.msgs"), rid)
                pipe.zscore(self.key(queue, ".XQ"), rid)
                body, score = pipe.execute()
        if body is None or score is None:
            raise NotFound(f"Dramatiq dead letter {job_id!r} of queue {queue!r} is gone")
        message = dramatiq.parse(body)
        return replace(dramatiq.detail(message, job_id=job_id, queue=queue, failed_at=dramatiq.ms_time(score),
                                       details=(("dead-letter key", f"{self.key(queue, '.XQ')} {rid}"),)),
                       state="failed")  # fmt: skip

    # -- finding ids -------------------------------------------------------

    def _remember(self, queue: str, message: dramatiq.Message, rid: str) -> str:
        """The id shown for a dead letter (its message_id), remembering which key holds it."""
        job_id = message.message_id or rid
        with self._hints_lock:
            self._hints[(queue, job_id)] = rid
            self._hints.move_to_end((queue, job_id))
            while len(self._hints) > HINTS:
                self._hints.popitem(last=False)
        return job_id

    def _locate(self, queue: str, ids: Sequence[str]) -> dict[str, str]:
        """{message_id: redis_message_id} for the ids still in the dead letters.

        Ids shown on a page are found in O(1) (remembered, then checked); an id
        may also be the redis_message_id itself. Others cost an HSCAN of the dead
        letters, bounded in time: past it, Unsupported rather than a wrong "gone".
        """
        xq_msgs = self.key(queue, ".XQ.msgs")
        with self._hints_lock:
            hinted = {i: self._hints.get((queue, i)) for i in ids}
        with self.client.pipeline(transaction=False) as pipe:
            for job_id, rid in hinted.items():
                pipe.hget(xq_msgs, rid or job_id)
            bodies = pipe.execute()
        found: dict[str, str] = {}
        for (job_id, rid), body in zip(hinted.items(), bodies):
            # A message is named by its message_id, or by its key when it has none.
            if body is not None and (rid is None or (dramatiq.message_id_of(body) or rid) == job_id):
                found[job_id] = rid or job_id
        wanted = {i for i in ids if i not in found}
        if not wanted:
            return found
        deadline, cursor, searched = time.monotonic() + LOCATE_SECONDS, 0, 0
        while True:
            cursor, entries = self.client.hscan(xq_msgs, cursor, count=500)
            searched += len(entries)
            for rid, body in entries.items():
                message_id = dramatiq.message_id_of(body)
                if message_id in wanted:
                    found[message_id] = _text(rid)
                    wanted.discard(message_id)
            if cursor == 0 or not wanted:
                return found
            if time.monotonic() > deadline:
                raise Unsupported(
                    f"Searched {searched:,} dead letters of {queue!r} for {len(wanted):,} ids this dashboard has not "
                    f"shown, in {LOCATE_SECONDS:.0f} s, without finding them all; nothing was changed. Open the page "
                    "that lists them first, or act on all."
                )

    def notes(self) -> tuple[str, ...]:
        if self._discovery.over_cap:
            return (f"More than {MAX_DISCOVERED:,} Dramatiq queue names were found under {self.prefix!r}: only the first "
                    f"{MAX_DISCOVERED:,} are shown.",)  # fmt: skip
        return ()

    # -- moves -------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        keys = [self.key(queue, ".XQ"), self.key(queue, ".XQ.msgs"), self.key(queue), self.key(queue, ".msgs")]
        tally = Tally()
        with tally.reporting(), redis_errors():
            if ids is not ALL:
                return self._requeue_ids(queue, keys, unique(ids), tally)
            top = self.client.zrevrange(keys[0], 0, 0, withscores=True)
            if not top:
                return ActionResult(0)
            max_score, offset = repr(top[0][1]), 0
            while True:  # messages dead-lettered during the requeue (score > max) are not chased
                rids = [_text(r) for r in self.client.zrangebyscore(keys[0], "-inf", max_score, start=offset, num=CHUNK)]
                if not rids:
                    break
                done, unfit, _gone = self._move(queue, keys, rids)
                tally.add(done, unfit)
                offset += len(unfit)  # left in place, so they stay ahead of the next chunk
        return tally.result()

    def _requeue_ids(self, queue: str, keys: list[str], ids: list[str], tally: Tally) -> ActionResult:
        located = self._locate(queue, ids)
        by_rid = {rid: job_id for job_id, rid in located.items()}
        tally.add(0, [i for i in ids if i not in located])
        rids = list(by_rid)
        for start in range(0, len(rids), CHUNK):
            done, unfit, gone = self._move(queue, keys, rids[start : start + CHUNK])
            if unfit:
                raise Unsupported(f"Dramatiq message {unfit[0]!r} is not JSON, so it cannot be rewritten for a requeue.")
            tally.add(done, [by_rid[r] for r in gone])
        return tally.result()

    def _move(self, queue: str, keys: list[str], rids: list[str]) -> tuple[int, list[str], list[str]]:
        """One Lua call: (moved, ids of messages that cannot be rewritten, rids gone meanwhile)."""
        bodies = self.client.hmget(keys[1], rids)
        args: list[Any] = []
        unfit, gone = [], []
        for rid, body in zip(rids, bodies):
            if body is None:
                gone.append(rid)
                continue
            new_rid = str(uuid.uuid4())
            rewritten = dramatiq.requeued(body, queue, redis_message_id=new_rid)
            if rewritten is None:
                unfit.append(dramatiq.message_id_of(body) or rid)
            else:
                args += [rid, hashlib.sha1(body).hexdigest(), new_rid, rewritten]
        moved, missing = self._scripts["requeue"](keys=keys, args=args) if args else (0, [])
        return moved, unfit, gone + [_text(m) for m in missing]

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        keys = [self.key(queue, ".XQ"), self.key(queue, ".XQ.msgs")]
        tally = Tally()
        with tally.reporting(), redis_errors():
            if ids is ALL:
                top = self.client.zrevrange(keys[0], 0, 0, withscores=True)
                while top:
                    done, _ = self._scripts["delete"](keys=keys, args=["range", repr(top[0][1]), CHUNK])
                    tally.add(done)
                    if done == 0:
                        break
                return tally.result()
            wanted = unique(ids)
            located = self._locate(queue, wanted)
            by_rid = {rid: job_id for job_id, rid in located.items()}
            tally.add(0, [i for i in wanted if i not in located])
            rids = list(by_rid)
            for start in range(0, len(rids), CHUNK):
                done, gone = self._scripts["delete"](keys=keys, args=["ids", "", *rids[start : start + CHUNK]])
                tally.add(done, [by_rid[_text(r)] for r in gone])
        return tally.result()

    def purge(self, queue: str) -> ActionResult:
        keys = [self.key(queue), self.key(queue, ".msgs")]
        tally = Tally()
        with tally.reporting(), redis_errors():
            remaining = self.client.llen(keys[0])  # messages enqueued during the purge are kept
            while remaining > 0:
                removed = self._scripts["purge"](keys=keys, args=[min(CHUNK, remaining)])
                if removed == 0:
                    break
                tally.add(removed)
                remaining -= removed
        return tally.result()
