"""Bulk operations as background work: requeue or delete thousands of failed jobs
with a progress bar, a cancel button, and nothing lost if the dashboard dies.

An operation goes through these states, each written to the state store so
that every viewer (and every replica) sees the same thing:

    counting ─▶ ready ─(confirm N)─▶ running ─▶ done
        │         │                     │
        └─────────┴──── cancelled ◀─────┘           (any of them) ─▶ failed

- **counting**: the failed lists are walked, read-only, and the ids of the
  jobs the selection covers (all, or a filter such as one fingerprint) are
  stored in numbered chunks. The result is the exact count the operator is
  asked to confirm, and the snapshot the operation acts on: a job that fails
  again after being requeued is not requeued again by the same operation.
- **ready**: waits for the operator to confirm that count (or to discard it).
- **running**: one chunk at a time through the adapter's own atomic requeue or
  delete (a Lua script per chunk on Redis; confirm-then-ack on RabbitMQ). The
  record says how many chunks are done; a chunk is only counted done after
  the adapter returned.

Who runs it (``runner.Runner``): every dashboard process has a runner thread; an operation
that is counting or running is worked on by whoever holds its lease in the
store (renewed after every chunk). If that process dies, the lease expires
and another process, or the same one restarted, takes over from the first
chunk not recorded as done. Re-running a chunk is safe: a job no longer in
its failed list is reported "not found" by the adapter and skipped, never
moved twice. Counting, being a read, restarts from the beginning.

Cancelling sets a flag the runner reads before every chunk: the chunk in
flight finishes, the rest stay failed. Every job is then either requeued
(deleted) or still in its failed list.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from queuewatch.adapters.store import StateStore
from queuewatch.security import audit
from queuewatch.snapshots.monitor import Monitor

from .triage import Filter

log = logging.getLogger(__name__)

ACTIONS = ("requeue", "delete")
ACTIVE = ("counting", "ready", "running")
CHUNK = 1_000  # ids per chunk (--bulk-chunk): one adapter call, one progress step
LEASE_TTL = 15.0  # seconds a runner may go silent before another takes over
IDLE_WAIT = 1.0  # seconds between looks for work when there is none
RETRY_WAIT = 5.0  # seconds before trying again after a backend error
SAME_REQUEST = 60.0  # a second identical request this soon after the first gets the first (double clicks)

Target = tuple[str, str, str]  # (backend, system, queue)


@dataclass(frozen=True)
class Operation:
    id: str
    action: str
    targets: tuple[Target, ...]
    filter: dict[str, str]  # Filter.args(); empty: every failed job of the targets
    user: str
    created: float
    updated: float
    state: str = "counting"
    examined: int = 0  # failed jobs read while counting
    listed: int | None = None  # failed jobs the targets held when counting started
    total: int = 0  # the exact count: ids stored to act on
    chunks: int = 0
    done_chunks: int = 0
    processed: int = 0  # ids handled so far
    affected: int = 0  # requeued or deleted
    skipped: int = 0  # no longer in the failed list (or not requeueable), left alone
    # Of a chunk re-run after its first attempt's answer was lost (the backend stopped answering):
    # the jobs no longer there, which that attempt most likely moved (or someone else did).
    unconfirmed: int = 0
    interrupted_chunk: int | None = None  # the chunk whose attempt was interrupted, until it is re-run
    error: str | None = None  # the last error; the runner retries
    confirmed_by: str | None = None
    ended_by: str | None = None  # who cancelled or discarded it
    runner: str | None = None  # the process working on it
    resumed: int = 0  # how many times another runner took over mid-way
    # Learned while counting: the jobs matched per target (same order as ``targets``), and for a
    # group (a fingerprint) the cause its jobs share, as words: {"function": ..., "error_type": ...}.
    matched: tuple[int, ...] | None = None
    cause: dict[str, str] | None = None
    finished: float | None = None  # when it ended (done, cancelled, discarded)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def percent(self) -> float:
        if self.state == "counting":
            return 100.0 * self.examined / self.listed if self.listed else 0.0
        if self.state in ("ready",):
            return 0.0
        return 100.0 * self.processed / self.total if self.total else 100.0

    @property
    def touched(self) -> tuple[Target, ...]:
        """The queues it acts on: once counted, those with matching jobs; before, every target."""
        if self.matched is None or len(self.matched) != len(self.targets):
            return self.targets
        return tuple(t for t, n in zip(self.targets, self.matched) if n)

    @property
    def counted(self) -> bool:
        return self.matched is not None or self.state not in ("counting", "cancelled")

    @property
    def selection(self) -> str:
        """What the operation acts on, in words: "71 jobs failing with UpstreamTimeout in rq_tasks.fetch, 9 queues"."""
        flt = Filter.from_args(self.filter)
        one = self.counted and self.total == 1
        count = f"{self.total:,} " if self.counted else ""
        if not flt.active:
            head = f"all {count}failed job{'' if one else 's'}"
        else:
            words = _filter_words(flt, self.cause)
            noun = "job" if words and words[0].startswith("failing with") else "failed job"
            head = f"{count}{noun}{'' if one else 's'} {' '.join(words)}"
        if len(self.targets) == 1:
            backend, system, queue = self.targets[0]
            return f"{head}, queue {queue} ({system} on {backend})" if flt.active else f"{head} of {queue} ({system} on {backend})"
        if self.counted:
            n = len(self.touched)
            return f"{head}, {n:,} queue{'' if n == 1 else 's'}"
        return f"{head}, up to {len(self.targets):,} queues"

    @property
    def title(self) -> str:
        """The operation as one sentence: "Requeue 71 jobs failing with UpstreamTimeout in rq_tasks.fetch, 9 queues"."""
        return f"{self.action.capitalize()} {self.selection}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = [{"backend": b, "system": s, "queue": q} for b, s, q in self.targets]
        out["percent"] = round(self.percent, 1)
        out["selection"] = self.selection
        for name in ("created", "updated"):
            out[name] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(out[name]))
        return out

    @classmethod
    def loads(cls, text: str) -> Operation:
        data = json.loads(text)
        data["targets"] = tuple(tuple(t) for t in data["targets"])
        if isinstance(data.get("matched"), list):
            data["matched"] = tuple(data["matched"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _filter_words(flt: Filter, cause: dict[str, str] | None) -> list[str]:
    """A filter as an operator says it: "failing with Timeout in tasks.fetch, matching 'invoice'"."""
    words = []
    error_type = flt.exception or (cause or {}).get("error_type")
    function = flt.function or (cause or {}).get("function")
    if flt.group and not (cause or {}).get("error_type") and not (cause or {}).get("function"):
        words.append(f"of one cause (group {flt.group[:8]}…)")
    if error_type:
        words.append(f"failing with {error_type}")
    if function:
        words.append(f"in {function}")
    if flt.text:
        words.append(f"matching {flt.text!r}")
    if flt.since:
        words.append(f"failed since {flt.since:%Y-%m-%d %H:%M} UTC")
    if flt.until:
        words.append(f"failed before {flt.until:%Y-%m-%d %H:%M} UTC")
    return words


class OperationError(ValueError):
    """A request about an operation that cannot be met; the message says why."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Operations:
    """Create, read, confirm and cancel operations; the ``Runner`` does the work."""

    def __init__(self, store: StateStore, monitor: Monitor, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError("--bulk-chunk must be at least 1")
        self.store = store
        self.monitor = monitor
        self.chunk = chunk  # ids per adapter call
        self.wake = threading.Event()  # a local runner starts at once on a new or confirmed operation

    def _save(self, op: Operation) -> Operation:
        op = replace(op, updated=time.time())
        self.store.put_operation(op.id, op.created, op.dumps())
        return op

    def get(self, op_id: str) -> Operation:
        text = self.store.operation(op_id) if op_id.isalnum() else None
        if text is None:
            raise OperationError(f"no operation {op_id!r}: it may have been forgotten (the newest 200 are kept)", 404)
        return Operation.loads(text)

    def recent(self, limit: int = 50) -> list[Operation]:
        return [Operation.loads(text) for text in self.store.operations(limit)]

    def touching(self, backend: str, system: str, queue: str, limit: int = 50) -> list[Operation]:
        """Recent operations on one queue, for its page: once counted, only those that matched jobs of it."""
        return [op for op in self.recent(limit) if (backend, system, queue) in op.touched]

    def create(self, action: str, targets: Sequence[Target], flt: Filter, user: str) -> Operation:
        """Start counting. An identical request still counting or waiting gets that operation back."""
        if action not in ACTIONS:
            raise OperationError(f"unknown action {action!r}: requeue or delete", 400)
        if not targets:
            raise OperationError("no queue with failed jobs to act on", 400)
        for backend, system, _ in targets:
            self.monitor.adapter(backend, system)  # NotFound for a backend or system that is not there
        targets = tuple(tuple(t) for t in targets)  # type: ignore[misc]
        for op in self.recent(20):
            if (op.action, op.targets, op.filter) == (action, targets, flt.args()) and op.state in ("counting", "ready") \
                    and time.time() - op.created < SAME_REQUEST:  # fmt: skip
                return op
        now = time.time()
        op = Operation(secrets.token_hex(8), action, targets, flt.args(), user, now, now)  # type: ignore[arg-type]
        op = self._save(op)
        audit.record(f"{action} (bulk): count", **_where(op), result=f"operation {op.id}: {op.selection}",
                     user=user, role=None, store=self.store)  # fmt: skip
        self.wake.set()
        return op

    def confirm(self, op_id: str, expected: int, user: str) -> Operation:
        """Run an operation whose count the operator saw. Confirming twice is harmless."""
        op = self.get(op_id)
        if op.state in ("running", "done"):
            return op  # a second click of the same button
        if op.state != "ready":
            raise OperationError(f"operation {op.id} is {op.state}: only a counted operation can be confirmed")
        if expected != op.total:
            raise OperationError(f"operation {op.id} counted {op.total:,} jobs, not {expected:,}: confirm the count shown")
        op = self._save(replace(op, state="running", confirmed_by=user))
        audit.record(f"{op.action} (bulk): start", **_where(op), affected=None, user=user, role=None, store=self.store,
                     result=f"operation {op.id}: {op.total:,} jobs confirmed")  # fmt: skip
        self.wake.set()
        return op

    def cancel(self, op_id: str, user: str) -> Operation:
        """Stop an operation: before its next chunk if it runs, at once if it waits."""
        op = self.get(op_id)
        if not op.active:
            return op
        if op.state == "ready":  # nobody works on it: end it here
            op = self._save(replace(op, state="cancelled", ended_by=user, finished=time.time()))
            self.store.drop_operation_ids(op.id)
            audit.record(f"{op.action} (bulk): discard", **_where(op), user=user, role=None, store=self.store,
                         result=f"operation {op.id}: not confirmed")  # fmt: skip
            return op
        self.store.put(_cancel_key(op.id), user)  # the runner ends it and records who
        return op

    def cancelled_by(self, op_id: str) -> str | None:
        return self.store.get(_cancel_key(op_id))


def _cancel_key(op_id: str) -> str:
    return f"op-cancel:{op_id}"


def _where(op: Operation) -> dict[str, Any]:
    if len(op.targets) == 1:
        backend, system, queue = op.targets[0]
        return {"backend": backend, "system": system, "queue": queue, "ids": "all" if not op.filter else None}
    return {"ids": "all" if not op.filter else None}
