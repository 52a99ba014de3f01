"""What Celery looks like on either broker: workers from events, failed tasks from
the result backend, requeue as a new protocol-2 message.

``CeleryAdapterBase`` holds the failure index (``index``), the event
state and listener (``events``), and the actions on failed tasks; the
broker adapters (``on_redis`` for Redis, ``on_rabbitmq``) add queues,
counts, purge and how a message is published.

Requeue republishes the stored call as a NEW task: new id, ``parent_id`` = the
failed id, ``root_id`` kept where events told it (else the failed task's own
root: itself, or its parent), ``retries`` 0, the exact ``args``/``kwargs`` of
the JSON result record (never the truncated ``argsrepr``), on the queue the
record names. The FAILURE record is then deleted: its existence is what makes
a task "failed", so a second requeue (another click, another dashboard
process) finds nothing and publishes nothing. When results and broker share
a Redis database the LPUSH and the DEL are one Lua script; otherwise a
minute-long ``SET NX`` claim serializes requeuers, the message is published
(RabbitMQ: confirmed), and only then the record is deleted: a crash between
the two leaves the task both queued and failed (at-least-once, never lost).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis

from queuewatch.adapters.base import (ALL, ActionResult, Adapter, FailedJob, JobDetail, Option, Page, QueueStats, Selection,
                                      Tally, Worker, chunks, unique)  # fmt: skip
from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.failure_index import failed_page
from queuewatch.adapters.redis_errors import redis_errors

from .control import CeleryControl, Pauses
from .events import EventState, Listener
from .failures import NO_RESULTS_NOTE, UNKNOWN_NOTE, failed_job, job_detail
from .index import UNKNOWN, CeleryFailure, CeleryFailures
from .messages import Outgoing, new_task
from .results import FailureRecord, ResultStore, parse_record
from .states import CeleryJobStates
from .workers import WorkerQuestions, consumers, present

MAX_KNOWN_QUEUES = 2_000
CHUNK = 100


def results_client(url: str, timeout: float = 3.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30,
                                max_connections=16)  # fmt: skip


def record_sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - Redis' sha1hex, compared in Lua


class CeleryAdapterBase(CeleryControl, CeleryJobStates, Adapter):
    """Celery on one broker (a Redis database or a RabbitMQ vhost); jobs in every state (``states``)
    and control of live work (``control``) from the mixins."""

    system = "celery"
    label = "Celery"
    # The Redis result backend, when it is not the broker's own database (--celery-results).
    options = (Option("CELERY_RESULTS", "results_url", schemes=("redis", "rediss", "unix")),)

    def __init__(self, *, backend: str, results: ResultStore | None) -> None:
        super().__init__(backend=backend)
        self._owned_results: redis.Redis | None = None
        self.index = CeleryFailures(results)
        self.events = EventState(self.index)
        self.listener: Listener | None = None
        self.questions: WorkerQuestions | None = None  # set by the broker adapter, with its mailbox
        self.worker_conf: dict[str, Any] = {}  # what a live worker's ``conf`` said: result_backend, result_extended
        self._results_configured = False
        self._known: dict[str, None] = {}  # queue names seen, newest last (bounded)
        self._closed = False
        self._guard = threading.Lock()
        self.pauses = Pauses(f"celery.paused:{backend}")  # paused queues (``control``)

    # -- configuration ---------------------------------------------------------------

    @property
    def results(self) -> ResultStore | None:
        return self.index.store

    def link_results(self, url: str | None = None, *, client: redis.Redis | None = None, keyprefix: str = "") -> None:
        """Read failed tasks from this Redis result backend (another database or server
        than the broker's, typically). Call before the sampler starts."""
        if client is None and url is None:
            raise ValueError("give the result backend's URL or client")
        self._results_configured = True
        self._use_results(url, client, keyprefix, url or _describe(client))  # type: ignore[arg-type]

    def _use_results(self, url: str | None, client: redis.Redis | None, keyprefix: str, label: str) -> None:
        if client is None:
            client = results_client(url)  # type: ignore[arg-type]
            old, self._owned_results = self._owned_results, client
            if old is not None:
                old.close()
        store = ResultStore(client, keyprefix=keyprefix, label=label)
        if self.index.store is None:
            self.index.store = store
        else:
            self.index.relink(store)

    def _discover_results(self, confs: dict[str, Any]) -> None:
        """Follow the result backend the workers' configuration names, unless one was configured."""
        for hostname, conf in sorted(confs.items()):
            if not isinstance(conf, dict):
                continue
            backend = conf.get("result_backend")
            self.worker_conf = {"worker": hostname, "result_backend": backend, "result_extended": conf.get("result_extended")}
            url = self._unmasked(backend) if isinstance(backend, str) else None
            if self._results_configured or url is None or not url.startswith(("redis://", "rediss://", "unix://")):
                return
            current = self.results.label if self.results else None
            if current is None or (current != url and not _same_url(self.results.client, url)):  # type: ignore[union-attr]
                self._use_results(url, None, "", f"{backend} (from worker {hostname}'s configuration)")
            return

    def _unmasked(self, url: str) -> str | None:
        """A worker's result_backend with Celery's ``********`` replaced by a password we know, if we do."""
        return url if "********" not in url else None

    def _ask_workers(self, timeout: float) -> None:
        """Which queues each live worker consumes, and (unless configured) where its results go."""
        if self.questions is not None:
            confs = self.questions.ask(self.events, timeout, want_conf=not self._results_configured)
            self.questions.ask_held(self.events, timeout)
            try:
                self._discover_results(confs)
            except Exception as exc:  # a result_backend we cannot use: keep reading the one we have
                self.questions.error = f"result backend {self.worker_conf.get('result_backend')!r}: {exc}"

    # -- the sampler's upkeep ----------------------------------------------------------

    def _make_listener(self) -> Listener:
        raise NotImplementedError

    def _start_listener(self) -> None:
        """Start the event listener, once: it reconnects by itself until ``close``."""
        with self._guard:
            if self._closed:
                return
            if self.listener is None:
                self.listener = self._make_listener()
            self.listener.start()

    def maintain(self, budget_seconds: float) -> None:
        """Start the event listener and advance the failure index."""
        started = time.monotonic()
        self._start_listener()
        if self._closed:
            return
        with redis_errors(f"Celery result backend {self.results.label if self.results else ''}"):
            self.index.maintain(budget_seconds / 2)
        self._ask_workers(min(1.0, budget_seconds - (time.monotonic() - started)))
        try:
            self.reapply_pauses()
        except Exception as exc:  # a mailbox or store that fails now is tried again next tick
            if self.questions is not None:
                self.questions.error = f"re-applying paused queues: {type(exc).__name__}: {exc}"

    def settle(self, timeout: float = 60.0) -> bool:
        """Index every failure present now (tests and scripts; the sampler uses maintain)."""
        with redis_errors():
            return self.index.settle(timeout)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()
        if self._owned_results is not None:
            self._owned_results.close()

    def dump_memory(self) -> dict[str, Any]:
        """What to keep across a restart (JSON-safe): workers last seen, the newest failures, queue names."""
        return {"version": 1, "workers": self.events.dump(), "failures": self.index.dump(),
                "queues": sorted(self.known_queues()), "paused": self.pauses.dump()}  # fmt: skip

    def load_memory(self, data: dict[str, Any]) -> None:
        """Restore ``dump_memory``'s output; the index then corrects itself from the backend."""
        if isinstance(data, dict) and data.get("version") == 1:
            self.events.load(data.get("workers") or {})
            self.index.load(data.get("failures") or {})
            self.remember_queues(q for q in data.get("queues") or () if isinstance(q, str))
            self.pauses.load(data.get("paused") or {})

    @property
    def memory_version(self) -> tuple[int, int, int, int]:
        """Changes whenever dump_memory's answer would: save when it moved."""
        return self.events.version, self.index.version, len(self._known), self.pauses.version

    def remember_queues(self, names: Iterable[str]) -> None:
        with self._guard:
            for name in names:
                self._known.pop(name, None)
                self._known[name] = None
            while len(self._known) > MAX_KNOWN_QUEUES:
                del self._known[next(iter(self._known))]

    def known_queues(self) -> set[str]:
        """Queues seen before (also before a restart): shown while they exist."""
        with self._guard:
            return set(self._known)

    # -- reads ------------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        answers = self.questions.held if self.questions is not None else {}
        return [present(seen, alive, backend=self.backend, system=self.system, held=answers.get(seen.hostname))
                for seen, alive in sorted(self.events.workers(), key=lambda w: w[0].hostname)]  # fmt: skip

    def _queue_names(self, workers: list[Worker]) -> set[str]:
        """Queues named by failure records and by workers' reports."""
        names = {q for w in workers for q in w.queues} | set(self.index.failing_queues())
        names.discard(UNKNOWN)
        return names

    _consumers = staticmethod(consumers)

    def _unknown_stats(self) -> QueueStats | None:
        count, estimated = self.index.count(UNKNOWN)
        if count == 0:
            return None
        notes = [UNKNOWN_NOTE] + (["Count estimated: more failures than the index keeps."] if estimated else [])
        return QueueStats(backend=self.backend, system=self.system, name=UNKNOWN, depth=None, in_progress=None,
                          scheduled=None, failed=count, workers=None, oldest_age_seconds=None, notes=tuple(notes))  # fmt: skip

    def _held(self, name: str, reserved: int | None) -> tuple[int | None, int | None, int | None, list[str]]:
        """(in progress, scheduled, prefetched, notes) of a queue. From what its live workers answered
        (``inspect active / scheduled / reserved``): running is in progress, held for an ETA or a
        countdown is scheduled, prefetched is neither. ``reserved`` (what the broker says workers
        hold, all three kinds) stands in while no worker of the queue has answered."""
        alive = [seen for seen, is_alive in self.events.workers() if is_alive and (not seen.queues or name in seen.queues)]
        answers, missing = (
            self.questions.answers([s.hostname for s in alive]) if self.questions else ({}, [s.hostname for s in alive])
        )
        if not answers:  # no worker of the queue has answered (or none is known yet)
            return reserved, None, None, ([] if reserved is None else [
                "In progress counts every task workers reserved (running, prefetched, or held for an ETA or a "
                "countdown): the workers have not answered which is which yet."])  # fmt: skip

        def total(kind: str) -> int:
            return sum(a.counts.get(kind, {}).get(name, 0) for a in answers.values())

        running, eta, prefetched, notes = total("active"), total("scheduled"), total("reserved"), []
        by_name = {s.hostname: s for s in alive}
        for hostname in missing:
            seen = by_name[hostname]
            busy = max(seen.active or 0, 1 if seen.current else 0)  # its heartbeat, its last task-started event
            if seen.queues == [name]:
                running += busy
                notes.append(f"{hostname} did not answer (busy?): {busy:,} running from its events.")
            else:
                notes.append(f"{hostname} did not answer which tasks it holds: they are not counted here.")
        if eta:
            notes.append(f"{eta:,} held by workers for an ETA or a countdown: shown as scheduled.")
        return running, eta, prefetched, notes

    def _failure_notes(self, estimated: bool) -> list[str]:
        notes = []
        backend, extended = self.worker_conf.get("result_backend"), self.worker_conf.get("result_extended")
        if isinstance(backend, str) and self.results is None:
            notes.append(f"Worker {self.worker_conf['worker']} stores results in {backend}, which is not a Redis "
                         "database this dashboard can read.")  # fmt: skip
        if extended is False:
            notes.append(f"Worker {self.worker_conf['worker']} runs without result_extended: its failed tasks do not "
                         "name their queue or keep their arguments, so they are listed under "
                         f"{UNKNOWN!r} and cannot be requeued.")  # fmt: skip
        if self.results is None:
            notes.append(NO_RESULTS_NOTE)
        elif not self.index.complete:
            notes.append(f"Failed count is partial: the first scan of the result backend ({self.results.label}) "
                         "has not finished.")  # fmt: skip
        if estimated:
            notes.append("Failed count estimated: more failures than the index keeps.")
        return notes

    def failed(self, queue: str, limit: int, cursor: str | None = None) -> Page[FailedJob]:
        with redis_errors():
            return failed_page(self.index, queue, limit, cursor, self._recheck, failed_job)

    def _recheck(self, entries: list[CeleryFailure]) -> list[CeleryFailure]:
        """The entries whose records still exist (one EXISTS each, pipelined); gone ones leave the index."""
        if self.results is None:
            return entries
        held = [e for e in entries if e.source == "result"]
        if not held:
            return entries
        with self.results.client.pipeline(transaction=False) as pipe:
            for e in held:
                pipe.exists(self.results.key(e.id))
            gone = {e.id for e, found in zip(held, pipe.execute()) if not found}
        for task_id in gone:
            self.index.update(task_id, None)
        return [e for e in entries if e.id not in gone]

    def failed_job(self, queue: str, job_id: str) -> JobDetail:
        """A failed task in full (``job`` finds a task in any state). Raises NotFound."""
        record = None
        if self.results is not None:
            with redis_errors():
                data = self.results.read([job_id]).get(job_id)
            record = _parse(job_id, data)
            if record is None and data is not None:
                raise NotFound(f"Celery task {job_id!r} did not fail (its result is not a FAILURE)")
        entry = self.index.entry(job_id)
        if record is None and (entry is None or entry.source != "event"):
            raise NotFound(f"Celery task {job_id!r} has no failure record (any more)")
        owner = (record.queue if record else None) or (entry.queue if entry else UNKNOWN)
        if owner != queue:
            raise NotFound(f"Celery task {job_id!r} belongs to queue {owner!r}, not {queue!r}")
        return job_detail(queue, job_id, record, entry, self.results.label if self.results else None)

    # -- moves ------------------------------------------------------------------------

    def _publish_retiring(self, record: FailureRecord, data: bytes, message: Outgoing) -> bool:
        """Publish ``message`` and delete ``record`` (still ``data``): False if it changed or vanished."""
        raise NotImplementedError

    def requeue(self, queue: str, ids: Selection) -> ActionResult:
        if queue == UNKNOWN:
            raise Unsupported(UNKNOWN_NOTE)
        if self.results is None:
            raise Unsupported(NO_RESULTS_NOTE)
        targets = self.index.ids(queue) if ids is ALL else unique(ids)
        missing, refused, reasons = [], [], []
        tally = Tally()  # moved so far: said if the backend stops answering part of the way
        tally.missing = missing
        with tally.reporting(), redis_errors():
            for chunk in chunks(targets, CHUNK):
                for task_id, data in self.results.read(chunk).items():
                    record = _parse(task_id, data)
                    if record is None or (record.queue or UNKNOWN) != queue:
                        entry = self.index.entry(task_id)
                        if entry is not None and entry.source == "event" and entry.queue == queue:
                            refused.append(task_id)
                            reasons.append(entry.refusal)
                        else:
                            missing.append(task_id)
                        if record is None and entry is not None and entry.source == "result":
                            self.index.update(task_id, None)
                        continue
                    if record.refusal:
                        refused.append(task_id)
                        reasons.append(record.refusal)
                        continue
                    if self._requeue_one(record, data):  # type: ignore[arg-type]
                        tally.add(1)
                        self.index.forget([task_id])
                    else:
                        missing.append(task_id)
        done = tally.affected
        if refused and done == 0 and (ids is not ALL or not missing):
            raise Unsupported(f"{len(refused):,} task(s) cannot be requeued. {reasons[0]}")
        # Partly done: the refused ones are reported with those not found (ActionResult has no reasons).
        return ActionResult(done, tuple(missing + refused))

    def _requeue_one(self, record: FailureRecord, data: bytes) -> bool:
        assert record.name is not None and record.args is not None and record.kwargs is not None and record.queue
        entry = self.index.entry(record.id)
        root = (entry.root_id if entry else None) or record.parent_id or record.id
        message = new_task(record.name, list(record.args), record.kwargs, queue=record.queue, parent_id=record.id,
                           root_id=root)  # fmt: skip
        return self._publish_retiring(record, data, message)

    def _claimed(self, record: FailureRecord, data: bytes, publish: Any) -> bool:
        """Requeue across two servers: claim, check the record is unchanged, publish, then delete it."""
        assert self.results is not None
        token = uuid.uuid4().hex
        if not self.results.claim(record.id, token):
            return False  # another requeue of it is under way
        try:
            if self.results.read([record.id]).get(record.id) != data:
                return False
            publish()
            self.results.client.delete(self.results.key(record.id))
            return True
        finally:
            self.results.release(record.id)

    def delete(self, queue: str, ids: Selection) -> ActionResult:
        """Delete the failure records (event-only failures are forgotten)."""
        targets = self.index.ids(queue) if ids is ALL else unique(ids)
        deleted, missing = 0, []
        tally = Tally()
        tally.missing = missing
        with tally.reporting(), redis_errors():
            for chunk in chunks(targets, CHUNK):
                mine, events_only = [], []
                records = {i: _parse(i, d) for i, d in self.results.read(chunk).items()} if self.results else {}
                for task_id in chunk:
                    record, entry = records.get(task_id), self.index.entry(task_id)
                    if record is not None and (record.queue or (entry.queue if entry else UNKNOWN)) == queue:
                        mine.append(task_id)
                    elif record is None and entry is not None and entry.source == "event" and entry.queue == queue:
                        events_only.append(task_id)
                    else:
                        missing.append(task_id)
                gone, vanished = self.results.delete_failures(mine) if mine and self.results else ([], [])
                self.index.forget(gone + events_only + vanished)
                tally.add(len(gone) + len(events_only))
                deleted = tally.affected
                missing += vanished
        return ActionResult(deleted, tuple(missing))


def _parse(task_id: str, data: bytes | None) -> FailureRecord | None:
    return parse_record(task_id, data) if data is not None else None


def _same_url(client: redis.Redis, url: str) -> bool:
    """Whether ``url`` names the database ``client`` reads."""
    try:
        other = redis.connection.parse_url(url)
    except ValueError:
        return False
    mine = client.connection_pool.connection_kwargs
    return all(str(mine.get(k, d)) == str(other.get(k, d)) for k, d in (("host", "localhost"), ("port", 6379), ("db", 0)))


def _describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
