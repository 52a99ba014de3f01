"""Celery's waiting tasks on a Redis broker: list, find, show and delete them (``states`` has the rest).

A queue's waiting messages are its four priority lists, taken in kombu's order: the
list of priority step 0 first, then 3, 6, 9 (``BRPOP`` names them in that order), each
from its right end (kombu LPUSHes, workers BRPOP). A page is a rank across them, read
with negative LRANGE indexes (stable while producers LPUSH at the other end): one
pipelined LLEN per list, then one LRANGE per list the page touches.

Delete (``delete_waiting.lua``) removes each exact message from its list (LREM from the
tail), in one script per chunk; the message is the one a page showed (remembered,
bounded) or found by a bounded search from the tail. A task a worker holds (prefetched,
or held for an ETA) is no longer in a list: it cannot be deleted this way, only revoked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from queuewatch.adapters.base import ActionResult, Job, JobDetail, Page, Tally, chunks, unique
from queuewatch.adapters.errors import Unsupported
from queuewatch.adapters.rabbitmq.dead_letters import parse_offset
from queuewatch.adapters.redis_errors import redis_errors

from .index import UNKNOWN
from .messages import PRIORITY_STEPS, TaskMessage, from_redis, priority_keys

LIST_DECODE_LIMIT = 256 * 1024  # bytes of a message decoded for a list row
MAX_HINTS = 2_000  # waiting messages remembered from the pages shown
MAX_HINT_BYTES = 64 * 1024  # a bigger message is not remembered (found again by searching)
SEARCH_SECONDS = 3.0
SEARCH_STEP = 500
DELETE_CHUNK = 100
CHECK_DEPTH = 10_000  # LPOS looks this far from the tail to say a remembered message still waits
HELD = ("{n:,} of them are held by a worker (prefetched, or held for an ETA or a countdown): a held task is no longer "
        "in the broker's lists and cannot be deleted; revoke it instead, so the worker skips it.")  # fmt: skip
DELETE_SCRIPT = Path(__file__).with_name("delete_waiting.lua").read_text()


def waiting_row(message: TaskMessage, job_id: str) -> Job:
    return Job(job_id, message.task, message.preview, None, None, None,
               None if message.retries is None else message.retries + 1, state="waiting")  # fmt: skip


class CeleryRedisStates:
    """The waiting-task methods of ``CeleryRedisAdapter`` (a mixin)."""

    client: Any
    prefix: str

    def _hints(self) -> OrderedDict[tuple[str, str], tuple[str, bytes]]:
        hints = self.__dict__.get("_waiting_hints")
        if hints is None:
            hints = self.__dict__.setdefault("_waiting_hints", OrderedDict())
            self.__dict__.setdefault("_hints_guard", threading.Lock())
        return hints

    def _remember(self, queue: str, job_id: str, key: str, entry: bytes) -> None:
        if len(entry) > MAX_HINT_BYTES:
            return
        hints = self._hints()
        with self.__dict__["_hints_guard"]:
            hints.pop((queue, job_id), None)
            hints[(queue, job_id)] = (key, entry)
            while len(hints) > MAX_HINTS:
                hints.popitem(last=False)

    def _hint(self, queue: str, job_id: str) -> tuple[str, bytes] | None:
        hints = self._hints()
        with self.__dict__["_hints_guard"]:
            return hints.get((queue, job_id))

    def _forget(self, queue: str, job_id: str) -> None:
        hints = self._hints()
        with self.__dict__["_hints_guard"]:
            hints.pop((queue, job_id), None)

    def _waiting(self, queue: str, limit: int, cursor: str | None) -> Page[Job]:
        offset = parse_offset(cursor)
        keys = priority_keys(queue, self.prefix)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            sizes = pipe.execute()
        wanted, skip, remaining = [], offset, limit
        for key, size in zip(keys, sizes):
            if remaining <= 0:
                break
            if skip >= size:
                skip -= size
                continue
            count = min(size - skip, remaining)
            wanted.append((key, skip, count))
            remaining, skip = remaining - count, 0
        rows: list[Job] = []
        if wanted:
            with self.client.pipeline(transaction=False) as pipe:
                for key, first, count in wanted:
                    pipe.lrange(key, -(first + count), -(first + 1))  # the next to run is the rightmost
                windows = pipe.execute()
            for (key, _, _), window in zip(wanted, windows):
                for entry in reversed(window):
                    message = from_redis(entry, max_bytes=LIST_DECODE_LIMIT)
                    job_id = message.id or f"(no id: {len(entry):,} bytes)"
                    if message.id:
                        self._remember(queue, message.id, key, entry)
                    rows.append(waiting_row(message, job_id))
        total = sum(sizes)
        end = offset + len(rows)
        return Page(tuple(rows), total, str(end) if end < total else None, str(max(0, offset - limit)) if offset else None,
                    offset)  # fmt: skip

    def _search(self, queue: str, ids: set[str], deadline: float) -> dict[str, tuple[str, bytes]]:
        """Find the messages of ``ids`` in the queue's lists, from the tail, until ``deadline``. Raises
        Unsupported (nothing changed) when time runs out before every list was searched."""
        found: dict[str, tuple[str, bytes]] = {}
        needles = {i: json.dumps(i).encode() for i in ids}
        for key in priority_keys(queue, self.prefix):
            start = 0
            while len(found) < len(ids):
                window = self.client.lrange(key, -(start + SEARCH_STEP), -(start + 1))
                for entry in reversed(window):
                    for job_id, needle in needles.items():
                        if job_id not in found and needle in entry and from_redis(entry, max_bytes=1).id == job_id:
                            found[job_id] = (key, entry)
                if len(window) < SEARCH_STEP:
                    break
                start += SEARCH_STEP
                if time.monotonic() > deadline:
                    raise Unsupported(f"Searched {queue!r} for {len(ids) - len(found):,} task ids this dashboard has not "
                                      f"shown for {SEARCH_SECONDS:g} s without finding them all; nothing was changed. "
                                      "Open the page that lists them first.")  # fmt: skip
        return found

    def _locate(self, queue: str, ids: list[str]) -> dict[str, tuple[str, bytes]]:
        located = {i: hint for i in ids if (hint := self._hint(queue, i)) is not None}
        rest = {i for i in ids if i not in located}
        if rest:
            located |= self._search(queue, rest, time.monotonic() + SEARCH_SECONDS)
        return located

    def _find_waiting(self, job_id: str) -> list[tuple[str, str]]:
        """Waiting messages this dashboard has listed (a waiting task cannot be found by id in O(1) otherwise)."""
        hints = self._hints()
        with self.__dict__["_hints_guard"]:
            shown = [(q, key, entry) for (q, i), (key, entry) in hints.items() if i == job_id]
        if not shown:
            return []
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            for _, key, entry in shown:
                pipe.execute_command("LPOS", key, entry, "RANK", -1, "MAXLEN", CHECK_DEPTH)
            places = pipe.execute()
        return [(q, "waiting") for (q, _, _), place in zip(shown, places) if place is not None]

    def _waiting_detail(self, queue: str, job_id: str) -> JobDetail | None:
        hint = self._hint(queue, job_id)
        if hint is None:
            return None
        key, entry = hint
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command("LPOS", key, entry, "RANK", -1, "MAXLEN", CHECK_DEPTH)
            pipe.llen(key)
            place, size = pipe.execute()
        if place is None and size <= CHECK_DEPTH:
            self._forget(queue, job_id)
            return None
        message = from_redis(entry)
        step = next((s for s, k in zip(PRIORITY_STEPS, priority_keys(queue, self.prefix)) if k == key), 0)
        details = [("priority list", f"step {step} ({key!r})"),
                   ("place", f"{size - place:,} of {size:,} from the next to run" if place is not None
                    else f"beyond the next {CHECK_DEPTH:,}")]  # fmt: skip
        details += [(name, str(value)) for name, value in (("root id", message.root_id), ("parent id", message.parent_id),
                                                           ("eta", message.eta)) if value]  # fmt: skip
        return JobDetail(
            id=job_id, function=message.task, args_preview=message.preview, error_type=None, error_message=None,
            failed_at=None, attempts=None if message.retries is None else message.retries + 1, queue=queue,
            args=message.args or (), kwargs=message.kwargs or {}, payload_encoding=message.encoding,
            payload_error=message.error, status="waiting in the broker", details=tuple(details), state="waiting",
        )  # fmt: skip

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> ActionResult:
        """Remove waiting tasks from their priority lists so no worker takes them (atomic per chunk)."""
        if queue == UNKNOWN:
            raise Unsupported("failed tasks of an unknown queue have no waiting messages")
        wanted = unique(ids)
        tally = Tally()
        with tally.reporting(), redis_errors():
            located = self._locate(queue, wanted)
            missing = [i for i in wanted if i not in located]
            for chunk in chunks(list(located), DELETE_CHUNK):
                removed = self._delete_script()(keys=[located[i][0] for i in chunk], args=[located[i][1] for i in chunk])
                gone = {chunk[int(n) - 1] for n in removed}
                for job_id in gone:
                    self._forget(queue, job_id)
                tally.add(len(gone), [i for i in chunk if i not in gone])
            tally.add(0, missing)
        if tally.affected == 0 and tally.missing:
            held = {t.id for s in ("scheduled", "in_progress") for t in self.held_tasks(queue, s)}  # type: ignore[attr-defined]
            n = sum(1 for i in tally.missing if i in held)
            if n:
                raise Unsupported(HELD.format(n=n))
        return tally.result()

    def _delete_script(self) -> Any:
        script = self.__dict__.get("_delete_waiting")
        if script is None:
            script = self.__dict__.setdefault("_delete_waiting", self.client.register_script(DELETE_SCRIPT))
        return script
