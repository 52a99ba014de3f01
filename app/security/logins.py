"""Login attempts, limited where a guesser would be, not where a crowd is.

Each attempt is counted before its password is checked, atomically, in the
state store (so forty concurrent guesses get five checks, and ``--workers N`` or
replicas do not multiply the allowance): five per (client address, user name)
and twenty per user name from anywhere, in a five-minute window that starts at
the first. So a guesser is stopped, another user at the same address (an
office behind one NAT, every client behind a proxy) is not, and a user can be
locked out for five minutes only by twenty wrong guesses at their name.

Behind a trusted proxy the client address is the right-most ``X-Forwarded-For``
hop that is not a proxy. If the store cannot be written, attempts are counted
in this process instead (so a store outage does not open the door).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection

from flask import request

from queuewatch.adapters.errors import StoreUnavailable

PER_ADDRESS_AND_USER = 5
PER_USER = 20
WINDOW = 300.0


def client_address(proxies: Collection[str]) -> str:
    """The client's address: the peer's, or behind a trusted proxy the last hop it added."""
    peer = request.remote_addr or "?"
    if peer in proxies:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in proxies:
                return hop[:64]
    return peer


class LoginLimiter:
    def __init__(self, store, window: float = WINDOW) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.window = window
        self._local: dict[str, tuple[int, float]] = {}  # key -> (count, since), when the store fails
        self._lock = threading.Lock()

    def _keys(self, address: str, name: str) -> list[tuple[str, int]]:
        user = name.lower()[:200]
        return [(f"login:{address}:{user}", PER_ADDRESS_AND_USER), (f"login-user:{user}", PER_USER)]

    def reserve(self, address: str, name: str) -> int:
        """Count this attempt. 0: it may check the password; else the seconds to wait."""
        wait = 0.0
        for key, limit in self._keys(address, name):
            count, left = self._count(key)
            if count > limit:
                wait = max(wait, left)
        return math.ceil(wait) if wait else 0

    def succeeded(self, address: str, name: str) -> None:
        for key, _ in self._keys(address, name):
            try:
                self.store.reset_attempts(key)
            except StoreUnavailable:
                pass
            with self._lock:
                self._local.pop(key, None)

    def _count(self, key: str) -> tuple[int, float]:
        try:
            count = self.store.count_attempt(key, self.window)
            return count, max(1.0, self.store.attempts(key, self.window)[1])
        except StoreUnavailable:
            now = time.monotonic()
            with self._lock:
                count, since = self._local.get(key, (0, now))
                if now - since >= self.window:
                    count, since = 0, now
                self._local[key] = (count + 1, since)
                return count + 1, since + self.window - now
