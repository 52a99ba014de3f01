"""Webhook delivery: generic JSON and Slack-compatible ``{"text": ...}`` payloads.

``Notifier.send`` only queues: one background thread posts (urllib, a timeout
per request) and retries a failed delivery with exponential backoff, so the
sampler's tick never waits on a slow or dead receiver and one bad target does
not hold up the others. Whatever one delivery raises, the thread goes on: a
malformed target cannot silence the others. Whether to send at all (exactly
once per transition, across replicas) is decided before this, by a claim in
the state store.

Targets are checked when saved (``parse_webhook``: http(s), a host, no spaces
or control characters) and again before each delivery (``target_problem``): a
target that resolves to a link-local or cloud-metadata address, or to this
dashboard itself, is refused unless ``--webhook-allow-internal``. Errors are
told in words ("timed out", "refused"), not as the raw socket error, which
would map what listens where.
"""

from __future__ import annotations

import hashlib
import heapq
import http.client
import ipaddress
import itertools
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

FORMATS = ("json", "slack")
# No redirects: a receiver that answers 3xx could send the delivery (and its alert) anywhere.
_OPENER = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
    "redirect_request": lambda self, *args, **kwargs: None}))  # fmt: skip
TIMEOUT = 5.0
ATTEMPTS = 6  # 0, 1, 2, 4, 8, 16 s apart: about half a minute of retries
BACKOFF = 1.0


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str = "json"  # "json" | "slack"

    @property
    def shown(self) -> str:
        """The URL as pages, logs and the API show it: a webhook's path and query are its secret
        (Slack's ``/services/T…/B…/token``), so only the origin shows, with a fingerprint that
        tells two targets apart: ``https://hooks.slack.com/…#3f9a1c``."""
        return shown_url(self.url)

    def to_json(self) -> dict[str, str]:
        """Stored form: the whole URL (never served: the API answers ``shown_json``)."""
        return {"url": self.url, "format": self.format}

    def shown_json(self) -> dict[str, str]:
        return {"url": self.shown, "format": self.format}


def shown_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return f"{origin}/…#{hashlib.sha256(url.encode()).hexdigest()[:6]}"


def keep_or_parse(value: Any, existing: Iterable[Webhook]) -> Webhook:
    """A target from a form line or an API item; the shown form of a target already kept
    (as the page and the API show it) keeps that target, so editing never needs the secret."""
    if isinstance(value, dict):
        shown, fmt = str(value.get("url") or "").strip(), str(value.get("format") or "").strip().lower()
    elif isinstance(value, str):
        fmt, sep, shown = value.strip().partition("=")
        shown, fmt = (shown, fmt.lower()) if sep and fmt.lower() in FORMATS else (value.strip(), "")
    else:
        shown, fmt = "", ""
    for webhook in existing:
        if shown == webhook.shown and fmt in ("", webhook.format):
            return webhook
    if "/…#" in shown:
        raise ValueError(f"{shown} is the shown form of a target that is no longer kept: give its whole URL")
    return parse_webhook(value)


METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data"})


class DeliveryError(Exception):
    """A delivery that did not succeed, said in words fit for the page."""


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise ValueError(f"webhook URL {url[:100]!r} must start with http:// or https://")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"webhook URL {url[:100]!r} has spaces or control characters: percent-encode them")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError as exc:
        raise ValueError(f"webhook URL {url[:100]!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"webhook URL {url[:100]!r} names no host")


def target_problem(url: str, own: Iterable[tuple[str, int]] = (), allow_internal: bool = False) -> str | None:
    """Why a delivery to ``url`` must not be made, or None: a link-local or metadata address,
    or this dashboard itself (``own``: its (host, port) pairs). Resolves the name."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if allow_internal:
        return None
    if host in METADATA_NAMES:
        return "it names a cloud metadata service"
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # not resolvable now: the delivery will say so
    own_pairs = {(h.lower(), p) for h, p in own}
    for *_, address in infos:
        ip = ipaddress.ip_address(address[0].split("%")[0])
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            return "it resolves to a link-local, multicast or unspecified address (cloud metadata lives there)"
        if (ip.is_loopback or host in {h for h, _ in own_pairs}) and any(p == port for _, p in own_pairs):
            return "it points back at this dashboard"
    return None


def describe_failure(exc: BaseException) -> str:
    """A delivery error in words, without addresses, ports or errno detail."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"answered HTTP {exc.code}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "refused: nothing accepts connections there"
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(reason, ssl.SSLError):
        return "TLS failed (certificate not trusted, or not TLS)"
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, (http.client.HTTPException, ValueError)):
        return "answered something that is not HTTP"
    return "could not connect"


def parse_webhook(value: Any) -> Webhook:
    """A target from ``{"url", "format"}`` or from ``[json=|slack=]URL``. Raises ValueError."""
    if isinstance(value, dict):
        url, fmt = str(value.get("url") or "").strip(), str(value.get("format") or "").strip().lower()
    elif isinstance(value, str):
        fmt, sep, rest = value.strip().partition("=")
        url, fmt = (rest, fmt.lower()) if sep and fmt.lower() in FORMATS else (value.strip(), "")
    else:
        raise ValueError("a webhook is {\"url\": ..., \"format\": \"json\"|\"slack\"}")
    _check_url(url)
    if not fmt:
        fmt = "slack" if "hooks.slack.com/" in url else "json"
    if fmt not in FORMATS:
        raise ValueError(f"webhook format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return Webhook(url, fmt)


def body(webhook: Webhook, message: dict[str, Any]) -> bytes:
    """What is posted: the message itself (JSON), or Slack's ``{"text": ...}``."""
    if webhook.format == "slack":
        return json.dumps({"text": message["text"]}).encode()
    return json.dumps(message).encode()


@dataclass(frozen=True)
class Delivery:
    webhook: Webhook
    message: dict[str, Any]
    attempt: int = 0


class Notifier:
    """A queue of deliveries, posted and retried by one background thread."""

    def __init__(self, timeout: float = TIMEOUT, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 own: Callable[[], Iterable[tuple[str, int]]] = lambda: (), allow_internal: bool = False) -> None:  # fmt: skip
        self.own = own  # this dashboard's (host, port) pairs: never a target
        self.allow_internal = allow_internal
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._due: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0

    def send(self, webhooks: list[Webhook], message: dict[str, Any]) -> None:
        """Queue ``message`` for every target; returns at once."""
        with self._wake:
            for webhook in webhooks:
                heapq.heappush(self._due, (time.monotonic(), next(self._order), Delivery(webhook, message)))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qw-notify", daemon=True)
                self._thread.start()
            self._wake.notify()

    def pending(self) -> int:
        with self._wake:
            return len(self._due)

    def post(self, webhook: Webhook, message: dict[str, Any]) -> None:
        """One attempt. Raises DeliveryError, in words, whatever went wrong."""
        problem = target_problem(webhook.url, self.own(), self.allow_internal)
        if problem:
            raise DeliveryError(f"refused: {problem} (--webhook-allow-internal allows it)")
        try:
            request = urllib.request.Request(webhook.url, data=body(webhook, message), method="POST",
                                             headers={"Content-Type": "application/json", "User-Agent": "queuewatch"})  # fmt: skip
            with _OPENER.open(request, timeout=self.timeout) as answer:
                if not 200 <= answer.status < 300:
                    raise DeliveryError(f"answered HTTP {answer.status}")
        except DeliveryError:
            raise
        except Exception as exc:  # urllib's errors, InvalidURL, http.client's, anything: said in words
            raise DeliveryError(describe_failure(exc)) from exc

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(None if not self._due else max(0.0, self._due[0][0] - time.monotonic()))
                _, _, delivery = heapq.heappop(self._due)
            try:
                self._deliver(delivery)
            except Exception:  # never let the sender die: the other targets' alerts depend on it
                log.exception("webhook delivery to %s failed unexpectedly", delivery.webhook.shown)

    def _deliver(self, delivery: Delivery) -> None:
        try:
            self.post(delivery.webhook, delivery.message)
        except Exception as exc:  # DeliveryError, or anything unforeseen: retried like any failure
            if not isinstance(exc, DeliveryError):
                log.exception("webhook delivery to %s raised", delivery.webhook.shown)
            attempt = delivery.attempt + 1
            if attempt >= self.attempts:
                self.failed += 1
                log.warning("webhook %s gave up on %s after %d attempts: %s", delivery.webhook.shown,
                            delivery.message.get("id"), attempt, exc)  # fmt: skip
                return
            delay = self.backoff * 2 ** (attempt - 1)
            log.info("webhook %s failed (%s); retry %d in %.0f s", delivery.webhook.shown, exc, attempt, delay)
            with self._wake:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._order),
                                           Delivery(delivery.webhook, delivery.message, attempt)))  # fmt: skip
        else:
            self.delivered += 1
