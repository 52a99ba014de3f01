"""Webhook delivery: generic JSON and Slack-compatible ``{"text": ...}`` payloads.

``Notifier.send`` only queues: one background thread posts (urllib, a timeout
per request) and retries a failed delivery with exponential backoff, so the
sampler's tick never waits on a slow or dead receiver and one bad target does
not hold up the others. Whether to send at all (exactly once per transition,
across replicas) is decided before this, by a claim in the state store.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FORMATS = ("json", "slack")
TIMEOUT = 5.0
ATTEMPTS = 6  # 0, 1, 2, 4, 8, 16 s apart: about half a minute of retries
BACKOFF = 1.0


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str = "json"  # "json" | "slack"

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "format": self.format}


def parse_webhook(value: Any) -> Webhook:
    """A target from ``{"url", "format"}`` or from ``[json=|slack=]URL``. Raises ValueError."""
    if isinstance(value, dict):
        url, fmt = str(value.get("url") or "").strip(), str(value.get("format") or "").strip().lower()
    elif isinstance(value, str):
        fmt, sep, rest = value.strip().partition("=")
        url, fmt = (rest, fmt.lower()) if sep and fmt.lower() in FORMATS else (value.strip(), "")
    else:
        raise ValueError("a webhook is {\"url\": ..., \"format\": \"json\"|\"slack\"}")
    if not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
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

    def __init__(self, timeout: float = TIMEOUT, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
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
        """One attempt. Raises OSError (urllib's errors) or ValueError for a non-2xx answer."""
        request = urllib.request.Request(webhook.url, data=body(webhook, message), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "queuewatch"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 (operator-configured http(s) URL)
            if not 200 <= answer.status < 300:
                raise ValueError(f"answered {answer.status}")

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(None if not self._due else max(0.0, self._due[0][0] - time.monotonic()))
                _, _, delivery = heapq.heappop(self._due)
            try:
                self.post(delivery.webhook, delivery.message)
            except (OSError, ValueError) as exc:
                attempt = delivery.attempt + 1
                if attempt >= self.attempts:
                    self.failed += 1
                    log.warning("webhook %s gave up on %s after %d attempts: %s", delivery.webhook.url,
                                delivery.message.get("id"), attempt, exc)  # fmt: skip
                    continue
                delay = self.backoff * 2 ** (attempt - 1)
                log.info("webhook %s failed (%s); retry %d in %.0f s", delivery.webhook.url, exc, attempt, delay)
                with self._wake:
                    heapq.heappush(self._due, (time.monotonic() + delay, next(self._order),
                                               Delivery(delivery.webhook, delivery.message, attempt)))  # fmt: skip
            else:
                self.delivered += 1
