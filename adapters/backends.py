"""Connections to the monitored backends, and which job systems live on each.

A backend is one Redis database or one RabbitMQ vhost. It owns the client (one
connection pool shared by every adapter on it), maps the client library's
exceptions to ``BackendUnavailable`` at one boundary, and discovers which job
systems are present so the user never has to list them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pika
import pika.exceptions
import redis

from .base import Adapter, Option
from .connections import redact_url, redis_client
from .errors import BackendUnavailable, NotFound
from .redis_errors import redis_errors

log = logging.getLogger(__name__)

# Quiet pika: a RabbitMQ that is down is a state we show, not a log flood.
logging.getLogger("pika").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class System:
    """One job system, and where its adapter for each kind of backend lives
    ("package.module:Class" under queuewatch.adapters; None: not on that kind)."""

    name: str
    redis: str | None = None
    rabbitmq: str | None = None


# Every job system, once. Adding a system is adding its package and a line here;
# the app reads the names from this table (filters, the OpenAPI enum). On
# RabbitMQ "amqp" comes last: it shows the queues no other system claims.
SYSTEMS = (
    System("rq", redis="rq.adapter:RQAdapter"),
    System("celery", redis="celery.on_redis:CeleryRedisAdapter", rabbitmq="celery.on_rabbitmq:CeleryRabbitAdapter"),
    System("dramatiq", redis="dramatiq.on_redis:DramatiqRedisAdapter", rabbitmq="dramatiq.on_rabbitmq:DramatiqRabbitAdapter"),
    System("arq", redis="arq.adapter:ArqAdapter"),
    System("huey", redis="huey.adapter:HueyAdapter"),
    System("amqp", rabbitmq="rabbitmq.plain_queues:AMQPAdapter"),
)
SYSTEM_NAMES = tuple(system.name for system in SYSTEMS)


def _load(kind: str) -> tuple[type[Adapter], ...]:
    classes = []
    for system in SYSTEMS:
        path = getattr(system, kind)
        if path:
            module, _, name = path.partition(":")
            cls = getattr(importlib.import_module(f"{__package__}.{module}"), name)
            assert cls.system == system.name, f"{path} says it is {cls.system!r}, not {system.name!r}"
            classes.append(cls)
    return tuple(classes)


class Backend:
    """One Redis database or RabbitMQ vhost and the adapters that read it."""

    kind: ClassVar[str]
    label: ClassVar[str]
    adapter_classes: ClassVar[tuple[type[Adapter], ...]] = ()
    # Settings the constructor takes from the configuration (as adapters' ``options``).
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, *, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self._adapters: dict[str, Adapter] = {}
        self._present: set[str] = set()

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def probe(self) -> list[Adapter]:
        """Check the backend answers; return the adapters of the systems found on it."""
        raise NotImplementedError

    def adapter(self, system: str) -> Adapter:
        """The adapter for ``system`` on this backend. Raises NotFound."""
        if system not in self._adapters:
            for cls in self.adapter_classes:
                if cls.system == system:
                    self._adapters[system] = self._make(cls)
                    break
            else:
                raise NotFound(f"backend {self.name!r} has no system {system!r}")
        return self._adapters[system]

    def _make(self, cls: type[Adapter]) -> Adapter:
        raise NotImplementedError

    def notes(self) -> tuple[str, ...]:
        """What the operator should know about this backend (e.g. an API that is off)."""
        return ()

    def present(self) -> list[Adapter]:
        """The adapters probe() found last time, without touching the backend."""
        return [a for s, a in self._adapters.items() if s in self._present]

    def close(self) -> None:
        """Release connections and stop the adapters' listeners."""
        for adapter in self._adapters.values():
            adapter.close()


class KeySurvey:
    """One slow walk of a database's keys shared by every system's discovery.

    One SCAN step of ``count`` keys per snapshot, resuming where it stopped;
    after a full pass over a large database it rests ``rest_seconds`` before
    walking again (a small one fits in one step and is simply read each time).
    So finding systems by key pattern costs one small SCAN per snapshot at
    most, never a scan per system.
    """

    def __init__(self, count: int = 1000, rest_seconds: float = 300.0) -> None:
        self.count = count
        self.rest_seconds = rest_seconds
        self._cursor = 0
        self._steps = 0
        self._resting_until = 0.0

    def step(self, client: redis.Redis) -> list[bytes]:
        if time.monotonic() < self._resting_until:
            return []
        cursor, keys = client.scan(self._cursor, count=self.count)
        self._cursor, self._steps = int(cursor), self._steps + 1
        if self._cursor == 0:
            if self._steps > 1:
                self._resting_until = time.monotonic() + self.rest_seconds
            self._steps = 0
        return keys


class RedisBackend(Backend):
    kind = "redis"
    label = "Redis"
    adapter_classes = _load("redis")

    def __init__(self, *, name: str, url: str, client: redis.Redis | None = None, timeout: float = 3.0,
                 system_options: dict[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
        super().__init__(name=name, url=url)
        # Per system, keyword arguments for its adapter (and its detect()): {"dramatiq": {"namespace": "x"}}.
        self.system_options = system_options or {}
        # Every URL form of the CLI contract (TLS, ACL users, Sentinel): adapters/connections.py.
        self.client = client or redis_client(url, timeout=timeout, health_check_interval=30, max_connections=64)

        self._survey = KeySurvey()
        self._surveyed: set[str] = set()

    def _make(self, cls: type[Adapter]) -> Adapter:
        return cls(backend=self.name, client=self.client, **self.system_options.get(cls.system, {}))  # type: ignore[call-arg]

    def _detect(self, cls: type[Adapter]) -> bool:
        options = self.system_options.get(cls.system, {})
        accepted = inspect.signature(cls.detect).parameters  # type: ignore[attr-defined]
        return bool(cls.detect(self.client, **{k: v for k, v in options.items() if k in accepted}))  # type: ignore[attr-defined]

    def probe(self) -> list[Adapter]:
        with redis_errors(f"Redis {self.redacted_url}"):
            self.client.ping()
            found = {cls.system for cls in self.adapter_classes if self._detect(cls)}
            unseen = [cls for cls in self.adapter_classes if cls.system not in found | self._surveyed]
            if unseen:
                for key in self._survey.step(self.client):
                    self._surveyed.update(cls.system for cls in unseen if cls.recognizes(key))
        # A system once seen stays shown (with no queues, if its keys went away).
        self._present = found | self._surveyed
        return [self.adapter(cls.system) for cls in self.adapter_classes if cls.system in self._present]

    def close(self) -> None:
        super().close()
        self.client.close()


class RabbitBackend(Backend):
    """One RabbitMQ vhost: a short-lived AMQP connection per operation, the
    management API where it answers, and the queue names known without it.

    Without the management API nothing can list a vhost's queues, so the
    adapters work from ``queues`` and ``dead_letter_queues`` (configuration)
    and from the names they learn (``directory.learn``), counting them by passive declare.
    """

    kind = "rabbitmq"
    label = "RabbitMQ"
    adapter_classes = _load("rabbitmq")
    options = (Option("RABBITMQ_MANAGEMENT", "management_url", schemes=("http", "https")),
               Option("RABBITMQ_QUEUES", "queues", many=True), Option("RABBITMQ_DLQS", "dead_letter_queues", many=True))

    def __init__(self, *, name: str, url: str, timeout: float = 3.0, management_url: str | None = None,
                 queues: Iterable[str] = (), dead_letter_queues: Iterable[str] = (),
                 system_options: dict[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
        # Imported here so that this module's imports stay those of every backend.
        from queuewatch.adapters.rabbitmq.management import ManagementAPI, QueueDirectory

        super().__init__(name=name, url=url)
        self.system_options = system_options or {}
        self.timeout = timeout
        self.version: tuple[int, ...] | None = None  # the broker's, learned at each probe
        self.management = ManagementAPI.for_amqp_url(url, management_url, timeout=min(timeout, 2.0))
        self.directory = QueueDirectory(self.management, queues=queues, dead_letter_queues=dead_letter_queues)

    def parameters(self) -> pika.URLParameters:
        params = pika.URLParameters(self.url)
        params.socket_timeout = self.timeout
        params.blocked_connection_timeout = self.timeout
        params.stack_timeout = self.timeout
        params.connection_attempts = 1
        params.retry_delay = 0
        # A connection that stalls once open (nothing moves) is only noticed through
        # missed heartbeats: short ones end a stuck read in seconds, not minutes.
        params.heartbeat = max(2, int(2 * self.timeout))
        return params

    @contextlib.contextmanager
    def connection(self) -> Iterator[pika.BlockingConnection]:
        """A short-lived AMQP connection; pika connections are not thread-safe."""
        try:
            conn = pika.BlockingConnection(self.parameters())
        except Exception as exc:  # AMQPError, OSError, and pika's connector errors that are neither (a stalled handshake)
            raise BackendUnavailable(f"RabbitMQ {self.redacted_url} is unreachable: {_describe(exc)}") from exc
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def claimed_queues(self, names: Iterable[str], listing: list[Any] | None, but: str) -> set[str]:
        """The queues among ``names`` that a job system's adapter (other than ``but``) shows as its own."""
        claimed: set[str] = set()
        for cls in self.adapter_classes:
            claims = getattr(cls, "claims", None)
            if cls.system != but and claims is not None:
                claimed |= claims(list(names), listing)
        return claimed

    def notes(self) -> tuple[str, ...]:
        management = self.management
        if management.available is None:
            return ()
        if management.available:
            return (f"Management API on ({management.base_url}): queues are listed from it, with unacked counts, rates and consumers.",)
        return (
            f"{management.error}: working from AMQP alone. Only queues named in the configuration or learned from "
            "dead letters are shown; unacked counts, message rates, consumer connections and dead-letter "
            "arguments (x-dead-letter-exchange) are unavailable.",
        )

    def _make(self, cls: type[Adapter]) -> Adapter:
        return cls(backend=self.name, rabbit=self, **self.system_options.get(cls.system, {}))  # type: ignore[call-arg]

    def probe(self) -> list[Adapter]:
        from queuewatch.adapters.rabbitmq.amqp import server_version

        with self.connection() as conn:
            self.version = server_version(conn)
        self.directory.listing()  # one listing, shared by every adapter's detect()
        found = [cls for cls in self.adapter_classes if cls.detect(self)]  # type: ignore[attr-defined]
        self._present = {cls.system for cls in found}
        return [self.adapter(cls.system) for cls in found]


def _describe(exc: BaseException) -> str:
    """An exception as one short line, without what pika appends (socket tuples, passwords in URLs)."""
    text = str(exc).split("'", 1)[0].strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


BACKENDS: dict[str, type[Backend]] = {"redis": RedisBackend, "rabbitmq": RabbitBackend}


def connect(kind: str, *, name: str, url: str, **options: Any) -> Backend:
    """A backend of ``kind`` ("redis" or "rabbitmq") with its options (its own
    ``options``, and ``system_options``: each adapter's, by system). Connects
    lazily: never raises for a down server."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend kind {kind!r}")
    return BACKENDS[kind](name=name, url=url, **options)
