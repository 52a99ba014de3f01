"""Huey (2.5+, 3.x; ``RedisHuey``, ``PriorityRedisHuey``, ``RedisExpireHuey``) read and moved
through its own keys, never ``import huey``.

A queue of the dashboard is a Huey instance, named by its (cleaned) name ``N``:
``huey.redis.N`` holds its waiting tasks (a list, LPUSHed and consumed from the
right; a zset scored by -priority for the priority storages), ``huey.schedule.N``
the tasks waiting for their eta (a zset), ``huey.results.N`` (or one key per
entry, ``huey.r.N.<key>``) return values, ``Error`` records and revoke markers.
Messages are pickles, read by ``messages`` without unpickling.

- Counts: waiting = LLEN / ZCARD, scheduled = ZCARD, failed = the Error records
  the background scan (``index``) found. Huey has no worker registry and keeps
  running tasks only in its consumer's memory: workers and in progress are
  unknown (None, with the reason), never zero.
- Lists: waiting next to run first, scheduled soonest first, O(page)
  (``members.lua`` returns a member whole up to 1 MiB, else its first bytes).
- Moves (``moves.lua``), one exact member at a time: delete (LREM 1 / ZREM of the
  bytes read), enqueue now (ZREM from the schedule, then RPUSH to the right end of
  the queue, or ZADD at the front of its priority, with the message's eta set a
  day back so a consumer in any time zone runs it), purge (count and UNLINK), and
  forgetting an Error record only if it is still the one read. Revoke writes
  what ``huey.revoke_by_id(id)`` writes, ``r:<id>`` = pickle ``(None, False)``.
- Requeue of a failed task is refused: Huey keeps only its Error (error, retries
  left, traceback, id), not its message, so it cannot be rebuilt exactly.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from queuewatch.adapters.base import (ALL, STATES, ActionResult, Adapter, FailedJob, Job, JobDetail, Option, Page,
                                      QueueStats, Selection, Tally, Worker, chunks, unique)  # fmt: skip
from queuewatch.adapters.decoding.payload import render
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.failure_index import expiry, failed_page
from queuewatch.adapters.redis_errors import redis_errors

from . import keys
from .timings import HueyTimings
from .index import MAX_DECODE_BYTES, HueyFailure, HueyFailures
from .messages import (PREFIX_BYTES, REVOKE_FOREVER, HueyMessage, head_of, is_error_head, peek_id,
                       read_error, read_message, read_revoke, with_eta)  # fmt: skip

WHOLE_LIMIT = 1024 * 1024  # a listed member larger than this is shown by its first bytes only
HEAD_BYTES = 4096
WALK_CHUNK = 500  # members per round trip when a move looks for ids
MAX_WALK = 100_000  # members a move looks through, per key
JOB_WALK = 10_000  # members a job page looks through, per key
ETA_BACK = datetime.timedelta(days=1)
LAYOUT_SCAN_STEPS = 10  # SCAN steps of 1,000 keys a revoke may take to tell an expiring result store
REQUEUE_REASON = ("Huey keeps no copy of a failed task's message: its result store holds only the Error (error, "
                  "retries left, traceback, task id), not the task's name or arguments, so it cannot be rebuilt "
                  "exactly. Enqueue the task again from your code; here you can delete the record.")  # fmt: skip
WORKERS_UNKNOWN = "Huey keeps no registry of its consumers: how many run is unknown"
_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("members", "moves")}


class HueyAdapter(HueyTimings, Adapter):
    """Huey's Redis storages on one Redis database."""

    system = "huey"
    label = "Huey"
    options = (Option("HUEY_NAMES", "names", many=True),)

    def __init__(self, *, backend: str, client: redis.Redis, names: Sequence[str] = ()) -> None:
        super().__init__(backend=backend)
        self.client = client
        self.configured = tuple(names)
        self.index = HueyFailures(client, self.configured)
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self._kinds: dict[str, str] = {}  # instance -> the type its queue key had ("list" / "zset")

    @classmethod
    def detect(cls, client: redis.Redis) -> bool:
        """Huey is here if the default instance's keys exist (others are found by the survey)."""
        name = keys.DEFAULT_NAME
        return bool(client.exists(keys.queue_key(name), keys.schedule_key(name), keys.results_key(name)))

    @classmethod
    def recognizes(cls, key: bytes) -> bool:
        return keys.recognizes(key)

    # -- background ------------------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        with redis_errors():
            self.index.maintain(budget_seconds)

    def settle(self, timeout: float = 60.0) -> bool:
        """Scan everything now (tests, scripts)."""
        with redis_errors():
            return self.index.settle(timeout)

    def dump_memory(self) -> dict[str, Any]:
        return {"version": 1, "failures": self.index.dump(), "kinds": dict(self._kinds)}

    def load_memory(self, data: dict[str, Any]) -> None:
        if isinstance(data, dict) and data.get("version") == 1:
            self.index.load(data.get("failures") or {})
            kinds = data.get("kinds") or {}
            if isinstance(kinds, dict):
                self._kinds.update({k: v for k, v in kinds.items() if isinstance(k, str) and v in ("list", "zset")})

    @property
    def memory_version(self) -> object:
        return self.index.version, len(self._kinds)

    # -- reads -----------------------------------------------------------------

    def queues(self) -> list[QueueStats]:
        with redis_errors():
            names = sorted(self.index.names() | ({keys.DEFAULT_NAME} if self.detect(self.client) else set()))
            stats = self._read(names)
        return [s for s in stats if s.name in self.configured or _anything(s) or s.name in self.index.names()]

    def workers(self) -> list[Worker]:
        return []  # Huey has no worker registry: QueueStats.workers_unknown says so

    def queue(self, name: str) -> QueueStats:
        with redis_errors():
            [stats] = self._read([name])
        if not (name in self.configured or name in self.index.names() or _anything(stats) or dict(stats.details).get("results")):
            raise NotFound(f"no Huey instance named {name!r}")
        return stats

    def _read(self, names: list[str]) -> list[QueueStats]:
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                self._scripts["members"](keys=[keys.queue_key(name)], args=[0, 0, 0, 0], client=pipe)
                pipe.zcard(keys.schedule_key(name))
                pipe.hlen(keys.results_key(name))
            replies = pipe.execute(raise_on_error=False)
        stats = []
        for n, name in enumerate(names):
            queue, scheduled, results = replies[3 * n : 3 * n + 3]
            notes = []
            depth = None
            if isinstance(queue, list):
                kind = queue[0].decode() if isinstance(queue[0], bytes) else str(queue[0])
                if kind in ("list", "zset"):
                    self._kinds[name] = kind
                    depth = int(queue[1])
                elif kind == "none":
                    depth = 0
                else:
                    notes.append(f"huey.redis.{name} is a {kind}, not a Huey queue")
            else:
                notes.append(f"The queue's counts could not be read: {queue}")
            if isinstance(scheduled, Exception):
                notes.append(f"The schedule could not be read: {scheduled}")
                scheduled = None
            failed, estimated = self.index.count(name)
            if estimated:
                notes.append(f"Failed is about {failed:,}, from the last full scan; the newest "
                             f"{len(self.index.ordered(name)):,} are listed.")  # fmt: skip
            elif not self.index.complete:
                notes.append("Failed is partial: the first background scan of Huey's result store has not finished.")
            notes.append("Huey keeps a failure only as an Error record in its result store (with results on), "
                         "without its time or the task's arguments: a background scan finds them, and the time "
                         "shown is when queuewatch first saw it.")  # fmt: skip
            notes.append("Huey has no registry of consumers or running tasks: workers and in progress are unknown.")
            if self._kinds.get(name) == "zset":
                notes.append("A priority queue (PriorityRedisHuey): waiting tasks are listed highest priority first.")
            revoked = len(self.index.revoked(name))
            details: tuple[tuple[str, int | None], ...] = (("revoked", revoked),)
            if isinstance(results, int):
                details += (("results", results),)
            stats.append(
                QueueStats(
                    backend=self.backend,
                    system=self.system,
                    name=name,
                    depth=depth,
                    in_progress=None,
                    scheduled=scheduled,
                    failed=failed,
                    workers=None,
                    workers_unknown=WORKERS_UNKNOWN,
                    oldest_age_seconds=None,
                    details=details,
                    notes=tuple(notes),
                    partial=not self.index.complete,
                )
            )
        return stats

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        with redis_errors():
            return failed_page(self.index, queue, limit, cursor, lambda window: self._recheck(queue, window), HueyFailure.row)

    def _recheck(self, queue: str, entries: list[HueyFailure]) -> list[HueyFailure]:
        """The entries whose Error records are still there (same size); the others are
        read again or dropped."""
        with self.client.pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.hstrlen(keys.results_key(queue), e.id)
                pipe.strlen(keys.expire_key(queue, e.id))
            replies = pipe.execute(raise_on_error=False)
        changed = []
        for n, e in enumerate(entries):
            size = next((r for r in replies[2 * n : 2 * n + 2] if type(r) is int and r > 0), 0)
            if not size:
                self.index.update(e.id, queue, None)
            elif size != e.size:
                changed.append(e.id)
        for task_id in changed:
            self._reread(queue, task_id)
        fresh = [self.index.entry(e.id) for e in entries]
        return [e for e in fresh if e is not None and e.queue == queue]

    def _result(self, queue: str, key: str) -> tuple[bytes | None, float | None, str]:
        """A result-store entry (hash field, or its own key), its expiry, and where it was ("" if nowhere)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(keys.results_key(queue), key)
            pipe.get(keys.expire_key(queue, key))
            pipe.pttl(keys.expire_key(queue, key))
            field, own, pttl = pipe.execute(raise_on_error=False)
        if isinstance(field, bytes):
            return field, None, "hash"
        if isinstance(own, bytes):
            return own, expiry(pttl, time.time()) if type(pttl) is int else None, "key"
        return None, None, ""

    def _reread(self, queue: str, task_id: str) -> bytes | None:
        data, expires_at, _ = self._result(queue, task_id)
        if data is None or not is_error_head(head_of(data[:HEAD_BYTES])):
            self.index.update(task_id, queue, None)
            return data
        error = read_error(data, max_bytes=MAX_DECODE_BYTES)
        self.index.update(task_id, queue, error, len(data), expires_at)
        return data

    def job(self, queue: str, job_id: str) -> JobDetail:
        with redis_errors():
            data, expires_at, _ = self._result(queue, job_id)
            revoked_data, _, _ = self._result(queue, keys.REVOKE_PREFIX + job_id)
            message = None if data is not None else self._locate(queue, [job_id], limit=JOB_WALK).get(job_id)
        revoked = read_revoke(revoked_data) if revoked_data is not None else None
        notes = [f"Revoked: {revoked.text}."] if revoked is not None else []
        if message is not None:
            where, _, member = message
            state = "waiting" if where == "queue" else "scheduled"
            prefixed = where == "queue" and self._kinds.get(queue) == "zset"
            return self._message_detail(queue, state, read_message(member, prefixed=prefixed), notes)
        if data is not None and is_error_head(head_of(data[:HEAD_BYTES])):
            return self._error_detail(queue, job_id, data, expires_at, notes)
        if data is not None:
            return JobDetail(id=job_id, function=None, args_preview="", error_type=None, error_message=None,
                             failed_at=None, attempts=None, queue=queue, status="finished", state="finished",
                             notes=tuple(notes) + ("Huey keeps the task's return value only; its arguments are gone.",))  # fmt: skip
        if revoked is not None:
            return JobDetail(id=job_id, function=None, args_preview=revoked.text, error_type=None, error_message=None,
                             failed_at=None, attempts=None, queue=queue, status="revoked", state="canceled",
                             notes=tuple(notes))  # fmt: skip
        raise NotFound(f"Huey task {job_id!r} is not waiting, scheduled, failed or revoked in {queue!r} "
                       f"(among the next {JOB_WALK:,} waiting and scheduled)")  # fmt: skip

    def _error_detail(self, queue: str, job_id: str, data: bytes, expires_at: float | None, notes: list[str]) -> JobDetail:
        error = read_error(data, max_bytes=MAX_DECODE_BYTES)
        self.index.update(job_id, queue, error, len(data), expires_at)
        entry = self.index.entry(job_id)
        error_type, message_text = error.described
        details = [("retries left", str(error.retries))] if error.retries is not None else []
        if error.retries:
            notes.append(f"It had {error.retries} retries left when it failed: Huey runs it again (see scheduled "
                         "and waiting); this record is replaced when it does.")  # fmt: skip
        return JobDetail(
            id=job_id, function=None, args_preview="(Huey keeps no copy of a failed task's arguments)",
            error_type=error_type or "Error", error_message=message_text,
            failed_at=entry.row().failed_at if entry is not None else None, attempts=None,
            expires_at=datetime.datetime.fromtimestamp(expires_at, datetime.timezone.utc) if expires_at else None,
            queue=queue, traceback=error.traceback if error.traceback and "Traceback" in error.traceback else None,
            payload_encoding=error.encoding, payload_error=error.problem, status="failed", state="failed",
            details=tuple(details), notes=tuple(notes) + (REQUEUE_REASON,),
        )  # fmt: skip

    def _message_detail(self, queue: str, state: str, message: HueyMessage, notes: list[str]) -> JobDetail:
        details = [(label, render(value, limit=500)) for label, value in
                   (("retries", message.retries), ("retry delay", message.retry_delay), ("priority", message.priority))
                   if value not in (None, 0)] + [(k.replace("_", " "), render(v, limit=500)) for k, v in message.others]  # fmt: skip
        return JobDetail(id=message.id or "", function=message.name, args_preview=message.preview, error_type=None,
                         error_message=None, failed_at=None, attempts=None, queue=queue, args=message.args,
                         kwargs=message.kwargs, payload_encoding=message.encoding, payload_error=message.error,
                         status=state, state=state, enqueued_at=message.enqueued_at,
                         scheduled_for=message.scheduled_for, details=tuple(details), notes=tuple(notes))  # fmt: skip

    # -- jobs in every state ---------------------------------------------------------

    def job_states(self, queue: str) -> dict[str, str | None]:
        reasons = {
            "in_progress": "Huey records no running tasks: its consumer holds them in memory",
            "finished": "Huey keeps return values by task id only, without times or arguments",
        }
        return {s: reasons.get(s) for s in STATES}

    def jobs(self, queue: str, state: str, limit: int, cursor: str | None = None) -> Page[Job]:
        if state == "failed":
            page = self.failed(queue, limit, cursor)
            return Page(tuple(Job(**_fields(row), state="failed") for row in page.items), page.total, page.next_cursor,
                        page.prev_cursor, page.offset)  # fmt: skip
        if state == "canceled":
            return self._revoked_page(queue, limit, cursor)
        if state not in ("waiting", "scheduled"):
            raise Unsupported(self.job_states(queue).get(state) or f"no state {state!r}")
        offset = _offset(cursor)
        key = keys.queue_key(queue) if state == "waiting" else keys.schedule_key(queue)
        with redis_errors():
            reply = self._scripts["members"](keys=[key], args=[offset, limit, WHOLE_LIMIT, HEAD_BYTES])
        kind, total, rows = _members(reply)
        prefixed = state == "waiting" and kind == "zset"
        jobs = []
        for size, whole, data, _ in rows:
            message = read_message(data, prefixed=prefixed) if whole else None
            if message is None:
                jobs.append(Job(id=peek_id(head_of(data, prefixed)) or "?", function=None,
                                args_preview=f"{size:,} bytes, too large to list", error_type=None, error_message=None,
                                failed_at=None, attempts=None, state=state))  # fmt: skip
                continue
            jobs.append(Job(id=message.id or "?", function=message.name, args_preview=message.preview, error_type=None,
                            error_message=None, failed_at=None, attempts=None, state=state,
                            enqueued_at=message.enqueued_at, scheduled_for=message.scheduled_for))  # fmt: skip
        end = offset + len(rows)
        return Page(tuple(jobs), total, str(end) if end < total else None,
                    str(max(0, offset - limit)) if offset > 0 else None, offset)  # fmt: skip

    def _revoked_page(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        revoked = sorted(self.index.revoked(queue).items())
        offset = _offset(cursor)
        rows = tuple(Job(id=i, function=None, args_preview=marker.text, error_type=None, error_message=None, failed_at=None,
                         attempts=None, state="canceled") for i, marker in revoked[offset : offset + limit])  # fmt: skip
        end = offset + len(rows)
        return Page(rows, len(revoked), str(end) if end < len(revoked) else None,
                    str(max(0, offset - limit)) if offset > 0 else None, offset)  # fmt: skip

    def find(self, job_id: str) -> list[tuple[str, str]]:
        """Failed (an Error), finished (a value) or canceled (a revoke marker), by O(1) lookups per
        instance; waiting and scheduled tasks have no index by id in Huey's keys."""
        names = sorted(self.index.names())
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(keys.results_key(name), job_id)
                pipe.getrange(keys.expire_key(name, job_id), 0, HEAD_BYTES - 1)
                pipe.hexists(keys.results_key(name), keys.REVOKE_PREFIX + job_id)
                pipe.exists(keys.expire_key(name, keys.REVOKE_PREFIX + job_id))
            replies = pipe.execute(raise_on_error=False)
        found = []
        for n, name in enumerate(names):
            field, own, revoked, revoked_key = replies[4 * n : 4 * n + 4]
            value = field if isinstance(field, bytes) else own if isinstance(own, bytes) and own else None
            if value is not None:
                found.append((name, "failed" if is_error_head(head_of(value[:HEAD_BYTES])) else "finished"))
            if revoked is True or revoked == 1 or revoked_key == 1:
                found.append((name, "canceled"))
        return found

    def _locate(self, queue: str, ids: Sequence[str], *, where: tuple[str, ...] = ("queue", "schedule"),
                limit: int = MAX_WALK) -> dict[str, tuple[str, bytes, bytes]]:  # fmt: skip
        """Where tasks are: id -> (where, score, the exact member), looking through at most
        ``limit`` members of the queue and of the schedule, a chunk per round trip."""
        wanted, found = set(ids), {}
        for place in where:
            key = keys.queue_key(queue) if place == "queue" else keys.schedule_key(queue)
            offset = 0
            while wanted and offset < limit:
                reply = self._scripts["members"](keys=[key], args=[offset, WALK_CHUNK, WHOLE_LIMIT, HEAD_BYTES])
                kind, total, rows = _members(reply)
                prefixed = place == "queue" and kind == "zset"
                for size, is_whole, data, score in rows:
                    task_id = peek_id(head_of(data, prefixed))
                    if task_id in wanted and is_whole:
                        found[task_id] = (place, score, data)
                        wanted.discard(task_id)
                offset += WALK_CHUNK
                if offset >= total:
                    break
        return found

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Remove waiting or scheduled tasks, each as the exact member read (LREM 1 / ZREM)."""
        targets = unique(ids)
        with redis_errors():
            located = self._locate(queue, targets)
        removed = []
        tally = Tally()
        with tally.reporting(), redis_errors():
            for task_id, (place, _, member) in located.items():
                key = keys.queue_key(queue) if place == "queue" else keys.schedule_key(queue)
                if self._scripts["moves"](keys=[key], args=["remove", member]):
                    removed.append(task_id)
                    tally.add(1)
        return ActionResult(len(removed), tuple(i for i in targets if i not in removed))

    def enqueue_now(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Move scheduled tasks to the front of waiting: out of the schedule and into the queue
        in one script each, with the eta rewritten in place (a day back). Refused as a whole,
        before anything moves, if one of them cannot be rewritten exactly."""
        targets = unique(ids)
        eta = (datetime.datetime.now(datetime.timezone.utc) - ETA_BACK).replace(tzinfo=None)
        with redis_errors():
            located = self._locate(queue, targets, where=("schedule",))
            plans, refused = {}, []
            for task_id, (_, _, member) in located.items():
                try:
                    data = with_eta(member, eta)
                except Unsupported as exc:
                    refused.append(f"{task_id}: {exc}")
                    continue
                priority = read_message(member).priority
                plans[task_id] = (member, data, -priority if type(priority) is int else 0)
            if refused:
                more = f" (and {len(refused) - 3:,} more)" if len(refused) > 3 else ""
                raise Unsupported(f"nothing was moved: {len(refused):,} task(s) cannot be: {'; '.join(refused[:3])}{more}")
            if plans and self._kind(queue) is None:
                raise Unsupported(f"Huey instance {queue!r} has no tasks waiting, so queuewatch cannot tell a priority "
                                  "queue (PriorityRedisHuey) from a plain one; nothing was moved")  # fmt: skip
        moved = []
        tally = Tally()
        with tally.reporting(), redis_errors():
            for task_id, (member, data, score) in plans.items():
                args = ["now", member, data, score, self._kinds.get(queue, ""), b"\x00" * PREFIX_BYTES]
                if self._scripts["moves"](keys=[keys.schedule_key(queue), keys.queue_key(queue)], args=args) == 1:
                    moved.append(task_id)
                    tally.add(1)
        return ActionResult(len(moved), tuple(i for i in targets if i not in moved))

    def _kind(self, queue: str) -> str | None:
        """The type of ``queue``'s key, "list" or "zset" (remembered once seen); None while unknown."""
        kind = self.client.type(keys.queue_key(queue)).decode()
        if kind in ("list", "zset"):
            self._kinds[queue] = kind
        return self._kinds.get(queue)

    # -- revoke ------------------------------------------------------------------

    def revoke(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Revoke tasks by id as ``huey.revoke_by_id(id)`` does: ``r:<id>`` = pickle ``(None, False)``
        in the result store, so a consumer skips them (until restored)."""
        targets = unique(ids)
        with redis_errors():
            self._refuse_if_signed(queue)
            expiring = self._result_layout(queue) == "keys"
            with self.client.pipeline(transaction=False) as pipe:
                for task_id in targets:
                    if expiring:
                        pipe.set(keys.expire_key(queue, keys.REVOKE_PREFIX + task_id), REVOKE_FOREVER)
                    else:
                        pipe.hset(keys.results_key(queue), keys.REVOKE_PREFIX + task_id, REVOKE_FOREVER)
                pipe.execute()
        for task_id in targets:
            self.index.learn_revoked(queue, task_id, read_revoke(REVOKE_FOREVER))
        return ActionResult(len(targets))

    def restore(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Undo a revoke, as ``huey.restore_by_id(id)`` does."""
        targets = unique(ids)
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            for task_id in targets:
                pipe.hdel(keys.results_key(queue), keys.REVOKE_PREFIX + task_id)
                pipe.delete(keys.expire_key(queue, keys.REVOKE_PREFIX + task_id))
            replies = pipe.execute()
        restored = [t for n, t in enumerate(targets) if replies[2 * n] or replies[2 * n + 1]]
        for task_id in targets:
            self.index.learn_revoked(queue, task_id, None)
        return ActionResult(len(restored), tuple(t for t in targets if t not in restored))

    def _result_layout(self, queue: str) -> str:
        """Where ``queue`` keeps its result store: "hash" (``huey.results.N``) or "keys" (one per
        entry, RedisExpireHuey). Raises Unsupported while it has stored nothing to tell by."""
        if self.client.type(keys.results_key(queue)) == b"hash":
            return "hash"
        if self.index.expiring(queue):
            return "keys"
        cursor, pattern = 0, re.sub(r"([*?\[\]\\])", r"\\\1", f"{keys.EXPIRE_RESULTS}{queue}.") + "*"
        for _ in range(LAYOUT_SCAN_STEPS):  # bounded: a large database without such keys is not walked whole
            cursor, found = self.client.scan(cursor, match=pattern, count=1000)
            if found:
                return "keys"
            if int(cursor) == 0:
                break
        raise Unsupported(f"Huey instance {queue!r} has no result store yet, so queuewatch cannot tell whether it keeps "
                          "results in a hash (RedisHuey) or in keys of their own (RedisExpireHuey); a revoke marker "
                          "in the wrong one would be ignored. Nothing was written.")  # fmt: skip

    def _refuse_if_signed(self, queue: str) -> None:
        """A SignedSerializer's consumer would fail on an unsigned marker: refuse if the instance signs."""
        for key, prefixed in ((keys.queue_key(queue), self._kinds.get(queue) == "zset"), (keys.schedule_key(queue), False)):
            _, _, rows = _members(self._scripts["members"](keys=[key], args=[0, 1, WHOLE_LIMIT, HEAD_BYTES]))
            for _, whole, data, _ in rows:
                if whole and "signed" in read_message(data, prefixed=prefixed).encoding.split("+"):
                    raise Unsupported(f"Huey instance {queue!r} signs its messages (SignedSerializer): a revoke "
                                      "marker queuewatch cannot sign would stop its consumer; revoke with Huey itself")  # fmt: skip

    # -- failed records ------------------------------------------------------------

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        raise Unsupported(REQUEUE_REASON)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        """Remove Error records, each only if it is still the one read."""
        targets = self.index.ids(queue) if ids is ALL else unique(ids)
        tally = Tally()
        with tally.reporting(), redis_errors():
            for chunk in chunks(targets, 200):
                removed = []
                for task_id in chunk:
                    data, _, where = self._result(queue, task_id)
                    if data is None or not is_error_head(head_of(data[:HEAD_BYTES])):
                        continue
                    key = keys.results_key(queue) if where == "hash" else keys.expire_key(queue, task_id)
                    field = task_id if where == "hash" else ""
                    if self._scripts["moves"](keys=[key], args=["forget", field, _sha1(data)]):
                        removed.append(task_id)
                self.index.forget(chunk)
                tally.add(len(removed), [i for i in chunk if i not in removed])
        return tally.result()

    def purge(self, queue: str) -> ActionResult:
        """Remove every waiting task (the schedule and failures stay), as ``huey.flush_queue`` does."""
        with redis_errors():
            return ActionResult(int(self._scripts["moves"](keys=[keys.queue_key(queue)], args=["purge"])))


# -- helpers -------------------------------------------------------------------


def _members(reply: list[Any]) -> tuple[str, int, list[tuple[int, bool, bytes, bytes]]]:
    kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    rows = [(int(reply[i]), reply[i + 1] == 1, reply[i + 2], reply[i + 3]) for i in range(2, len(reply), 4)]
    return kind, int(reply[1]), rows


def _offset(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    if not cursor.isdigit():  # type: ignore[union-attr]
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
    return int(cursor)  # type: ignore[arg-type]


def _fields(row: FailedJob) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FailedJob.__dataclass_fields__}


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _anything(stats: QueueStats) -> bool:
    return bool(stats.depth or stats.scheduled or stats.failed or dict(stats.details).get("revoked"))
