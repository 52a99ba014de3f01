"""The thread that works on bulk operations (``operations``) in every dashboard process.

It counts (read-only: the failed lists walked, the ids stored in chunks) and
runs (chunk after chunk through ``actions.move``, the one write path) the
operations that need it, one at a time, holding each operation's lease in the
state store and renewing it after every chunk. A runner that dies leaves the
lease to expire; another, or the restarted one, resumes from the first chunk
not recorded as done.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from queuewatch.adapters.errors import AdapterError
from queuewatch.security import audit

from . import actions
from .operations import IDLE_WAIT, LEASE_TTL, RETRY_WAIT, Operation, Operations, _where
from .triage import Filter

log = logging.getLogger(__name__)


@dataclass
class _Counter:
    """Ids collected while counting, flushed to the store a chunk at a time."""

    ops: Operations
    op_id: str
    buffer: list[str] = field(default_factory=list)
    chunks: int = 0
    total: int = 0

    def add(self, target: int, ids: Sequence[str]) -> None:
        for job_id in ids:
            self.buffer.append(job_id)
            if len(self.buffer) >= self.ops.chunk:
                self.flush(target)

    def flush(self, target: int) -> None:
        if self.buffer:
            self.ops.store.put_operation_ids(self.op_id, self.chunks, f"{target}\n" + "\n".join(self.buffer))
            self.chunks += 1
            self.total += len(self.buffer)
            self.buffer = []


class LostLease(Exception):
    """Another runner took the operation over (this one was too slow to renew)."""


class Runner:
    """The thread that works on counting and running operations, one at a time, in every process."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff: dict[str, float] = {}  # operation id → when to try again after an error
        self.on_chunk: Callable[[Operation], None] | None = None  # tests pause here to kill or cancel mid-way

    def start(self) -> None:
        if self._thread is None:
            self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"  # after a fork
            self._thread = threading.Thread(target=self._run, name="qw-bulk", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.ops.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            worked = False
            try:
                worked = self.step()
            except Exception:
                log.exception("bulk operation runner failed")
            if not worked:
                self.ops.wake.wait(IDLE_WAIT)
                self.ops.wake.clear()

    def step(self) -> bool:
        """Work on one operation that needs it, if its lease is free. True if there was one."""
        for op in self.ops.recent(50):
            if op.state not in ("counting", "running") or self._backoff.get(op.id, 0) > time.time():
                continue
            holder, _ = self.ops.store.acquire_lease(f"op:{op.id}", self.holder, LEASE_TTL)
            if holder != self.holder:
                continue
            try:
                op = self.ops.get(op.id)  # as it is now that we hold it
                if op.runner not in (None, self.holder) and op.state == "running":
                    op = replace(op, resumed=op.resumed + 1)
                op = replace(op, runner=self.holder)
                if op.state == "counting":
                    self._count(op)
                elif op.state == "running":
                    self._execute(op)
            except LostLease:
                log.warning("operation %s was taken over by another runner", op.id)
            except AdapterError as exc:
                log.warning("operation %s: %s; trying again in %.0f s", op.id, exc, RETRY_WAIT)
                self._backoff[op.id] = time.time() + RETRY_WAIT
                current = self.ops.get(op.id)
                if current.active:
                    chunk = current.done_chunks if current.state == "running" else None  # its outcome is unknown
                    self.ops._save(replace(current, error=f"{type(exc).__name__}: {exc}"[:500], interrupted_chunk=chunk))
            finally:
                self.ops.store.release_lease(f"op:{op.id}", self.holder)
            return True
        return False

    def _renew(self, op: Operation) -> None:
        holder, _ = self.ops.store.acquire_lease(f"op:{op.id}", self.holder, LEASE_TTL)
        if holder != self.holder:
            raise LostLease(op.id)

    def _cancelled(self, op: Operation) -> bool:
        who = self.ops.cancelled_by(op.id)
        if who is None:
            return False
        self.ops._save(replace(op, state="cancelled", ended_by=who, error=None, finished=time.time()))
        self.ops.store.drop_operation_ids(op.id)
        audit.record(f"{op.action} (bulk): cancel", **_where(op), affected=op.affected, user=who, role=None,
                     store=self.ops.store, result=f"operation {op.id}: cancelled after {op.processed:,} of "
                     f"{op.total:,}; {op.affected:,} {op.action}d, the rest left failed")  # fmt: skip
        self.ops.monitor.changed()
        return True

    def _count(self, op: Operation) -> None:
        """Walk every target's failed list and store the ids the selection covers."""
        flt = Filter.from_args(op.filter)
        counter = _Counter(self.ops, op.id)
        op = replace(op, examined=0, listed=None, total=0, chunks=0, error=None, matched=None, cause=None)
        listed: int | None = 0
        last_save = 0.0
        matched = [0] * len(op.targets)
        cause: dict[str, str] | None = None
        for n, (backend, system, queue) in enumerate(op.targets):
            adapter = self.ops.monitor.adapter(backend, system)
            cursor: str | None = None
            previous: set[str] = set()  # ids of the last page: a list that grew at its head repeats a few
            first = True
            while True:
                if flt.active:
                    page = adapter.failed(queue, adapter.walk_page, cursor)
                    hits = [job for job in page.items if flt.matches(job)]
                    ids = [job.id for job in hits]
                    seen = [job.id for job in page.items]
                    if flt.group and cause is None and hits:  # a group's jobs share a function and an exception type
                        cause = {k: v for k, v in (("function", hits[0].function), ("error_type", hits[0].error_type)) if v}
                else:
                    id_page = adapter.failed_ids(queue, max(self.ops.chunk, adapter.walk_page), cursor)
                    page, ids = id_page, list(id_page.items)  # type: ignore[assignment]
                    seen = ids
                if first:
                    listed = None if listed is None or page.total is None else listed + page.total
                    first = False
                fresh = [i for i in ids if i not in previous]
                matched[n] += len(fresh)
                counter.add(n, fresh)
                previous = set(seen)
                op = replace(op, examined=op.examined + len(seen), listed=listed, total=counter.total + len(counter.buffer))
                cursor = page.next_cursor
                if cursor is None:
                    break
                if time.monotonic() - last_save > 0.5:
                    if self._cancelled(op):
                        return
                    self._renew(op)
                    op = self.ops._save(op)
                    last_save = time.monotonic()
            counter.flush(n)
        if self._cancelled(op):
            return
        self._renew(op)
        self.ops._save(replace(op, state="ready", total=counter.total, chunks=counter.chunks, matched=tuple(matched), cause=cause))

    def _execute(self, op: Operation) -> None:
        """Act on the stored ids, chunk after chunk, from the first not recorded as done."""
        op = self.ops._save(replace(op, error=None))
        while op.done_chunks < op.chunks:
            if self._cancelled(op):
                return
            self._renew(op)
            text = self.ops.store.operation_ids(op.id, op.done_chunks) or ""
            head, _, body = text.partition("\n")
            ids = [i for i in body.split("\n") if i]
            if ids:
                backend, system, queue = op.targets[int(head)]
                result = actions.move(self.ops.monitor, backend, system, queue, op.action, ids, forget_reads=False)
                if op.interrupted_chunk == op.done_chunks:  # its first attempt may have moved these already
                    op = replace(op, affected=op.affected + result.affected, unconfirmed=op.unconfirmed + len(result.not_found))
                else:
                    op = replace(op, affected=op.affected + result.affected, skipped=op.skipped + len(result.not_found))
            op = replace(op, interrupted_chunk=None)
            op = self.ops._save(replace(op, done_chunks=op.done_chunks + 1, processed=op.processed + len(ids)))
            if self.on_chunk is not None:
                self.on_chunk(op)
        op = self.ops._save(replace(op, state="done", finished=time.time()))
        self.ops.store.drop_operation_ids(op.id)
        self.ops.monitor.changed()
        audit.record(f"{op.action} (bulk): done", **_where(op), affected=op.affected, user=op.confirmed_by or op.user,
                     role=None, store=self.ops.store, result=f"operation {op.id}: {op.affected:,} {op.action}d, "
                     f"{op.skipped:,} no longer there or not possible"
                     + (f", {op.unconfirmed:,} moved by an attempt whose answer was lost (or gone)" if op.unconfirmed else ""))  # fmt: skip
