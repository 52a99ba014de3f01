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


def present(seen: WorkerSeen, alive: bool, *, backend: str, system: str, held: Held | None = None) -> CeleryWorker:
    """``held``: what it last answered it holds: its running tasks when events did not say (started before we listened)."""
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
        current_job=(seen.current or (held.running[0] if held and held.running else None)) if alive else None,
        started_at=utc(seen.online_at),
        successful_jobs=None if done is None else max(0, done - seen.failed),
        failed_jobs=seen.failed if done is not None else None, version=seen.sw_ver, details=tuple(details),
    )  # fmt: skip


def consumers(name: str, workers: list[Worker]) -> int | None:
    """Live workers consuming ``name``; None while a live worker has not said which queues it consumes."""
    alive = [w for w in workers if w.alive]
    if any(not w.queues for w in alive):
        return None
    return sum(1 for w in alive if name in w.queues)


HELD_EVERY = 5.0  # seconds between "which tasks do you hold" questions
HELD_FRESH = 60.0  # an answer older than this is not used
HELD_KINDS = ("active", "scheduled", "reserved")


MAX_HELD_TASKS = 5_000  # tasks kept per worker and kind (an ``inspect scheduled`` reply can be long)


@dataclass(frozen=True)
class HeldTask:
    """One task a worker said it holds, as its ``request.info()`` describes it."""

    id: str
    kind: str  # "active" (running) | "scheduled" (held for an ETA or a countdown) | "reserved" (prefetched)
    worker: str
    queue: str | None  # the routing key it was delivered with
    name: str | None
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    started: float | None  # time_start (unix time) of a running task
    eta: str | None  # ISO 8601, for a scheduled one
    priority: int | None
    pid: int | None  # the pool process running it


@dataclass(frozen=True)
class Held:
    """What one worker said it holds, per queue: running (``active``), waiting for an ETA or a
    countdown (``scheduled``), prefetched and not started (``reserved``); ``running`` its task ids;
    ``tasks`` each of them (at most MAX_HELD_TASKS per kind)."""

    at: float  # when it answered (time.time())
    counts: dict[str, dict[str, int]]  # kind -> queue -> tasks
    running: tuple[str, ...]
    tasks: tuple[HeldTask, ...] = ()


def _routing_key(task: Any, kind: str) -> str | None:
    request = task.get("request") if kind == "scheduled" and isinstance(task, dict) else task
    info = request.get("delivery_info") if isinstance(request, dict) else None
    queue = info.get("routing_key") if isinstance(info, dict) else None
    return queue if isinstance(queue, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def held_task(task: Any, kind: str, hostname: str) -> HeldTask | None:
    """A task of an ``active`` / ``reserved`` reply (``request.info()``), or of a ``scheduled``
    one (``{"eta", "priority", "request": info}``); None when it is not one."""
    request = task.get("request") if kind == "scheduled" and isinstance(task, dict) else task
    if not isinstance(request, dict) or not isinstance(request.get("id"), str) or not request["id"]:
        return None
    args, kwargs = request.get("args"), request.get("kwargs")
    eta = task.get("eta") if kind == "scheduled" else None
    priority = task.get("priority") if kind == "scheduled" else (request.get("delivery_info") or {}).get("priority")
    pid = request.get("worker_pid")
    return HeldTask(
        id=request["id"], kind=kind, worker=hostname, queue=_routing_key(task, kind),
        name=request["name"] if isinstance(request.get("name"), str) else None,
        args=tuple(args) if isinstance(args, list) else None, kwargs=kwargs if isinstance(kwargs, dict) else None,
        started=_number(request.get("time_start")), eta=eta if isinstance(eta, str) else None,
        priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
    )  # fmt: skip


def _held_from(replies: dict[str, dict[str, Any]], hostname: str, at: float) -> Held | None:
    counts: dict[str, dict[str, int]] = {}
    running: list[str] = []
    tasks: list[HeldTask] = []
    for kind in HELD_KINDS:
        reply = replies[kind].get(hostname)
        if not isinstance(reply, list):
            return None
        found = counts.setdefault(kind, {})
        for n, task in enumerate(reply):
            queue = _routing_key(task, kind)
            found[queue or "?"] = found.get(queue or "?", 0) + 1
            if kind == "active" and isinstance(task, dict) and isinstance(task.get("id"), str):
                running.append(task["id"])
            if n < MAX_HELD_TASKS and (row := held_task(task, kind, hostname)) is not None:
                tasks.append(row)
    return Held(at, counts, tuple(running[:100]), tuple(tasks))


class WorkerQuestions:
    """The questions the sampler asks live workers, and what they last answered."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox  # pidbox.RedisMailbox or AMQPMailbox
        self.error: str | None = None
        self._asked: dict[str, float] = {}  # hostname -> when (monotonic)
        # What each worker last said it holds (``inspect active / scheduled / reserved``).
        self.held: dict[str, Held] = {}
        self._held_asked = -1e9
        # What each worker's ``stats`` said of its pool: {"implementation", "max-concurrency", "processes"...}.
        self.pools: dict[str, dict[str, Any]] = {}

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
            self.ask_pools(due, timeout)
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

    def ask_pools(self, hostnames: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Ask ``hostnames`` for their ``stats`` and keep what they say of their pool."""
        replies = self.mailbox.ask("stats", {}, expect=len(hostnames), timeout=timeout, destination=hostnames)
        for hostname, reply in replies.items():
            pool = reply.get("pool") if isinstance(reply, dict) else None
            if isinstance(pool, dict):
                self.pools[hostname] = pool
        if len(self.pools) > 2 * len(hostnames) + 1000:
            self.pools = {h: p for h, p in self.pools.items() if h in replies}
        return {h: self.pools[h] for h in hostnames if h in self.pools}

    def ask_held(self, events: EventState, timeout: float, every: float = HELD_EVERY) -> None:
        """Ask the live workers which tasks they run, hold for an ETA and prefetched, at most every ``every`` s."""
        now = time.monotonic()
        if timeout <= 0 or now - self._held_asked < every:
            return
        self._held_asked = now
        alive = sorted(seen.hostname for seen, is_alive in events.workers() if is_alive)
        self.held = {h: held for h, held in self.held.items() if h in alive}
        if not alive:
            return
        replies: dict[str, dict[str, Any]] = {}
        try:
            for kind in HELD_KINDS:
                replies[kind] = self.mailbox.ask(kind, {}, expect=len(alive), timeout=timeout, destination=alive)
        except Exception as exc:  # the mailbox is a nicety: never let it stop the upkeep
            self.error = f"{type(exc).__name__}: {exc}"
            return
        at = time.time()
        for hostname in alive:
            held = _held_from(replies, hostname, at)
            if held is not None:
                self.held[hostname] = held
            else:  # busy (a solo pool answers between tasks) or gone: what it said before is not now
                self.held.pop(hostname, None)

    def tasks(self, alive: list[str], kinds: tuple[str, ...]) -> tuple[list[HeldTask], list[str]]:
        """The tasks of ``kinds`` the ``alive`` workers said they hold (fresh answers only), and
        the workers without a fresh answer."""
        fresh, missing = self.answers(alive)
        return [t for h in sorted(fresh) for t in fresh[h].tasks if t.kind in kinds], missing

    def answers(self, alive: list[str]) -> tuple[dict[str, Held], list[str]]:
        """The fresh answers of the ``alive`` workers, and which of them have none."""
        wall = time.time()
        fresh = {h: a for h in alive if (a := self.held.get(h)) is not None and wall - a.at <= HELD_FRESH}
        return fresh, [h for h in alive if h not in fresh]
