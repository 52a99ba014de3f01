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
from queuewatch.adapters.errors import AdapterError, BackendUnavailable, NotFound
from queuewatch.config import BackendSpec

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendStatus:
    name: str
    kind: str
    url: str  # password redacted
    status: str  # "up" | "down"
    error: str | None
    systems: tuple[str, ...]
    notes: tuple[str, ...] = ()


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


def read_backend(backend: Backend) -> tuple[BackendStatus, list[QueueStats], list[Worker]]:
    """One backend's status, queues and workers. Never raises: down is a state."""
    try:
        adapters = backend.probe()
    except AdapterError as exc:
        return _status(backend, "down", str(exc), ()), [], []
    queues: list[QueueStats] = []
    workers: list[Worker] = []
    errors = []
    for adapter in adapters:
        try:
            system_queues, system_workers = adapter.overview()
        except AdapterError as exc:
            errors.append(f"{adapter.label}: {exc}")
            continue
        queues += system_queues
        workers += system_workers
    systems = tuple(a.system for a in adapters)
    return _status(backend, "up", "; ".join(errors) or None, systems), queues, workers


def _status(backend: Backend, status: str, error: str | None, systems: tuple[str, ...]) -> BackendStatus:
    return BackendStatus(backend.name, backend.kind, backend.redacted_url, status, error, systems, backend.notes())


def take_snapshot(backends: Iterable[Backend], pool: ThreadPoolExecutor | None = None) -> Snapshot:
    """Read every backend (in parallel, so one slow backend does not hold up the rest)."""
    backends = list(backends)
    results = list(pool.map(read_backend, backends)) if pool else [read_backend(b) for b in backends]
    return Snapshot(
        taken_at=datetime.now(timezone.utc),
        backends=tuple(r[0] for r in results),
        queues=tuple(sorted((q for r in results for q in r[1]), key=lambda q: (q.backend, q.system, q.name))),
        workers=tuple(sorted((w for r in results for w in r[2]), key=lambda w: (not w.alive, w.backend, w.name))),
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


class Monitor:
    """The configured backends and the snapshot every viewer shares."""

    def __init__(self, specs: Iterable[BackendSpec], poll: float, options: dict[str, dict[str, Any]] | None = None) -> None:
        self.poll = poll
        options = options or {}
        self.backends: dict[str, Backend] = {
            s.name: connect(s.kind, name=s.name, url=s.url, **options.get(s.name, {})) for s in specs
        }
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(8, len(self.backends))), thread_name_prefix="qw-read")
        self._cache = SharedCache(max_age=poll)

    def snapshot(self, max_age: float | None = None) -> Snapshot:
        """The shared snapshot, taken now if the last one is older than the poll interval."""
        return self._cache.get("snapshot", lambda: take_snapshot(self.backends.values(), self._pool), max_age)

    def refresh(self) -> Snapshot:
        """Take a new snapshot now (the sampler's tick)."""
        return self.snapshot(max_age=0)

    def shared(self, key: Any, compute: Callable[[], T], max_age: float | None = None) -> T:
        """Any other read (a page of failed jobs) shared by viewers for one interval (or ``max_age`` s)."""
        return self._cache.get(key, compute, max_age)

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
        return self.adapter(backend, system).queue(name)

    def maintain(self, budget_seconds: float) -> None:
        """Let each present adapter do its background upkeep (the sampler's job)."""
        for backend in self.backends.values():
            for adapter in backend.present():
                try:
                    adapter.maintain(budget_seconds)
                except AdapterError as exc:
                    log.warning("upkeep of %s on %s failed: %s", adapter.system, backend.name, exc)

    def changed(self) -> None:
        """Forget cached reads after an action, so every viewer sees its effect."""
        self._cache.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        for backend in self.backends.values():
            backend.close()
