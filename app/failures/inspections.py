"""Inspections the operator asked for, held so that pages can show them.

Reading a RabbitMQ dead-letter queue takes its messages and gives them back,
which RabbitMQ counts as a delivery: a quorum queue with a delivery limit drops
a message read that many times. So a dead-letter list is read only when the
operator asks (a POST, ``adapter.inspect``), once, and what it read is held
here: the page, its refreshes, its next pages, its groups and each message's
detail are cut from the held inspection until the operator asks again. A GET
never reads the queue.

Held in this process's memory (a bounded number, for a bounded time): under
``--workers N`` a page served by another process says the inspection is not
held there and offers to inspect again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from queuewatch.adapters.base import FailedJob, Inspection, Page

KEEP = 16  # inspections held at once; the oldest goes first
KEEP_SECONDS = 30 * 60.0


@dataclass(frozen=True)
class Held:
    id: str
    backend: str
    system: str
    queue: str
    user: str
    inspection: Inspection
    held_at: float


class HeldInspections:
    def __init__(self, keep: int = KEEP, keep_seconds: float = KEEP_SECONDS) -> None:
        self.keep = keep
        self.keep_seconds = keep_seconds
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, backend: str, system: str, queue: str, inspection: Inspection, user: str) -> Held:
        held = Held(secrets.token_hex(6), backend, system, queue, user, inspection, time.monotonic())
        with self._lock:
            self._held[held.id] = held
            while len(self._held) > self.keep:
                self._held.popitem(last=False)
        return held

    def get(self, inspection_id: str | None, backend: str, system: str, queue: str) -> Held | None:
        """The held inspection of that queue, or None (never made here, forgotten, or another queue's)."""
        if not inspection_id:
            return None
        with self._lock:
            now = time.monotonic()
            for old in [k for k, h in self._held.items() if now - h.held_at > self.keep_seconds]:
                del self._held[old]
            held = self._held.get(inspection_id)
        if held is None or (held.backend, held.system, held.queue) != (backend, system, queue):
            return None
        return held


class Reader:
    """A held inspection read like an adapter's failed list (for filters and groups)."""

    def __init__(self, inspection: Inspection, walk_page: int) -> None:
        self.inspection = inspection
        self.walk_page = walk_page

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        return self.inspection.page(cursor, limit)
