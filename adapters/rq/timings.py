"""RQ's finished and failed jobs, followed by the sampler for per-function metrics.

RQ keeps no history: a finished job stays in ``rq:finished:Q`` (and its hash) only
``result_ttl`` seconds, 500 by default, a failed one in ``rq:failed:Q`` for
``failure_ttl`` (a year). Both registries are sorted sets scored by expiry time,
which grows with the time a job ended (for one queue's usual TTL), so they can be
followed by score: the cursor keeps, per queue and registry, the highest score
read and the ids read at it (RQ's scores are whole seconds, many jobs share one).
Each step reads at most ``STEP`` members per registry with ZRANGEBYSCORE from that
score and their hashes' times with HMGET, in two pipelined round trips for every
queue at once, until the budget is spent; the rest is read next tick. A job whose
hash has expired before it was read is not counted (``lost`` says how many).

The first read ever starts at the newest ``START_BACKLOG`` members of each
registry (not a year of failures); a queue seen later is read from its start.
Known limits: a job with a shorter ``result_ttl`` than jobs before it in the same
queue may score below the cursor and be missed; jobs kept forever
(``result_ttl=-1``, score +inf) are counted up to ``MAX_AT_SCORE``.

The function is the call in the job's ``description`` (RQ's default, ``module.func(args)``,
up to the parenthesis): decoding every job's pickled ``data`` would cost far more.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import redis

from queuewatch.adapters.values import Timing
from queuewatch.adapters.redis_errors import redis_errors

from .jobs import parse_time

STEP = 500
START_BACKLOG = 1_000
MAX_QUEUES = 10_000
MAX_AT_SCORE = 10_000
REGISTRIES = ("finished", "failed")
FIELDS = (b"enqueued_at", b"started_at", b"ended_at", b"description")


def function_of(description: bytes | None) -> str:
    text = (description or b"").decode("utf-8", "replace").strip()
    head = text.split("(", 1)[0].strip()
    return head[:200] or "(unknown)"


def _score(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return -math.inf


class RQTimings:
    """The ``timings`` of RQAdapter (mixed into its class)."""

    timings_measure: ClassVar[frozenset[str]] = frozenset({"processed", "failed", "runtime", "wait"})
    timings_note: ClassVar[str | None] = ("finished jobs are counted while RQ keeps them (result_ttl, 500 s by default); "
                                          "jobs run with result_ttl=0 leave no trace and are not counted")  # fmt: skip
    client: redis.Redis
    keys: Any

    def timings(self, since: dict | None, budget_seconds: float) -> tuple[list[Timing], dict]:
        deadline = time.monotonic() + budget_seconds
        first = not isinstance(since, dict) or since.get("v") != 1
        previous: dict[str, Any] = {} if first else dict(since.get("q") or {})  # type: ignore[union-attr]
        found: list[Timing] = []
        lost = 0
        with redis_errors():
            known = getattr(self, "known_queues", None)  # the snapshot's names: its read of rq:queues serves both
            if known is None:
                members = sorted(self.client.smembers(self.keys.queues))[:MAX_QUEUES]
                known = tuple(m.decode("utf-8", "replace").removeprefix(self.keys.queue_prefix) for m in members)
            queues = list(known)[:MAX_QUEUES]
            cursors: dict[str, dict[str, list]] = {}
            for queue in queues:
                old = previous.get(queue) if isinstance(previous.get(queue), dict) else None
                cursors[queue] = {r: _valid(old.get(r)) if old else None for r in REGISTRIES}  # type: ignore[misc]
            self._start_points(cursors, first)
            active = [(q, r) for q in queues for r in REGISTRIES]
            while active:
                step, lost_now, active = self._step(cursors, active)
                found += step
                lost += lost_now
                if time.monotonic() >= deadline:
                    break
        return found, {"v": 1, "q": cursors, "lost": int((since or {}).get("lost", 0) if not first else 0) + lost}

    def _start_points(self, cursors: dict[str, dict[str, list | None]], first: bool) -> None:
        """Where a registry without a cursor starts: its newest START_BACKLOG on the first read, else its start."""
        missing = [(q, r) for q, regs in cursors.items() for r, c in regs.items() if c is None]
        if not missing:
            return
        if not first:
            for q, r in missing:
                cursors[q][r] = [-math.inf, []]
            return
        with self.client.pipeline(transaction=False) as pipe:
            for q, r in missing:
                pipe.zrange(self.keys.registry(r, q), -START_BACKLOG, -START_BACKLOG, withscores=True)
            replies = pipe.execute(raise_on_error=False)
        for (q, r), reply in zip(missing, replies):
            start = reply[0][1] if isinstance(reply, list) and reply else -math.inf
            cursors[q][r] = [start if math.isfinite(start) else -math.inf, []]

    def _step(self, cursors: dict[str, dict[str, list]],
              active: list[tuple[str, str]]) -> tuple[list[Timing], int, list[tuple[str, str]]]:  # fmt: skip
        """One step for every (queue, registry) in ``active``: the new timings, how many were lost,
        and which registries may hold more."""
        with self.client.pipeline(transaction=False) as pipe:
            for q, r in active:
                score, seen = cursors[q][r]
                low = "-inf" if score == -math.inf else repr(float(score))
                pipe.zrangebyscore(self.keys.registry(r, q), low, "+inf", start=0, num=STEP + len(seen), withscores=True)
            replies = pipe.execute(raise_on_error=False)
        new: list[tuple[str, str, str]] = []
        more = []
        for (q, r), reply in zip(active, replies):
            if not isinstance(reply, list):
                continue
            score, seen = cursors[q][r]
            asked = STEP + len(seen)
            seen_set = set(seen)
            fresh = 0
            for member, member_score in reply:
                job_id = member.decode("utf-8", "replace")
                if member_score == score and job_id in seen_set:
                    continue
                if member_score > score:
                    score, seen, seen_set = member_score, [], set()
                if len(seen) < MAX_AT_SCORE:
                    seen.append(job_id)
                    seen_set.add(job_id)
                new.append((q, r, job_id))
                fresh += 1
            cursors[q][r] = [score, seen]
            if fresh and len(reply) >= asked:
                more.append((q, r))
        if not new:
            return [], 0, more
        with self.client.pipeline(transaction=False) as pipe:
            for _, _, job_id in new:
                pipe.hmget(self.keys.job(job_id), FIELDS)
            hashes = pipe.execute(raise_on_error=False)
        timings, lost = [], 0
        now = time.time()
        for (q, r, _), values in zip(new, hashes):
            if not isinstance(values, list) or all(v is None for v in values):
                lost += 1  # expired before it was read
                continue
            enqueued, started, ended = (parse_time(v) for v in values[:3])
            description = values[3]
            end = ended.timestamp() if ended else now
            runtime = (ended - started).total_seconds() if ended and started else None
            wait = (started - enqueued).total_seconds() if started and enqueued else None
            timings.append(Timing(q, function_of(description), end, r == "failed",
                                  None if runtime is None else max(0.0, runtime), wait))  # fmt: skip
        return timings, lost, more


def _valid(cursor: Any) -> list | None:
    if isinstance(cursor, list) and len(cursor) == 2 and isinstance(cursor[1], list):
        return [_score(cursor[0]), [str(i) for i in cursor[1]][:MAX_AT_SCORE]]
    return None
