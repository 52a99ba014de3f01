"""The sampler: takes the shared snapshot on a timer, in the background.

With it running, pages never wait for a backend: they read the snapshot the
sampler took. History and alert evaluation hang off ``on_snapshot``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .monitor import Monitor, Snapshot

log = logging.getLogger(__name__)


class Sampler:
    def __init__(self, monitor: Monitor, interval: float) -> None:
        self.monitor = monitor
        self.interval = interval
        self.listeners: list[Callable[[Snapshot], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_snapshot(self, listener: Callable[[Snapshot], None]) -> None:
        self.listeners.append(listener)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qw-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def tick(self) -> Snapshot:
        snapshot = self.monitor.refresh()
        self.monitor.maintain(budget_seconds=max(0.2, self.interval / 2))
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:  # a broken listener must not stop sampling
                log.exception("snapshot listener failed")
        return snapshot

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("sampler tick failed")
            self._stop.wait(self.interval)
