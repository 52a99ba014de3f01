"""Celery's events, followed live: the workers' registry and the listener threads.

Every worker publishes ``worker-online``, a ``worker-heartbeat`` every
``freq`` seconds (2 by default; with ``active``, ``processed``, ``loadavg``,
``sw_ver``...) and ``worker-offline`` on the ``celeryev`` exchange, with or
without ``-E``; with ``-E`` it also sends ``task-*`` events, buffered into
``task-multi`` events whose body is a list.

- Redis broker: PUBLISH on ``{global_keyprefix}/{db}.celeryev/<type with
  dots>``, each message kombu's JSON envelope (base64 body). The listener
  PSUBSCRIBEs ``…/{db}.celeryev/*``.
- RabbitMQ broker: the topic exchange ``celeryev``, raw JSON bodies. The
  listener binds its own exclusive, auto-delete queue ``celeryev.queuewatch-…``
  with ``#`` (bounded: 10,000 messages, 60 s each).

A worker is alive while its heartbeats arrive: it is dead after twice its own
``freq`` of silence (also when it was killed without a ``worker-offline``),
and at once on ``worker-offline``. Listeners reconnect by themselves, with
backoff, and never let an exception out of their thread.

Memory is bounded: 1,000 workers (dead ones are forgotten after a day) and
10,000 tasks' ``task-sent``/``task-received`` details awaiting their outcome.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pika
import redis

from .index import CeleryFailures

if TYPE_CHECKING:
    from queuewatch.adapters.backends import RabbitBackend

log = logging.getLogger(__name__)

EXCHANGE = "celeryev"
MAX_WORKERS = 1_000
MAX_TASKS = 10_000
DEAD_RETENTION = 86_400.0
DEFAULT_FREQ = 2.0
MAX_EVENT_BYTES = 4 * 1024 * 1024
BACKOFF_MAX = 30.0


@dataclass
class WorkerSeen:
    """What the events said of one worker, last."""

    hostname: str
    pid: int | None = None
    sw_ident: str | None = None
    sw_ver: str | None = None
    sw_sys: str | None = None
    freq: float = DEFAULT_FREQ
    active: int | None = None
    processed: int | None = None
    loadavg: list[float] | None = None
    last_seen: float = 0.0  # unix time the last event from it arrived
    first_seen: float = 0.0
    online_at: float | None = None  # when its worker-online arrived: when it started, to a heartbeat
    offline: bool = False
    failed: int = 0  # task-failed events seen from it
    current: str | None = None  # the task it started last, until it finished
    queues: list[str] = field(default_factory=list)  # from its active_queues reply

    def alive(self, now: float) -> bool:
        return not self.offline and now - self.last_seen <= 2 * self.freq


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class EventState:
    """Workers and in-flight task details, fed by events (any thread)."""

    def __init__(self, index: CeleryFailures) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerSeen] = {}
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.version = 0
        self.events = 0

    def handle(self, event: Any, received_at: float | None = None) -> None:
        """One event, or a ``task-multi`` list of them."""
        if isinstance(event, list):
            for item in event:
                self.handle(item, received_at)
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        now = time.time() if received_at is None else received_at
        kind = event["type"]
        failed = None
        with self._lock:
            self.events += 1
            if kind.startswith("worker-"):
                self._worker_event(kind, event, now)
            elif kind.startswith("task-"):
                failed = self._task_event(kind, event, now)
        if failed is not None:
            self.index.from_event(**failed)

    def _worker_event(self, kind: str, event: dict[str, Any], now: float) -> None:
        hostname = _str(event.get("hostname"))
        if hostname is None:
            return
        worker = self._workers.get(hostname)
        if worker is None:
            self._make_room()
            worker = self._workers[hostname] = WorkerSeen(hostname, first_seen=now)
        freq = _number(event.get("freq"))
        worker.freq = min(max(freq, 0.1), 3600.0) if freq else worker.freq
        worker.pid = _int(event.get("pid")) or worker.pid
        for name in ("sw_ident", "sw_ver", "sw_sys"):
            setattr(worker, name, _str(event.get(name)) or getattr(worker, name))
        worker.active = _int(event.get("active")) if "active" in event else worker.active
        worker.processed = _int(event.get("processed")) if "processed" in event else worker.processed
        load = event.get("loadavg")
        worker.loadavg = [float(x) for x in load[:3] if _number(x) is not None] if isinstance(load, list) else worker.loadavg
        if kind == "worker-online":  # a (re)start: what was known of an earlier process is stale
            worker.first_seen, worker.online_at, worker.failed, worker.current, worker.queues = now, now, 0, None, []
        worker.offline = kind == "worker-offline"
        worker.last_seen = now
        self.version += 1

    def _task_event(self, kind: str, event: dict[str, Any], now: float) -> dict[str, Any] | None:
        task_id = _str(event.get("uuid"))
        if task_id is None:
            return None
        hostname = _str(event.get("hostname"))
        worker = self._workers.get(hostname) if hostname else None
        if worker is not None and kind != "task-sent" and not worker.offline:
            worker.last_seen = max(worker.last_seen, now)  # any event from a worker says it is alive
        info = self._tasks.get(task_id)
        if info is None:
            info = self._tasks[task_id] = {}
            while len(self._tasks) > MAX_TASKS:
                self._tasks.popitem(last=False)
        if kind == "task-sent":
            info["queue"] = _str(event.get("queue")) or _str(event.get("routing_key"))
        if kind in ("task-sent", "task-received"):
            for key, name in (("name", "name"), ("args", "argsrepr"), ("kwargs", "kwargsrepr"),
                              ("root_id", "root_id"), ("retries", "retries")):  # fmt: skip
                if event.get(key) is not None:
                    info[name] = event[key]
        elif kind == "task-started" and worker is not None:
            worker.current = task_id
        elif kind in ("task-succeeded", "task-failed", "task-rejected", "task-revoked"):
            self._tasks.pop(task_id, None)
            if worker is not None and worker.current == task_id:
                worker.current = None
            if kind == "task-failed":
                if worker is not None:
                    worker.failed += 1
                return {
                    "task_id": task_id, "name": _str(info.get("name")), "argsrepr": _str(info.get("argsrepr")),
                    "kwargsrepr": _str(info.get("kwargsrepr")), "exception": _str(event.get("exception")),
                    "hostname": hostname, "timestamp": _number(event.get("timestamp")), "queue": info.get("queue"),
                    "root_id": _str(info.get("root_id")), "retries": _int(info.get("retries")),
                }  # fmt: skip
        return None

    def _make_room(self) -> None:
        now = time.time()
        for hostname in [h for h, w in self._workers.items() if not w.alive(now) and now - w.last_seen > DEAD_RETENTION]:
            del self._workers[hostname]
        if len(self._workers) >= MAX_WORKERS:
            oldest = min(self._workers.values(), key=lambda w: w.last_seen)
            del self._workers[oldest.hostname]

    def set_queues(self, hostname: str, queues: list[str]) -> None:
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is not None and worker.queues != queues:
                worker.queues = queues
                self.version += 1

    def workers(self) -> list[tuple[WorkerSeen, bool]]:
        """Copies of every worker not forgotten, with whether it is alive now."""
        now = time.time()
        with self._lock:
            return [(WorkerSeen(**asdict(w)), w.alive(now)) for w in self._workers.values()
                    if w.alive(now) or now - w.last_seen <= DEAD_RETENTION]  # fmt: skip

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {"version": 1, "workers": [asdict(w) for w in self._workers.values()]}

    def load(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict) or data.get("version") != 1:
            return
        fields = set(WorkerSeen.__dataclass_fields__)
        with self._lock:
            for raw in data.get("workers") or ():
                if isinstance(raw, dict) and isinstance(raw.get("hostname"), str) and raw["hostname"] not in self._workers:
                    try:
                        self._workers[raw["hostname"]] = WorkerSeen(**{k: v for k, v in raw.items() if k in fields})
                    except TypeError:
                        continue
            self.version += 1


def utc(moment: float | None) -> datetime | None:
    return datetime.fromtimestamp(moment, timezone.utc) if moment else None


# -- listeners ------------------------------------------------------------------------


class Listener:
    """A daemon thread that follows events until stopped, reconnecting with backoff."""

    name = "celery-events"

    def __init__(self, on_event: Callable[[Any], None]) -> None:
        self.on_event = on_event
        self.error: str | None = None
        self.connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if not self.running and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name=f"qw-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._listen_started = False
            try:
                self._listen()
            except Exception as exc:  # never let the thread die: an outage is a state
                self.connected, self.error = False, f"{type(exc).__name__}: {exc}"
                log.debug("celery event listener: %s", self.error)
            if self._listen_started:
                backoff = 1.0  # it was connected: retry soon
            self._stop.wait(self.waiting_for_workers or backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    _listen_started = False
    waiting_for_workers = 0.0  # seconds between checks while the broker is up but no worker declared the exchange

    def _listen(self) -> None:
        raise NotImplementedError

    def _deliver(self, event: Any) -> None:
        try:
            self.on_event(event)
        except Exception:  # a bad event must not stop the stream
            log.exception("celery event could not be handled")


def unwrap_envelope(data: bytes) -> Any:
    """The event (or list of events) inside kombu's Redis envelope; None if it is not one."""
    if len(data) > MAX_EVENT_BYTES:
        return None
    try:
        envelope = json.loads(data)
        body = envelope["body"]
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return json.loads(body)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RecursionError):
        return None


class RedisListener(Listener):
    """PSUBSCRIBE to a Redis broker's event channels."""

    def __init__(self, client: redis.Redis, pattern: str, on_event: Callable[[Any], None]) -> None:
        super().__init__(on_event)
        self.client = client
        self.pattern = pattern

    def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(self.pattern)
            self._listen_started, self.connected, self.error = True, True, None
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "pmessage" and isinstance(message.get("data"), bytes):
                    event = unwrap_envelope(message["data"])
                    if event is not None:
                        self._deliver(event)
        finally:
            self.connected = False
            try:
                pubsub.close()
            except Exception:
                pass


class AMQPListener(Listener):
    """An exclusive, auto-delete queue bound to ``celeryev`` with ``#``."""

    def __init__(self, rabbit: RabbitBackend, on_event: Callable[[Any], None]) -> None:
        super().__init__(on_event)
        self.rabbit = rabbit
        self.queue = f"celeryev.queuewatch-{uuid.uuid4().hex[:12]}"

    def _listen(self) -> None:
        with self.rabbit.connection() as conn:
            channel = conn.channel()
            # Passive: if no worker declared the exchange yet, there are no events to follow;
            # look again soon, for a worker that starts must show up within seconds.
            self.waiting_for_workers = 2.0
            channel.exchange_declare(EXCHANGE, passive=True)
            self.waiting_for_workers = 0.0
            channel.queue_declare(self.queue, exclusive=True, auto_delete=True,
                                  arguments={"x-message-ttl": 60_000, "x-max-length": 10_000})  # fmt: skip
            channel.queue_bind(self.queue, EXCHANGE, routing_key="#")
            channel.basic_consume(self.queue, self._on_message, auto_ack=True)
            self._listen_started, self.connected, self.error = True, True, None
            try:
                while not self._stop.is_set():
                    conn.process_data_events(time_limit=1.0)
            finally:
                self.connected = False

    def _on_message(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        if len(body) > MAX_EVENT_BYTES:
            return
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        self._deliver(event)
