"""Control of live Celery work over the workers' mailbox (kombu's pidbox), as ``app.control``
sends it, without celery (DESIGN.md "Jobs in every state, control actions").

- **revoke** (``revoke``, no terminate): every live worker flags the ids (see ``states``).
- **stop** a running task: ``revoke`` with ``terminate=True, signal=SIGTERM`` to the worker
  that runs it, found by asking the workers ``active`` now (or from its last
  ``task-started`` event when it is too busy to answer). Only a pool that runs tasks in
  child processes can terminate one (prefork; eventlet and gevent kill the green
  thread): a ``solo`` or ``threads`` worker cannot (``terminate_job`` is not
  implemented there), so that is refused, with the reason, before anything is sent.
  The pool comes from the worker's ``stats`` (asked by the sampler, or now).
- **pause** a queue: ``cancel_consumer`` to every live worker consuming it; **resume**:
  ``add_consumer`` to the workers the pause took it from, and to no other (a worker
  that never consumed the queue must not start to). The pauses are kept (``Pauses``):
  in the dashboard's state store when one is attached (``use_store``; shared by every
  process and replica, read at most once a second), and always in the adapter's memory
  (``dump_memory``), so they survive a restart. The sampler re-applies them
  (``maintain``) to workers that start later consuming a paused queue, as soon as they
  have said which queues they consume (about a second after they start): a worker
  that starts while its queue is paused can take the messages it prefetches in that
  moment — nothing in Celery starts a worker with a queue paused.
- **worker control**: ``shutdown`` (warm: running tasks finish), ``pool_grow`` /
  ``pool_shrink`` (``n``), each answered by the worker where it answers.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from queuewatch.adapters.base import ActionResult
from queuewatch.adapters.errors import BackendUnavailable, NotFound, Unsupported

from .index import UNKNOWN
from .pidbox import queue_names

ASK_SECONDS = 1.5
SILENT_BUSY = 600.0  # a worker silent since its task-started event this long may still run that task
STORE_READ_EVERY = 1.0
MAX_POOL_STEP = 100
NO_TERMINATE = {"solo": "a solo pool runs the task in the worker's own process", "threads": "a threads pool runs it in a thread"}
ACTIONS = {"shutdown": "shutdown", "pool_grow": "pool_grow", "pool_shrink": "pool_shrink"}


def pool_kind(pool: dict[str, Any] | None) -> str | None:
    """The pool kind ("prefork", "solo", "threads", "eventlet", "gevent") of a ``stats`` reply."""
    implementation = pool.get("implementation") if isinstance(pool, dict) else None
    if not isinstance(implementation, str):
        return None
    module = implementation.partition(":")[0].rsplit(".", 1)[-1]
    return {"thread": "threads"}.get(module, module)


@dataclass
class Pause:
    """One paused queue: since when, and the workers it was taken from (each with the start time of
    the worker process told, so a restarted worker is told again)."""

    since: float
    workers: dict[str, float | None] = field(default_factory=dict)  # hostname -> online_at when told


class Pauses:
    """The paused queues of one backend's Celery, in memory and (when attached) in the state store."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.store: Any = None
        self._lock = threading.Lock()
        self._paused: dict[str, Pause] = {}
        self._read_at = -1e9
        self.version = 0

    def _refresh(self, force: bool = False) -> None:
        if self.store is None or (not force and time.monotonic() - self._read_at < STORE_READ_EVERY):
            return
        raw = self.store.get(self.key)
        self._read_at = time.monotonic()
        loaded = self.parse(json.loads(raw)) if raw else {}
        if loaded.keys() != self._paused.keys():
            self.version += 1
        self._paused = loaded

    @staticmethod
    def parse(data: Any) -> dict[str, Pause]:
        found = {}
        for queue, item in data.items() if isinstance(data, dict) else ():
            if isinstance(queue, str) and isinstance(item, dict) and isinstance(item.get("since"), (int, float)):
                workers = item.get("workers") if isinstance(item.get("workers"), dict) else {}
                found[queue] = Pause(float(item["since"]), {h: t for h, t in workers.items() if isinstance(h, str)
                                                             and (t is None or isinstance(t, (int, float)))})  # fmt: skip
        return found

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {q: {"since": p.since, "workers": dict(p.workers)} for q, p in self._paused.items()}

    def load(self, data: Any) -> None:
        with self._lock:
            if not self._paused:
                self._paused = self.parse(data)
                self.version += 1

    def _save(self) -> None:
        self.version += 1
        if self.store is not None:
            self.store.put(self.key, json.dumps({q: {"since": p.since, "workers": p.workers} for q, p in self._paused.items()}))
            self._read_at = time.monotonic()

    def get(self, queue: str) -> Pause | None:
        with self._lock:
            self._refresh()
            return self._paused.get(queue)

    def all(self) -> dict[str, Pause]:
        with self._lock:
            self._refresh()
            return dict(self._paused)

    def update(self, queue: str, change: Any) -> Pause | None:
        """Apply ``change(pause or None) -> pause or None`` to the queue's record, read fresh, and save it."""
        with self._lock:
            self._refresh(force=True)
            after = change(self._paused.get(queue))
            if after is None:
                self._paused.pop(queue, None)
            else:
                self._paused[queue] = after
            self._save()
            return after


class CeleryControl:
    """The control methods both broker adapters share (a mixin of ``CeleryAdapterBase``)."""

    label: str
    backend: str
    questions: Any
    events: Any
    pauses: Pauses

    def use_store(self, store: Any) -> None:
        """Keep the paused queues in the dashboard's state store (``get``/``put`` of a setting),
        shared by every process: what was paused stays paused across restarts and replicas."""
        self.pauses.store = store
        with self.pauses._lock:
            raw = store.get(self.pauses.key)
            if raw is None and self.pauses._paused:  # paused before the store was attached: keep it
                self.pauses._save()
            else:
                self.pauses._refresh(force=True)

    def _mailbox(self) -> Any:
        if self.questions is None:
            raise Unsupported(f"{self.label} workers cannot be reached here")
        return self.questions.mailbox

    def _live(self) -> dict[str, Any]:
        return {s.hostname: s for s, alive in self.events.workers() if alive}

    def _ask(self, method: str, arguments: dict[str, Any], destination: list[str], timeout: float = ASK_SECONDS) -> dict[str, Any]:
        try:
            return self._mailbox().ask(method, arguments, expect=len(destination), timeout=timeout, destination=destination)
        except Unsupported:
            raise
        except Exception as exc:  # redis/pika errors: the broker, not the worker
            raise BackendUnavailable(f"{self.label} workers' mailbox: {type(exc).__name__}: {exc}") from exc

    def _send(self, method: str, arguments: dict[str, Any], destination: list[str] | None) -> None:
        try:
            self._mailbox().send(method, arguments, destination=destination)
        except Unsupported:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"{self.label} workers' mailbox: {type(exc).__name__}: {exc}") from exc

    # -- revoke (jobs in every state) --------------------------------------------------

    def revoke(self, queue: str, ids: list[str] | tuple[str, ...]) -> ActionResult:
        """Celery's revoke without terminate, to every live worker: they skip the tasks when they reach them."""
        wanted = list(dict.fromkeys(ids))
        live = self._live()
        if not live:
            raise Unsupported("No live Celery worker to tell: a revoke lives only in the workers' memory (and their "
                              "--statedb file), so one sent now would be lost.")  # fmt: skip
        if wanted:
            self._send("revoke", {"task_id": wanted, "terminate": False, "signal": "SIGTERM"}, None)
        return ActionResult(len(wanted))

    # -- stop a running task ------------------------------------------------------------

    def running_worker(self, job_id: str) -> tuple[str | None, list[str]]:
        """(the worker running ``job_id``, or None; the recently seen workers that did not answer):
        asked now (``active``), else from a task-started event of a worker too busy to answer."""
        recent = [s for s, _ in self.events.workers() if not s.offline and s.last_seen >= time.time() - SILENT_BUSY]
        live = sorted(self._live())
        replies = self._ask("active", {}, live) if live else {}
        for hostname, tasks in replies.items():
            if isinstance(tasks, list) and any(isinstance(t, dict) and t.get("id") == job_id for t in tasks):
                return hostname, []
        silent = [s for s in recent if s.hostname not in replies]
        # Too busy to answer: a solo pool sends neither answers nor heartbeats (nor, buffered, its events) while it runs.
        return next((s.hostname for s in silent if s.current == job_id), None), sorted(s.hostname for s in silent)

    def pool_of(self, hostname: str, *, ask: bool = True) -> str | None:
        pool = self.questions.pools.get(hostname) if self.questions else None
        if pool is None and ask and self.questions is not None:
            try:
                pool = self.questions.ask_pools([hostname], ASK_SECONDS).get(hostname)
            except Exception:  # the mailbox failed: the pool stays unknown
                pool = None
        return pool_kind(pool)

    def stop(self, queue: str, job_id: str) -> str | None:
        """Revoke with terminate (SIGTERM) to the worker running ``job_id``: the task ends REVOKED, the worker
        lives on. Raises NotFound when no live worker runs it, Unsupported for a pool that cannot terminate."""
        worker, silent = self.running_worker(job_id)
        if worker is None:
            solo = [h for h in silent if self.pool_of(h, ask=False) == "solo"]
            if solo:
                raise Unsupported(f"Worker {', '.join(solo)} did not answer: a solo pool answers only between tasks, "
                                  f"so it may be running task {job_id!r}; a solo pool runs the task in the worker's own "
                                  "process and cannot terminate it anyway. Nothing was sent.")  # fmt: skip
            raise NotFound(f"no live Celery worker is running task {job_id!r}"
                           + (f" ({', '.join(silent)} did not answer)" if silent else ""))  # fmt: skip
        kind = self.pool_of(worker)
        if kind in NO_TERMINATE:
            raise Unsupported(f"Worker {worker} runs a {kind} pool: Celery can terminate a task only in a pool of "
                              f"child processes (prefork) or green threads, and {NO_TERMINATE[kind]}, so the task would "
                              "not stop. Nothing was sent. Revoke it instead to skip it if it runs again.")  # fmt: skip
        self._send("revoke", {"task_id": [job_id], "terminate": True, "signal": "SIGTERM"}, [worker])
        return worker

    # -- pause a queue -------------------------------------------------------------------

    def _consuming(self, queue: str, live: dict[str, Any]) -> list[str]:
        """The live workers consuming ``queue`` now, asked (``active_queues``), else as last reported."""
        replies = self._ask("active_queues", {}, sorted(live)) if live else {}
        for hostname, reply in replies.items():
            self.events.set_queues(hostname, queue_names(reply))
        return sorted(h for h, seen in live.items()
                      if queue in (queue_names(replies[h]) if h in replies else seen.queues))  # fmt: skip

    def pause(self, queue: str, paused: bool) -> bool:
        """Pause: cancel_consumer to every live worker consuming ``queue``, and remember it (also to re-apply it
        to workers that start later). Resume: add_consumer to the workers the pause took it from."""
        if queue == UNKNOWN:
            raise Unsupported("failed tasks of an unknown queue are no queue workers consume")
        live = self._live()
        if paused:
            consuming = self._consuming(queue, live)
            for hostname in consuming:
                self._send("cancel_consumer", {"queue": queue}, [hostname])

            def add(before: Pause | None) -> Pause:
                record = before or Pause(time.time())
                record.workers.update({h: live[h].online_at for h in consuming})
                return record

            self.pauses.update(queue, add)
            return True
        record = self.pauses.get(queue)
        if record is None:
            return False
        targets = sorted(h for h in record.workers if h in live)
        for hostname in targets:
            self._send("add_consumer", {"queue": queue}, [hostname])
        self.pauses.update(queue, lambda before: None)
        return False

    def paused(self, queue: str) -> bool | None:
        if queue == UNKNOWN:
            return None
        return self.pauses.get(queue) is not None

    def reapply_pauses(self) -> list[tuple[str, str]]:
        """Tell live workers that consume a paused queue (started since, or restarted) to stop: the
        sampler's upkeep. Returns the (queue, worker) pairs told."""
        told = []
        paused = self.pauses.all()
        if not paused:
            return told
        live = self._live()
        for queue, record in paused.items():
            due = [h for h, seen in live.items() if queue in seen.queues
                   and (h not in record.workers or record.workers[h] != seen.online_at)]  # fmt: skip
            for hostname in due:
                self._send("cancel_consumer", {"queue": queue}, [hostname])
                told.append((queue, hostname))
            if due:

                def add(before: Pause | None, due: list[str] = due) -> Pause | None:
                    if before is None:  # resumed meanwhile: the resume tells them to consume again
                        for hostname in due:
                            self._send("add_consumer", {"queue": queue}, [hostname])
                        return None
                    before.workers.update({h: live[h].online_at for h in due})
                    return before

                self.pauses.update(queue, add)
        return told

    # -- worker control -------------------------------------------------------------------

    def control_worker(self, name: str, action: str, n: int = 1) -> dict[str, Any]:
        """``shutdown`` (warm), ``pool_grow`` / ``pool_shrink`` by ``n``, to the live worker ``name``.
        Returns its answer ({} for shutdown, which answers nothing). Raises NotFound for a worker not
        alive, Unsupported for an action it has not, or that it refused (its answer)."""
        if action not in ACTIONS:
            raise Unsupported(f"Celery workers take no {action.replace('_', ' ')} command here "
                              f"(only {', '.join(ACTIONS)})")  # fmt: skip
        if name not in self._live():
            raise NotFound(f"no live Celery worker named {name!r}")
        if action == "shutdown":
            self._send("shutdown", {}, [name])
            return {}
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_POOL_STEP:
            raise Unsupported(f"n must be a whole number from 1 to {MAX_POOL_STEP}")
        reply = self._ask(ACTIONS[action], {"n": n}, [name]).get(name)
        if reply is None:
            raise BackendUnavailable(f"worker {name} did not answer within {ASK_SECONDS:g} s (a solo pool answers only "
                                     "between tasks): the command may still be carried out")  # fmt: skip
        if isinstance(reply, dict) and "error" in reply:
            raise Unsupported(f"worker {name} refused {action}: {reply['error']}")
        return reply if isinstance(reply, dict) else {"answer": reply}
