"""The sampler: one per deployment takes the snapshot on a timer, records its
history, runs the adapters' upkeep and tells the listeners (alerts).

Every dashboard process runs one (each gunicorn worker, each replica sharing a
state store), and they compete for a lease in the store. The holder renews it
at the start of every interval (it lives 1.5 intervals) and does the work; the
others sleep until it would expire, try again, and meanwhile serve pages from
snapshots read on demand and run their own adapters' upkeep (in-memory indexes). A holder that dies is replaced within two intervals.
Samples carry their interval's start and the store keeps one point per time,
so not even a handover mid-interval records an interval twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from queuewatch.adapters.store import StateStore

from . import lease
from .monitor import Monitor, Snapshot
from .recorder import Recorder

log = logging.getLogger(__name__)

LEASE = "sampler"


class Sampler:
    def __init__(self, monitor: Monitor, interval: float, store: StateStore | None = None,
                 recorder: Recorder | None = None) -> None:  # fmt: skip
        self.monitor = monitor
        self.interval = interval
        self.store = store
        self.recorder = recorder
        self.listeners: list[Callable[[Snapshot], None]] = []
        self.collectors: list[Callable[[int], object]] = []  # per-function timings (issue 18): run with the recording
        self.holder = self._new_holder_id()
        self.holding = False
        self._store_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _new_holder_id() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def on_snapshot(self, listener: Callable[[Snapshot], None]) -> None:
        self.listeners.append(listener)

    def on_tick(self, collect: Callable[[int], object]) -> None:
        """``collect(t)`` on every tick of the lease holder, after the history is recorded."""
        self.collectors.append(collect)

    def start(self) -> None:
        if self._thread is None:
            self.holder = self._new_holder_id()  # the pid of the process that samples (after gunicorn forks)
            self._thread = threading.Thread(target=self._run, name="qw-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if self.store is not None and self.holding:
            try:
                self.store.release_lease(LEASE, self.holder)  # a clean exit hands over at once
            except Exception as exc:
                log.warning("could not release the sampler lease: %s", exc)
            self.holding = False

    def try_lease(self) -> tuple[bool, float | None]:
        """Take or renew the lease: (held, seconds until it expires). No store: always held."""
        if self.store is None:
            return True, None
        try:
            holder, left = self.store.acquire_lease(LEASE, self.holder, lease.lease_ttl(self.interval))
        except Exception as exc:  # the store is down: nobody can record; pages still work
            if str(exc) != self._store_error:  # once per outage, not once per interval
                log.warning("state store %s unavailable, not sampling: %s", self.store.location, exc)
                self._store_error = str(exc)
            held, left = False, None
        else:
            if self._store_error is not None:
                log.info("state store %s is back", self.store.location)
                self._store_error = None
            held = holder == self.holder
        if held != self.holding:
            log.info("sampler %s the lease (%s)", "took" if held else "lost", self.holder)
            self.holding = held
        return held, left

    def status(self) -> dict[str, Any]:
        """Who samples: for the API, and for tests that kill the sampler."""
        holder, left = self.store.lease(LEASE) if self.store is not None else (self.holder, 0.0)
        return {"holder": holder, "expires_in": round(left, 3), "this_process": holder == self.holder,
                "interval_seconds": self.interval}  # fmt: skip

    def tick(self, t: int | None = None) -> Snapshot:
        """Take the snapshot of the interval starting at ``t`` (ms), record it, run upkeep."""
        if t is None:
            t = lease.slot(int(time.time() * 1000), self._interval_ms())
        snapshot = self.monitor.refresh()
        self.monitor.maintain(budget_seconds=max(0.2, self.interval / 2))
        # Check the lease again: a tick slower than the lease may have lost it.
        if self.recorder is not None and self.try_lease()[0]:
            try:
                self.recorder.record(snapshot, t)
            except Exception as exc:
                log.warning("recording history failed: %s", exc)
            for collect in self.collectors:
                try:
                    collect(t)
                except Exception as exc:
                    log.warning("collecting %s failed: %s", getattr(collect, "__qualname__", collect), exc)
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:  # a broken listener must not stop sampling
                log.exception("snapshot listener failed")
        return snapshot

    def _interval_ms(self) -> int:
        return max(1, int(self.interval * 1000))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            held, left = self.try_lease()
            try:
                if held:
                    self.tick(lease.slot(int(started * 1000), self._interval_ms()))
                else:
                    # Indexes kept by maintain() (Arq results, Celery events) live in
                    # each process's memory: every process serving pages keeps its own.
                    self.monitor.maintain(budget_seconds=max(0.2, self.interval / 2))
            except Exception:
                log.exception("sampler tick failed")
            self._stop.wait(lease.next_wakeup(time.time(), self.interval, held, left))
