"""Celery workers as the dashboard shows them, and what the sampler asks live ones.

``present`` turns what the events said of a worker (``events``) into a
``Worker``: alive while its heartbeats arrive, "busy"/"idle" by its active
count, "offline" after its goodbye, "dead" when it went silent; the details
carry what ``Worker`` has no field for (load average, active, processed).

``WorkerQuestions`` asks live workers over their mailbox (``pidbox``)
which queues they consume (``active_queues``) and, when no result backend was
configured, where their results go (``conf``): a worker's first question waits
until it has been online for a second (it announces itself a moment before
its mailbox listens), then every minute, or after 10 s when it did not answer
(remote control may be off). A failing mailbox never stops the upkeep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from queuewatch.adapters.base import Worker

from .events import EventState, WorkerSeen, utc
from .pidbox import queue_names


@dataclass(frozen=True)
class CeleryWorker(Worker):
    """A worker with what Celery's heartbeats also say (load average, active tasks...) in ``details``."""


def present(seen: WorkerSeen, alive: bool, *, backend: str, system: str) -> CeleryWorker:
    details = [("heartbeat every", f"{seen.freq:g} s")]
    if seen.active is not None:
        details.append(("active tasks", str(seen.active)))
    if seen.processed is not None:
        details.append(("processed", str(seen.processed)))
    if seen.loadavg:
        details.append(("load average", " ".join(f"{x:.2f}" for x in seen.loadavg)))
    if seen.sw_sys:
        details.append(("system", seen.sw_sys))
    state = ("busy" if seen.active else "idle") if alive else ("offline" if seen.offline else "dead")
    done = seen.processed  # every task it finished; failures are counted from task-failed events
    return CeleryWorker(
        backend=backend, system=system, name=seen.hostname, hostname=seen.hostname.partition("@")[2] or seen.hostname,
        pid=seen.pid, queues=tuple(seen.queues), state=state, alive=alive, last_heartbeat=utc(seen.last_seen),
        current_job=seen.current if alive else None, started_at=utc(seen.online_at),
        successful_jobs=None if done is None else max(0, done - seen.failed),
        failed_jobs=seen.failed if done is not None else None, version=seen.sw_ver, details=tuple(details),
    )  # fmt: skip


def consumers(name: str, workers: list[Worker]) -> int | None:
    """Live workers consuming ``name``; None while a live worker has not said which queues it consumes."""
    alive = [w for w in workers if w.alive]
    if any(not w.queues for w in alive):
        return None
    return sum(1 for w in alive if name in w.queues)


class WorkerQuestions:
    """The questions the sampler asks live workers, and what they last answered."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox  # pidbox.RedisMailbox or AMQPMailbox
        self.error: str | None = None
        self._asked: dict[str, float] = {}  # hostname -> when (monotonic)

    def ask(self, events: EventState, timeout: float, *, want_conf: bool) -> dict[str, Any]:
        """Ask the workers that are due; record their queues in ``events``. Returns the
        ``conf`` replies ({hostname: settings}) when ``want_conf``, else {}."""
        if timeout <= 0:
            return {}
        now, wall = time.monotonic(), time.time()
        alive = [seen for seen, is_alive in events.workers() if is_alive]
        due = sorted(s.hostname for s in alive if wall - s.first_seen >= 1.0
                     and now - self._asked.get(s.hostname, -1e9) > (10 if not s.queues else 60))  # fmt: skip
        if not due:
            return {}
        confs: dict[str, Any] = {}
        try:
            replies = self.mailbox.ask("active_queues", {}, expect=len(due), timeout=timeout, destination=due)
            for hostname, reply in replies.items():
                events.set_queues(hostname, queue_names(reply))
            if want_conf:
                confs = self.mailbox.ask("conf", {"with_defaults": False}, expect=1, timeout=timeout, destination=due[:1])
            self.error = None
        except Exception as exc:  # the mailbox is a nicety: never let it stop the upkeep
            self.error = f"{type(exc).__name__}: {exc}"
        for hostname in due:
            self._asked[hostname] = now
        if len(self._asked) > 2 * len(alive) + 100:
            self._asked = {h: t for h, t in self._asked.items() if now - t < 120}
        return confs
