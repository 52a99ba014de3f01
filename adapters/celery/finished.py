"""Celery tasks that ended well (SUCCESS) or were revoked (REVOKED), from their result records.

Celery keeps no list of finished tasks: a finished task is its ``celery-task-meta-ID``
record until ``result_expires``. The failure index's scan (``index``) already reads
every record's first bytes, which name its status; a SUCCESS or REVOKED record it
has not seen (or whose size or expiry changed) is read once (GET, at most
``MAX_DONE_BYTES``) and kept here by the queue it names. Only ``result_extended``
records name their queue (and task name and arguments): the others are counted,
not listed (``unnamed``), and the operator is told why.

Memory is bounded like the failure index's: 1,000 tasks per queue (the newest),
20,000 in all. Pages are newest first by ``date_done``; each row shown is checked
to still exist (EXISTS) before it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import args_preview
from queuewatch.adapters.failure_index import FailureIndex

from .results import parse_time

MAX_DONE_BYTES = 256 * 1024  # a bigger record (a large return value) is not read for this list
MAX_PER_QUEUE = 1_000
MAX_ENTRIES = 20_000
STATE_OF_STATUS = {"SUCCESS": "finished", "REVOKED": "canceled"}


@dataclass(frozen=True)
class CeleryDone:
    """One finished (or revoked) task as the index keeps it."""

    id: str
    queue: str
    function: str | None
    args_preview: str
    ended_at: float | None  # date_done, unix time
    worker: str | None
    retries: int | None
    result_preview: str | None
    expires_at: float | None
    size: int

    @property
    def order(self) -> tuple[int, str]:
        return (-round((self.ended_at or 0.0) * 1000), self.id)


def parse_done(task_id: str, data: bytes, status: str, size: int, expires_at: float | None) -> CeleryDone | None:
    """The entry of a SUCCESS/REVOKED record that names its queue; None otherwise."""
    decoded = payload.decode(data, max_bytes=MAX_DONE_BYTES)
    meta = decoded.value if decoded.error is None and isinstance(decoded.value, dict) else None
    if meta is None or meta.get("status") != status or not isinstance(meta.get("queue"), str) or not meta["queue"]:
        return None
    args, kwargs = meta.get("args"), meta.get("kwargs")
    preview = args_preview(tuple(args), kwargs) if isinstance(args, list) and isinstance(kwargs, dict) else ""
    moment = parse_time(meta.get("date_done"))
    retries = meta.get("retries")
    result: Any = meta.get("result")
    return CeleryDone(
        id=task_id, queue=meta["queue"], function=meta["name"] if isinstance(meta.get("name"), str) else None,
        args_preview=preview, ended_at=moment.timestamp() if moment else None,
        worker=meta["worker"] if isinstance(meta.get("worker"), str) else None,
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        result_preview=None if result is None else payload.render(result, limit=200), expires_at=expires_at, size=size,
    )  # fmt: skip


class DoneIndex(FailureIndex[CeleryDone]):
    """The SUCCESS (or REVOKED) records of one result backend, by queue. Fed and stepped by the
    failure index's scan (``CeleryFailures``), which starts and ends its passes."""

    def __init__(self, status: str) -> None:
        super().__init__(max_per_queue=MAX_PER_QUEUE, max_queues=500, max_entries=MAX_ENTRIES)
        self.status = status
        self.unnamed = 0  # records of the last pass not listed: they name no queue (no result_extended), or too large
        self._unnamed_now = 0

    def _step(self) -> bool:  # never scans by itself
        return True

    def _begin(self) -> None:
        self._unnamed_now = 0

    def _ended(self) -> None:
        self.unnamed = self._unnamed_now

    def wants(self, task_id: str, size: int, expires_at: float | None) -> bool:
        """Whether a record the scan met must be read (new or changed); marks a known one seen."""
        with self._lock:
            other = task_id in self._others
            if self._unchanged(task_id, size, expires_at):
                self._unnamed_now += other  # read before: names no queue (or is too large to read)
                return False
            if size > MAX_DONE_BYTES:
                self._unnamed_now += 1
                self._remember_other(task_id, size, expires_at)
                return False
            return True

    def found(self, task_id: str, data: bytes, size: int, expires_at: float | None) -> None:
        entry = parse_done(task_id, data, self.status, size, expires_at)
        with self._lock:
            if entry is None:
                self._unnamed_now += 1
                self._remember_other(task_id, size, expires_at)
            else:
                self._put(entry)
                self._count_found(entry.queue)
