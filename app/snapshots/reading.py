"""Reading one backend without ever waiting on it for long.

Every blocking call to a backend runs in that backend's own threads, and the
caller waits at most a deadline: a broker whose connection stalls (open,
nothing moving) holds up its own reads and nothing else — not the other
backends' snapshot, not the sampler's lease, not a page.

- **The snapshot part** (``BackendReader.read``): at most one read of a
  backend is in flight. A caller waits up to its deadline; if the read has not
  finished, it gets the last finished read, marked as old, and once the read
  in flight is older than ``stale_after`` the backend is shown down ("not
  answering for N s"). When the read finishes, the next snapshot has it.
- **Upkeep** (``BackendReader.maintain``): the adapters' background work runs in
  one more thread per backend, one pass at a time; a pass still running is not
  started again.
- **Page reads** (``BackendReader.call``): a few threads per backend; a call
  that does not answer within its timeout is reported as ``BackendUnavailable``
  while the thread is left to finish (the clients' own socket timeouts and AMQP
  heartbeats end it).

Anything an adapter raises that is not one of its three errors is a bug or a
foreign exception that escaped its boundary: it is logged with its traceback
and shown as the backend being unavailable, never as a 500.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TypeVar

from queuewatch.adapters.backends import Backend
from queuewatch.adapters.base import Adapter, QueueStats, Worker
from queuewatch.adapters.errors import AdapterError, BackendUnavailable
from queuewatch.adapters.periodic import worst_lateness

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_THREADS = 4  # concurrent page reads per backend; more wait their turn (within their timeout)


@dataclass(frozen=True)
class BackendStatus:
    name: str
    kind: str
    url: str  # password redacted
    status: str  # "up" | "down"
    error: str | None
    systems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    read_seconds: float | None = None  # how long the read took
    age_seconds: float | None = None  # how old the read shown is, when it is not this interval's


Part = tuple[BackendStatus, list[QueueStats], list[Worker]]


def read_backend(backend: Backend) -> Part:
    """One backend's status, queues and workers. Never raises: down is a state."""
    started = time.monotonic()
    try:
        adapters = backend.probe()
    except AdapterError as exc:
        return _status(backend, "down", str(exc), (), started), [], []
    except Exception as exc:
        log.exception("reading backend %s failed", backend.name)
        return _status(backend, "down", f"{type(exc).__name__}: {exc}", (), started), [], []
    queues: list[QueueStats] = []
    workers: list[Worker] = []
    errors = []
    for adapter in adapters:
        try:
            system_queues, system_workers = adapter.overview()
        except AdapterError as exc:
            errors.append(f"{adapter.label}: {exc}")
            continue
        except Exception as exc:
            log.exception("reading %s on %s failed", adapter.system, backend.name)
            errors.append(f"{adapter.label}: {type(exc).__name__}: {exc}")
            continue
        queues += _with_lateness(adapter, system_queues)
        workers += system_workers
    systems = tuple(a.system for a in adapters)
    status = _status(backend, "up", "; ".join(errors) or None, systems, started)
    extra = tuple(note for a in adapters for note in a.notes())
    return (replace(status, notes=status.notes + extra) if extra else status), queues, workers


def _with_lateness(adapter: Adapter, queues: list[QueueStats]) -> list[QueueStats]:
    """The queues with how many intervals their periodic tasks have gone without a run (for the
    "did not run for N x its interval" alerts), where the system records periodic work."""
    if type(adapter).periodic is Adapter.periodic:
        return queues
    try:
        worst = worst_lateness(adapter.periodic(), datetime.now(timezone.utc))
    except Exception as exc:  # the counts stand without it
        log.warning("reading periodic work of %s failed: %s", adapter.label, exc)
        return queues
    return [replace(q, periodic_lateness=worst[(q.backend, q.system, q.name)])
            if (q.backend, q.system, q.name) in worst else q for q in queues]  # fmt: skip


def _status(backend: Backend, status: str, error: str | None, systems: tuple[str, ...], started: float) -> BackendStatus:
    return BackendStatus(backend.name, backend.kind, backend.redacted_url, status, error, systems, backend.notes(),
                         read_seconds=round(time.monotonic() - started, 3))  # fmt: skip


class BackendReader:
    """One backend's reads: the snapshot part, upkeep and page reads, each bounded in time."""

    def __init__(self, backend: Backend, *, stale_after: float) -> None:
        self.backend = backend
        self.stale_after = stale_after
        name = backend.name[:20]
        self._snapshots = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qw-read-{name}")
        self._upkeep = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qw-upkeep-{name}")
        self._pages = ThreadPoolExecutor(max_workers=PAGE_THREADS, thread_name_prefix=f"qw-page-{name}")
        self._lock = threading.Lock()
        self._in_flight: Future[Part] | None = None
        self._started = 0.0
        self._last: tuple[float, Part] | None = None  # (when it finished, the part)
        self._maintaining: Future[None] | None = None

    # -- the snapshot part ----------------------------------------------------------

    def read(self, deadline: float) -> Part:
        """This backend's part of a snapshot, waiting at most ``deadline`` seconds."""
        with self._lock:
            if self._in_flight is None:
                self._in_flight, self._started = self._snapshots.submit(read_backend, self.backend), time.monotonic()
            future, started = self._in_flight, self._started
        try:
            part = future.result(timeout=max(0.0, deadline))
        except FutureTimeout:
            return self._waiting(started)
        with self._lock:
            if self._in_flight is future:
                self._in_flight = None
                self._last = (time.monotonic(), part)
        return part

    def _waiting(self, started: float) -> Part:
        waited = time.monotonic() - started
        last = self._last
        if last is not None and waited < self.stale_after and last[1][0].status == "up":
            status, queues, workers = last[1]
            return replace(status, age_seconds=round(time.monotonic() - last[0], 1)), queues, workers
        error = (f"{self.backend.label} {self.backend.redacted_url} is not answering (timeout): its last read "
                 f"started {waited:.0f} s ago and has not finished")  # fmt: skip
        notes = self.backend.notes()
        return BackendStatus(self.backend.name, self.backend.kind, self.backend.redacted_url, "down", error, (), notes), [], []

    # -- upkeep ----------------------------------------------------------------------

    def maintain(self, budget_seconds: float) -> None:
        """Start the adapters' upkeep (unless a pass is still running) and wait for it at most the budget."""
        with self._lock:
            if self._maintaining is not None and not self._maintaining.done():
                return  # the previous pass is still at it (a slow backend): it is not started twice
            self._maintaining = self._upkeep.submit(self._maintain, budget_seconds)
            future = self._maintaining
        try:
            future.result(timeout=budget_seconds + 0.5)
        except FutureTimeout:
            log.warning("upkeep of backend %s is taking longer than %.1f s", self.backend.name, budget_seconds)

    def _maintain(self, budget_seconds: float) -> None:
        for adapter in self.backend.present():
            try:
                adapter.maintain(budget_seconds)
            except AdapterError as exc:
                log.warning("upkeep of %s on %s failed: %s", adapter.system, self.backend.name, exc)
            except Exception:
                log.exception("upkeep of %s on %s failed", adapter.system, self.backend.name)

    # -- page reads ------------------------------------------------------------------

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """``fn()`` (an adapter read) in this backend's page threads; BackendUnavailable after ``timeout``."""
        context = contextvars.copy_context()  # the request's decode budget goes along
        future = self._pages.submit(context.run, fn)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise BackendUnavailable(f"{self.backend.label} {self.backend.redacted_url} did not answer within "
                                     f"{timeout:g} s") from None  # fmt: skip
        except AdapterError:
            raise
        except Exception as exc:
            log.exception("a read of backend %s failed", self.backend.name)
            raise BackendUnavailable(f"{self.backend.label} {self.backend.redacted_url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        for pool in (self._snapshots, self._upkeep, self._pages):
            pool.shutdown(wait=False, cancel_futures=True)
