"""Failed jobs learned by scanning, for the systems that keep no failed list.

Arq and Celery keep no registry of failed jobs: a failure is a result record
that lives until it expires. Their adapters learn failures with a budgeted
background scan (``maintain``, run by the sampler, never on a page view) and
keep them here, per queue, newest first, bounded in memory. A page is cut
from that memory and each row shown is checked against Redis before it is.

``FailureIndex`` is what both share: the bookkeeping (entries by queue, caps,
expiry, what a pass did not see), when a scan pass may start, and, with
``failed_page``, the page cursors and the paging loop. A subclass says how a
pass steps (``_begin`` / ``_step``) and what it keeps.

- A pass starts at most every ``MIN_PASS_GAP`` seconds, and no sooner than
  twice the last pass's duration after it started: scanning takes at most
  half of the time.
- An entry goes when its expiry passes, when a pass that should have seen it
  ends without seeing it, or when a page view or an action finds it gone.
- A queue over ``max_per_queue`` keeps its newest entries; its count is then
  the last whole pass's, and said to be an estimate.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from .base import FailedJob, Page
from .errors import NotFound

MIN_PASS_GAP = 5.0


class Entry(Protocol):
    """What the index needs of a failure; each system's entry has more."""

    id: str
    queue: str
    expires_at: float | None  # unix time; None: until a pass misses it
    size: int  # bytes of its record: a record that changed size is read again

    @property
    def order(self) -> tuple[int, str]:
        """Newest first, ties by id: the order pages are cut in."""


E = TypeVar("E", bound=Entry)


def expiry(pttl: int, now: float) -> float | None:
    """A key's expiry as unix time from its PTTL (-1: none)."""
    return None if pttl < 0 else now + pttl / 1000


def same_expiry(old: float | None, new: float | None) -> bool:
    """Whether two expiries measured from PTTLs are the same one."""
    if old is None or new is None:
        return old is new
    return abs(old - new) < 2.0  # PTTLs are measured a round trip apart: allow for that


def cursor_of(order: tuple[int, str]) -> str:
    """A page cursor: the position (time in ms, id) of the last row shown."""
    return f"{-order[0]}:{order[1]}"


def position_of(cursor: str | None) -> tuple[int, str] | None:
    """The position a cursor stands for; None for the first page ("0"). Raises NotFound."""
    if cursor in (None, "", "0"):
        return None
    stamp, sep, job_id = cursor.partition(":")  # type: ignore[union-attr]
    if not sep or not stamp.isdigit():
        raise NotFound(f"cursor {cursor!r} is not one this adapter gave out")
    return (-int(stamp), job_id)


class FailureIndex(Generic[E]):
    """Failures of one backend by queue, kept up to date by a scan that subclasses step."""

    def __init__(self, *, max_per_queue: int, max_queues: int, max_entries: int | None = None,
                 max_others: int = 100_000) -> None:  # fmt: skip
        self.max_per_queue = max_per_queue
        self.max_queues = max_queues
        self.max_entries = max_entries
        self.max_others = max_others
        self._lock = threading.Lock()  # the data below; never held during Redis I/O
        self._scan_lock = threading.Lock()  # one scan at a time (sampler, settle)
        self._entries: dict[str, E] = {}
        self._queues: dict[str, dict[str, E]] = {}
        self._ordered: dict[str, list[E]] = {}  # queue -> entries newest first (cache)
        self._seen: dict[str, int] = {}  # id -> the pass that last saw its record
        self._others: dict[str, tuple[int, float | None, int]] = {}  # id -> (size, expiry, pass) of records that are no failure
        self._capped: set[str] = set()
        self._found: dict[str, int] = {}  # failures seen per queue in this pass (beyond the caps too)
        self._found_last: dict[str, int] = {}
        self._in_pass = False
        self.pass_number = 0
        self.passes_completed = 0
        self._pass_started = 0.0
        self._next_pass = 0.0
        self.version = 0  # changes whenever the entries do

    # -- what a subclass says ----------------------------------------------------------

    def _begin(self) -> None:
        """A pass starts: reset its cursors."""

    def _step(self) -> bool:
        """One round trip of the scan; True when the pass has ended."""
        raise NotImplementedError

    def _before_scan(self) -> None:
        """Work due before scanning (ids learned from events)."""

    def _ended(self) -> None:
        """A pass has ended (under the lock)."""

    def _scanned(self, entry: E) -> bool:
        """Whether the scan would see this entry (an entry known only from an event would not)."""
        return True

    # -- the sampler's upkeep -------------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Advance the scan (at least one step) until the budget is spent or the pass ends;
        between passes, wait until the next one is due."""
        deadline = time.monotonic() + budget_seconds
        with self._scan_lock:
            self._before_scan()
            while True:
                if not self._in_pass:
                    if time.monotonic() < self._next_pass:
                        return
                    self._start_pass()
                if self._step():
                    self._finish_pass()
                    return
                if time.monotonic() >= deadline:
                    return

    def settle(self, timeout: float = 60.0) -> bool:
        """Run a whole pass now, from the start, so everything present now is indexed.
        For tests and scripts; the sampler uses ``maintain``. False if it timed out."""
        deadline = time.monotonic() + timeout
        with self._scan_lock:
            self._before_scan()
            self._start_pass()
            while True:
                if time.monotonic() > deadline:
                    return False
                if self._step():
                    self._finish_pass()
                    return True

    def _start_pass(self) -> None:
        with self._lock:
            self.pass_number += 1
            self._found = {}
            self._begin()
        self._in_pass, self._pass_started = True, time.monotonic()

    def _finish_pass(self) -> None:
        with self._lock:
            current = self.pass_number
            for job_id in [i for i, e in self._entries.items() if self._scanned(e) and self._seen.get(i, 0) < current]:
                self._drop(job_id)
            self._others = {i: v for i, v in self._others.items() if v[2] >= current}
            self._found_last = self._found
            self._capped = {q for q in self._capped if self._found.get(q, 0) > self.max_per_queue}
            self.passes_completed += 1
            self._ended()
        self._in_pass = False
        took = time.monotonic() - self._pass_started
        self._next_pass = self._pass_started + max(MIN_PASS_GAP, 2 * took)

    # -- bookkeeping (under _lock) ----------------------------------------------------

    def _unchanged(self, job_id: str, size: int, expires_at: float | None) -> bool:
        """Whether a record is the one read before (same size, same expiry); marks it seen."""
        entry = self._entries.get(job_id)
        if entry is not None and self._scanned(entry):
            if entry.size == size and same_expiry(entry.expires_at, expires_at):
                self._seen[job_id] = self.pass_number
                self._count_found(entry.queue)
                return True
            return False
        other = self._others.get(job_id)
        if other is not None and other[0] == size and same_expiry(other[1], expires_at):
            self._others[job_id] = (size, expires_at, self.pass_number)
            return True
        return False

    def _count_found(self, queue: str) -> None:
        self._found[queue] = self._found.get(queue, 0) + 1

    def _remember_other(self, job_id: str, size: int, expires_at: float | None) -> None:
        """A record that is no failure: not read again while its size and expiry stay."""
        if job_id in self._entries:
            self._drop(job_id)
        if job_id in self._others or len(self._others) < self.max_others:
            self._others[job_id] = (size, expires_at, self.pass_number)

    def _put(self, entry: E) -> bool:
        """Keep an entry; False when a cap left it out."""
        old = self._entries.get(entry.id)
        if old is not None and old.queue != entry.queue:
            self._drop(entry.id)
        if entry.queue not in self._queues and len(self._queues) >= self.max_queues:
            return False
        if entry.id not in self._entries and self.max_entries is not None and len(self._entries) >= self.max_entries:
            self._capped.add(entry.queue)
            return False
        self._others.pop(entry.id, None)
        self._entries[entry.id] = entry
        entries = self._queues.setdefault(entry.queue, {})
        entries[entry.id] = entry
        self._ordered.pop(entry.queue, None)
        if self._scanned(entry):
            self._seen[entry.id] = self.pass_number
        self.version += 1
        if len(entries) > self.max_per_queue * 1.1:  # trim in bulk, not on every insert
            self._capped.add(entry.queue)
            for stale in sorted(entries.values(), key=lambda e: e.order)[self.max_per_queue :]:
                self._drop(stale.id)
        return True

    def _drop(self, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        self._seen.pop(job_id, None)
        if entry is None:
            return
        self.version += 1
        entries = self._queues.get(entry.queue, {})
        entries.pop(job_id, None)
        self._ordered.pop(entry.queue, None)
        if not entries:
            self._queues.pop(entry.queue, None)
            self._capped.discard(entry.queue)

    def _live(self, queue: str) -> list[E]:
        ordered = self._ordered.get(queue)
        if ordered is None:
            ordered = self._ordered[queue] = sorted(self._queues.get(queue, {}).values(), key=lambda e: e.order)
        now = time.time()
        expired = [e.id for e in ordered if e.expires_at is not None and e.expires_at <= now]
        if expired:
            for job_id in expired:
                self._drop(job_id)
            return self._live(queue)
        return ordered

    # -- reading (any thread) ---------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether a whole pass has run: before that, counts are partial."""
        return self.passes_completed > 0

    def failing_queues(self) -> list[str]:
        """The queues that have failures held."""
        with self._lock:
            return sorted(self._queues)

    def count(self, queue: str) -> tuple[int, bool]:
        """(failures of ``queue``, whether that is an estimate beyond the entries held)."""
        with self._lock:
            held = len(self._live(queue))
            if queue in self._capped:
                return max(held, self._found_last.get(queue, 0)), True
            return held, False

    def ordered(self, queue: str) -> list[E]:
        """The queue's entries newest first (expired ones dropped)."""
        with self._lock:
            return self._live(queue)

    def window(self, queue: str, after: tuple[int, str] | None, limit: int) -> tuple[list[E], int, int]:
        """(up to ``limit`` entries after position ``after``, the first one's rank, the total)."""
        entries = self.ordered(queue)
        start = 0 if after is None else bisect.bisect_right([e.order for e in entries], after)
        return entries[start : start + limit], start, len(entries)

    def entry(self, job_id: str) -> E | None:
        with self._lock:
            return self._entries.get(job_id)

    def ids(self, queue: str) -> list[str]:
        return [e.id for e in self.ordered(queue)]

    def forget(self, ids: Sequence[str]) -> None:
        """Jobs an action moved or found gone."""
        with self._lock:
            for job_id in ids:
                self._drop(job_id)
                self._others.pop(job_id, None)


def failed_page(index: FailureIndex[E], queue: str, limit: int, cursor: str | None,
                recheck: Callable[[list[E]], list[E]], row: Callable[[E], FailedJob]) -> Page[FailedJob]:  # fmt: skip
    """A page of failures newest first from ``cursor``. ``recheck`` keeps the entries whose
    records are still there (and drops the others from the index): rows found gone are
    replaced from further down, a few times, so a page is full while there are more."""
    after = position_of(cursor)
    rows: list[E] = []
    start = None
    for _ in range(3):
        window, offset, _ = index.window(queue, after, limit - len(rows))
        start = offset if start is None else start
        if not window:
            break
        rows += recheck(window)
        after = window[-1].order
        if len(rows) >= limit:
            break
    ordered = index.ordered(queue)
    more = after is not None and bool(index.window(queue, after, 1)[0])
    prev = None
    if start:
        top = start - limit
        prev = cursor_of(ordered[top - 1].order) if 0 < top <= len(ordered) else "0"
    return Page(tuple(row(e) for e in rows), len(ordered), cursor_of(after) if more and after is not None else None,
                prev, start or 0)  # fmt: skip
