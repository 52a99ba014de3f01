"""Arq's results, learned by the failure index's scan, for per-function metrics.

Arq keeps each job's result (``arq:result:ID``: function, ``et`` enqueue time,
``st`` start, ``ft`` finish, ``s`` success, ``q`` queue) for ``keep_result``
seconds, an hour by default. The failure index (``index.ArqFailures``) already finds
and decodes every result once (a budgeted SCAN; a result is read again only when its
size or expiry changes), successes included: ``ArqTimings`` taps what it decodes
(the index's ``_record``) instead of scanning again, and hands it out on ``timings``.

Counting once across restarts: the index starts afresh in a new process and decodes
every result again. A pass of the scan sees every result that existed when it
started, so once a pass has ended, every result finished before it started (less
``SLACK`` for clocks) has been counted: that time is the cursor's ``before``, and the
cursor also keeps the ids counted since (bounded: ``MAX_IDS``). A result is counted
if it finished at or after ``before`` and its id is not among those.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, ClassVar

from queuewatch.adapters.values import Timing

from .index import DEFAULT_QUEUE
from .records import ArqRecord

SLACK_MS = 5_000
MAX_IDS = 50_000
MAX_PENDING = 20_000  # results decoded but not yet taken (a process that does not hold the lease keeps the newest)
Seen = tuple[str, str | None, str | None, int | None, int | None, int, bool | None]  # id, queue, function, et, st, ft, success


class _Tap:
    """What the index decoded, kept until the sampler takes it (any thread)."""

    def __init__(self, index: Any) -> None:
        self.lock = threading.Lock()
        self.pending: deque[Seen] = deque(maxlen=MAX_PENDING)
        self.started: dict[int, float] = {}  # pass number -> wall time it started
        self.completed_before: int | None = None  # ms: every result finished before it was seen
        record, begin, ended = index._record, index._begin, index._ended

        def tapped_record(job_id: str, rec: ArqRecord, *args: Any, **kwargs: Any) -> None:
            if rec.is_result and rec.finished_ms:
                with self.lock:
                    self.pending.append((job_id, rec.queue, rec.function, rec.enqueued_ms, rec.started_ms, rec.finished_ms,
                                         rec.success))  # fmt: skip
            record(job_id, rec, *args, **kwargs)

        def tapped_begin() -> None:
            self.started[index.pass_number] = time.time()
            begin()

        def tapped_ended() -> None:
            started = self.started.pop(index.pass_number, None)
            for old in [n for n in self.started if n < index.pass_number]:
                del self.started[old]
            if started is not None:
                self.completed_before = int(started * 1000) - SLACK_MS
            ended()

        index._record, index._begin, index._ended = tapped_record, tapped_begin, tapped_ended


class ArqTimings:
    """The ``timings`` of ArqAdapter (mixed into its class)."""

    timings_measure: ClassVar[frozenset[str]] = frozenset({"processed", "failed", "runtime", "wait"})
    timings_note: ClassVar[str | None] = ("results are counted while Arq keeps them (keep_result, an hour by default); jobs "
                                          "run with keep_result=0 leave no result and are not counted; a deferred job's wait "
                                          "includes its deferral")  # fmt: skip
    _timings_tap: _Tap

    # The adapter sets ``self.index`` in its constructor: the tap goes on it then, so what the
    # first scan decodes (before the first ``timings`` call) is counted too.
    @property
    def index(self) -> Any:
        return self._arq_index

    @index.setter
    def index(self, value: Any) -> None:
        self._arq_index = value
        self._timings_tap = _Tap(value)

    def timings(self, since: dict | None, budget_seconds: float) -> tuple[list[Timing], dict]:
        tap = self._timings_tap
        valid = isinstance(since, dict) and since.get("v") == 1
        before = int(since.get("before") or 0) if valid else 0  # type: ignore[union-attr]
        counted: dict[str, int] = {str(k): int(v) for k, v in (since.get("ids") or {}).items()} if valid else {}  # type: ignore[union-attr]
        with tap.lock:
            taken = list(tap.pending)
            tap.pending.clear()
        found = []
        for job_id, queue, function, enqueued, started, finished, success in taken:
            if finished < before or counted.get(job_id) == finished:
                continue
            counted[job_id] = finished
            runtime = (finished - started) / 1000 if started else None
            wait = (started - enqueued) / 1000 if started and enqueued else None
            found.append(Timing(queue or DEFAULT_QUEUE, function or "(unknown)", finished / 1000, success is False,
                                None if runtime is None else max(0.0, runtime), wait))  # fmt: skip
        if tap.completed_before is not None:
            before = max(before, tap.completed_before)
        kept = {i: f for i, f in counted.items() if f >= before}
        if len(kept) > MAX_IDS:  # the newest stay; the time before the rest becomes the bound
            newest = sorted(kept.items(), key=lambda kv: kv[1])[-MAX_IDS:]
            before, kept = newest[0][1], dict(newest)
        return found, {"v": 1, "before": before, "ids": kept}
