"""The shared view of every backend: one snapshot per poll interval.

``Monitor`` owns the configured backends and a snapshot that every viewer
shares, so fifty open tabs cost the monitored Redis what one does (DESIGN.md
rule 6). A snapshot is taken at most once per interval, by the sampler thread
or by the first request that finds it stale; concurrent requests wait for that
one read instead of starting their own. Failed-job pages are cached the same
way, per page. Actions invalidate both so the operator sees their effect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from queuewatch.adapters.backends import Backend, connect
from queuewatch.adapters.base import Adapter, QueueStats, Worker
from queuewatch.adapters.errors import BackendUnavailable, NotFound
from queuewatch.config import BackendSpec

from .reading import BackendReader, BackendStatus, Part, read_backend

T = TypeVar("T")

SNAPSHOT_DEADLINE = 3.0  # seconds a snapshot waits for one backend, at most (half the poll interval if less)
STALE_AFTER = 3.0  # a read in flight this long (or two intervals, if longer) shows its backend down
PAGE_TIMEOUT = 10.0  # seconds a page waits for one backend read
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    backends: tuple[BackendStatus, ...]
    queues: tuple[QueueStats, ...]
    workers: tuple[Worker, ...]

    def queue(self, backend: str, system: str, name: str) -> QueueStats | None:
        for stats in self.queues:
            if (stats.backend, stats.system, stats.name) == (backend, system, name):
                return stats
        return None

    def backend(self, name: str) -> BackendStatus | None:
        return next((b for b in self.backends if b.name == name), None)


def take_snapshot(backends: Iterable[Backend], pool: ThreadPoolExecutor | None = None) -> Snapshot:
    """Read every backend now, each in full (benchmarks and scripts; the monitor bounds its reads)."""
    backends = list(backends)
    return assemble(list(pool.map(read_backend, backends)) if pool else [read_backend(b) for b in backends])


def assemble(parts: Iterable[Part]) -> Snapshot:
    parts = list(parts)
    return Snapshot(
        taken_at=datetime.now(timezone.utc),
        backends=tuple(r[0] for r in parts),
        queues=tuple(sorted((q for r in parts for q in r[1]), key=lambda q: (q.backend, q.system, q.name))),
        workers=tuple(sorted((w for r in parts for w in r[2]), key=lambda w: (not w.alive, w.backend, w.name))),
    )


class SharedCache:
    """Values computed at most once per ``max_age`` seconds, shared by all threads.

    Single-flight: while one thread computes a key, others asking for it get
    the previous value if there is one, or wait for that result if there is
    not. Bounded: the least recently used entries are dropped.
    """

    def __init__(self, max_age: float, max_entries: int = 256) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Any, compute: Callable[[], T], max_age: float | None = None) -> T:
        limit = self.max_age if max_age is None else max_age
        hit = self._fresh(key, limit)
        if hit is not None:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            stale = self._entries.get(key)
        if stale is not None and limit > 0 and not lock.acquire(blocking=False):
            # Someone is already reading the backend (maybe a slow one): serve
            # the previous value rather than queue every viewer behind it.
            return stale[1]
        if stale is None or limit <= 0:
            lock.acquire()
        try:
            hit = self._fresh(key, limit)
            if hit is not None:
                return hit[1]
            value = compute()
            self.put(key, value)
            return value
        finally:
            lock.release()

    def put(self, key: Any, value: Any) -> None:
        with self._guard:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                self._locks.pop(old, None)

    def _fresh(self, key: Any, max_age: float) -> tuple[float, Any] | None:
        with self._guard:
            entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry
        return None

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


class Busy(Exception):
    """A costly read refused for now: the budget of costly reads is spent (answered 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class CostlyReads:
    """One budget for the reads that walk a list (filtered searches, groupings), shared by every
    viewer: at most ``concurrent`` at once, and at most ``seconds`` of them per poll interval.
    What is cached is served without it; beyond it a viewer is told "busy, try again" — so a
    hundred viewers each asking something new cost the monitored Redis what the budget allows,
    not a hundred walks."""

    def __init__(self, seconds: float, interval: float, concurrent: int = 2) -> None:
        self.seconds, self.interval = seconds, interval
        self._slots = threading.BoundedSemaphore(concurrent)
        self._lock = threading.Lock()
        self._window, self._spent = time.monotonic(), 0.0

    def run(self, compute: Callable[[], T]) -> T:
        with self._lock:
            now = time.monotonic()
            if now - self._window >= self.interval:
                self._window, self._spent = now, 0.0
            if self._spent >= self.seconds:
                raise Busy(f"busy: searches and groupings have used their share of this interval ({self.seconds:g} s per "
                           f"{self.interval:g} s, shared by every viewer); try again in a moment", self._window + self.interval - now)  # fmt: skip
        if not self._slots.acquire(blocking=False):
            raise Busy("busy: other searches are running against this backend right now; try again in a moment", 1.0)
        started = time.monotonic()
        try:
            return compute()
        finally:
            with self._lock:
                self._spent += time.monotonic() - started
            self._slots.release()


class Monitor:
    """The configured backends and the snapshot every viewer shares."""

    def __init__(self, specs: Iterable[BackendSpec], poll: float, options: dict[str, dict[str, Any]] | None = None) -> None:
        self.poll = poll
        options = options or {}
        self.backends: dict[str, Backend] = {
            s.name: connect(s.kind, name=s.name, url=s.url, **options.get(s.name, {})) for s in specs
        }
        # A backend that does not answer within the deadline is shown from its last read, then down;
        # the snapshot (and the sampler's tick) never waits longer on it.
        self.deadline = min(SNAPSHOT_DEADLINE, max(0.2, poll / 2))
        self._stale_after = max(STALE_AFTER, 2 * poll)
        self._readers: dict[str, BackendReader] = {}
        self._parts = ThreadPoolExecutor(max_workers=max(1, min(16, len(self.backends))), thread_name_prefix="qw-snapshot")
        self._cache = SharedCache(max_age=poll)
        # A quarter of each interval, one at a time: what walking lists may take of the monitored Redis.
        self.costly = CostlyReads(seconds=0.25 * max(1.0, poll), interval=max(1.0, poll), concurrent=1)

    def reader(self, backend: str) -> BackendReader:
        """The bounded reads of ``backend``. Raises NotFound."""
        found = self.backends.get(backend)
        if found is None:
            raise NotFound(f"no backend named {backend!r}")
        reader = self._readers.get(backend)
        if reader is None or reader.backend is not found:  # new, or replaced (tests swap a backend in)
            reader = self._readers[backend] = BackendReader(found, stale_after=self._stale_after)
        return reader

    def _take(self) -> Snapshot:
        readers = [self.reader(name) for name in self.backends]
        return assemble(self._parts.map(lambda reader: reader.read(self.deadline), readers))

    def snapshot(self, max_age: float | None = None) -> Snapshot:
        """The shared snapshot, taken now if the last one is older than the poll interval."""
        return self._cache.get("snapshot", self._take, max_age)

    def refresh(self) -> Snapshot:
        """Take a new snapshot now (the sampler's tick)."""
        return self.snapshot(max_age=0)

    def shared(self, key: Any, compute: Callable[[], T], max_age: float | None = None) -> T:
        """Any other read shared by viewers for one interval (or ``max_age`` s)."""
        return self._cache.get(key, compute, max_age)

    def read(self, backend: str, key: Any, compute: Callable[[], T], max_age: float | None = None,
             timeout: float = PAGE_TIMEOUT, costly: bool = False) -> T:  # fmt: skip
        """A page's read of ``backend`` (a page of failed jobs, a search): shared by viewers for
        one interval, run in the backend's own threads, and BackendUnavailable after ``timeout``.
        ``costly`` (a walk of a list): also within the shared budget of costly reads (``Busy``)."""
        reader = self.reader(backend)
        if costly:
            return self._cache.get(key, lambda: self.costly.run(lambda: reader.call(compute, timeout)), max_age)
        return self._cache.get(key, lambda: reader.call(compute, timeout), max_age)

    def call(self, backend: str, compute: Callable[[], T], timeout: float = PAGE_TIMEOUT) -> T:
        """One read of ``backend`` that is not shared (a job's detail), bounded in time like ``read``."""
        return self.reader(backend).call(compute, timeout)

    def adapter(self, backend: str, system: str) -> Adapter:
        """The adapter for a queue path. Raises NotFound."""
        if backend not in self.backends:
            raise NotFound(f"no backend named {backend!r}")
        return self.backends[backend].adapter(system)

    def queue(self, backend: str, system: str, name: str) -> QueueStats:
        """One queue's counts from the snapshot, or read directly if it is new. Raises NotFound."""
        snapshot = self.snapshot()
        stats = snapshot.queue(backend, system, name)
        if stats is not None:
            return stats
        status = snapshot.backend(backend)
        if status is not None and status.status == "down":
            raise BackendUnavailable(status.error or f"backend {backend!r} is down")
        adapter = self.adapter(backend, system)
        return self.call(backend, lambda: adapter.queue(name))

    def maintain(self, budget_seconds: float) -> None:
        """Let each present adapter do its background upkeep (the sampler's job), every backend
        at once, waiting at most the budget: a slow backend's upkeep goes on without holding the rest."""
        readers = [self.reader(name) for name in self.backends]
        list(self._parts.map(lambda reader: reader.maintain(budget_seconds), readers))

    def changed(self) -> None:
        """Forget cached reads after an action, so every viewer sees its effect."""
        self._cache.clear()

    def close(self) -> None:
        self._parts.shutdown(wait=False)
        for reader in self._readers.values():
            reader.close()
        for backend in self.backends.values():
            backend.close()
