"""The RabbitMQ management HTTP API, for one vhost: queue listings (names, types,
arguments, unacked counts, rates), consumers, bindings and exchanges.

urllib with short timeouts; ``None`` instead of an exception when the API does
not answer, and then not asked again for a while (``ManagementAPI``). The
``QueueDirectory`` shares one listing among the adapters of a snapshot and
remembers the names of queues for when the API is off.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671  # RabbitMQ's management listener over TLS, for amqps:// brokers
QUEUE_COLUMNS = (
    "name,type,arguments,messages_ready,messages_unacknowledged,consumers,"
    "message_stats.publish_details.rate,message_stats.deliver_get_details.rate,message_stats.ack_details.rate"
)


class ManagementAPI:
    """The RabbitMQ management API for one vhost, or the knowledge that it is off.

    Every read answers ``None`` when the API does not answer (plugin off,
    refused, timed out, nonsense), and remembers why in ``error``; after a
    failure it is not asked again for ``retry_after`` seconds, so a dashboard
    whose broker has the plugin off does not pay a timeout per snapshot.
    """

    def __init__(self, base_url: str, *, username: str, password: str, vhost: str,
                 timeout: float = 2.0, retry_after: float = 15.0) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/") + "/"
        self.vhost = vhost
        self.timeout = timeout
        self.retry_after = retry_after
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.available: bool | None = None  # None until first asked
        self.error: str | None = None
        self._failed_at = 0.0

    @classmethod
    def for_amqp_url(cls, amqp_url: str, management_url: str | None = None, **kwargs: Any) -> ManagementAPI:
        """``http://<amqp host>:15672/`` (``https://…:15671/`` for ``amqps://``) with the AMQP URL's
        credentials and vhost, unless told otherwise. HTTPS checks the certificate with the system's
        trust store (``SSL_CERT_FILE`` names another)."""
        amqp = urlsplit(amqp_url)
        username = unquote(amqp.username) if amqp.username is not None else "guest"
        password = unquote(amqp.password) if amqp.password is not None else "guest"
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        if management_url:
            given = urlsplit(management_url)
            if given.username is not None:
                username, password = unquote(given.username), unquote(given.password or "")
            netloc = given.hostname or "localhost"
            netloc = f"[{netloc}]" if ":" in netloc else netloc
            base = f"{given.scheme or 'http'}://{netloc}{f':{given.port}' if given.port else ''}{given.path or '/'}"
        else:
            host = amqp.hostname or "localhost"
            scheme, port = ("https", MANAGEMENT_TLS_PORT) if amqp.scheme == "amqps" else ("http", MANAGEMENT_PORT)
            base = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"
        return cls(base, username=username, password=password, vhost=vhost, **kwargs)

    def get(self, path: str) -> Any | None:
        """GET ``api/<path>`` as JSON, or None (and ``error`` says why)."""
        if self.available is False and time.monotonic() - self._failed_at < self.retry_after:
            return None
        request = urllib.request.Request(self.base_url + "api/" + path, headers={"Authorization": self._auth})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                value = json.load(answer)
        except urllib.error.HTTPError as exc:
            exc.close()
            return self._down(f"answered HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError) as exc:
            return self._down(f"is not answering ({getattr(exc, 'reason', exc)})")
        except ValueError as exc:  # not JSON: something else listens on that port
            return self._down(f"answered something that is not JSON ({exc})")
        self.available, self.error = True, None
        return value

    def _down(self, why: str) -> None:
        self.available, self.error, self._failed_at = False, f"The management API at {self.base_url} {why}", time.monotonic()
        return None

    def _vhost_path(self, what: str, query: str = "") -> str:
        return f"{what}/{quote(self.vhost, safe='')}{query}"

    def queues(self) -> list[QueueInfo] | None:
        listing = self.get(self._vhost_path("queues", f"?columns={QUEUE_COLUMNS}"))
        return None if not isinstance(listing, list) else [QueueInfo.from_api(q) for q in listing if isinstance(q, dict)]

    def consumers(self) -> list[dict[str, Any]] | None:
        listing = self.get(self._vhost_path("consumers"))
        return listing if isinstance(listing, list) else None

    def bindings(self) -> list[dict[str, Any]] | None:
        listing = self.get(self._vhost_path("bindings"))
        return listing if isinstance(listing, list) else None

    def exchanges(self) -> dict[str, str] | None:
        """Exchange name -> type ("direct", "fanout", "topic", "headers"...)."""
        listing = self.get(self._vhost_path("exchanges", "?columns=name,type"))
        return None if not isinstance(listing, list) else {e.get("name", ""): e.get("type", "") for e in listing}


class QueueDirectory:
    """What is known about one vhost's queues, shared by the adapters on it.

    The management listing is kept for ``max_age`` seconds so the adapters of
    one snapshot share one HTTP call; names come from configuration and from
    what adapters learn (``learn``), for when the management API is off.
    """

    def __init__(self, management: ManagementAPI, *, queues: Iterable[str] = (),
                 dead_letter_queues: Iterable[str] = (), max_age: float = 1.0) -> None:  # fmt: skip
        self.management = management
        self.dead_letter_queues = frozenset(dead_letter_queues)
        self.max_age = max_age
        self._known: dict[str, None] = dict.fromkeys([*queues, *sorted(self.dead_letter_queues)])
        self._listing: tuple[float, list[QueueInfo] | None] = (float("-inf"), None)
        self._guard = threading.Lock()

    def listing(self) -> list[QueueInfo] | None:
        """Every queue of the vhost from the management API, or None when it is off."""
        with self._guard:
            taken_at, listing = self._listing
            if time.monotonic() - taken_at < self.max_age:
                return listing
        listing = self.management.queues()
        with self._guard:
            self._listing = (time.monotonic(), listing)
            if listing is not None:
                # Remembered, so a management API that stops answering leaves the
                # queues listed (counted by passive declare) rather than gone.
                self._known.update(dict.fromkeys(q.name for q in listing))
        return listing

    def changed(self) -> None:
        """Forget the listing after a move, so the next read counts afresh."""
        with self._guard:
            self._listing = (float("-inf"), None)

    def learn(self, names: Iterable[str]) -> None:
        """Remember queue names an adapter came across (x-death headers, its own queues)."""
        with self._guard:
            self._known.update(dict.fromkeys(n for n in names if n))

    def known(self) -> list[str]:
        """Names from the configuration and learned, for when nothing can list the vhost."""
        with self._guard:
            return list(self._known)


@dataclass(frozen=True)
class QueueInfo:
    """What the management API says about one queue (its counts lag by a few seconds)."""

    name: str
    type: str | None = None  # "classic" | "quorum" | "stream"
    arguments: Mapping[str, Any] = field(default_factory=dict)
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    rates: Mapping[str, float] = field(default_factory=dict)  # per second: published, delivered, acked

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> QueueInfo:
        stats = raw.get("message_stats") or {}
        rates = {}
        for label, key in (("published", "publish_details"), ("delivered", "deliver_get_details"), ("acked", "ack_details")):
            rate = (stats.get(key) or {}).get("rate")
            if isinstance(rate, (int, float)):
                rates[label] = float(rate)
        return cls(
            name=str(raw.get("name", "")),
            type=raw.get("type"),
            arguments=raw.get("arguments") or {},
            ready=_int(raw.get("messages_ready")),
            unacked=_int(raw.get("messages_unacknowledged")),
            consumers=_int(raw.get("consumers")),
            rates=rates,
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rate_details(info: QueueInfo | None) -> tuple[tuple[str, int | None], ...]:
    """Rates as whole messages per minute, for QueueStats.details."""
    if info is None:
        return ()
    return tuple((f"{label}/min", round(rate * 60)) for label, rate in info.rates.items())


def consumer_connections(consumers: Iterable[dict[str, Any]], queues: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Consumers grouped by connection: {connection name: {"host": peer host, "queues": set}}.

    ``queues`` maps the queue names of interest to the name shown (e.g. a
    Dramatiq "Q.DQ" to "Q"); consumers of other queues are left out.
    """
    found: dict[str, dict[str, Any]] = {}
    for consumer in consumers:
        queue = (consumer.get("queue") or {}).get("name")
        if queue not in queues:
            continue
        channel = consumer.get("channel_details") or {}
        name = channel.get("connection_name") or channel.get("name") or "?"
        found.setdefault(name, {"host": channel.get("peer_host"), "queues": set()})["queues"].add(queues[queue])
    return found


