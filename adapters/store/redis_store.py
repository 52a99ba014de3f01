"""The dashboard's own state store in Redis: what several replicas share.

Implements ``StateStore`` (``interface``) with redis-py. Every key sits under a prefix (``queuewatch:``) in the database
the ``--state`` URL names:

- ``queuewatch:settings`` — hash of settings (the session key, rollup marks);
- ``queuewatch:lease:NAME`` — the holder's id, with a TTL (SET PX; renewed and
  released by the Lua scripts next to this module, so only the holder can);
- ``queuewatch:series`` and ``queuewatch:tiers`` — sets naming what exists;
- ``queuewatch:audit`` — a stream of audit entries (field ``e``, JSON text),
  capped at about ``AUDIT_KEEP`` entries; the entry id is the cursor;
- ``queuewatch:h:TIER:SERIES`` — a stream per series and tier: entry id is the
  point's time in ms (so a time is stored once, in order), field ``v`` the
  encoded point. Streams keep ~100 entries per listpack node, which is what
  makes a year of points cheap in memory. XTRIM MINID needs Redis 6.2.

- ``alerts:rules`` and ``alerts:states`` — hashes, key → JSON;
- ``alerts:history`` — hash id → JSON entry, ordered by ``alerts:history:order``
  (a zset scored by start time) and trimmed to the newest entries;
- ``claim:ID`` — a notification claim: ``SET NX`` with a 30-day expiry.
- ``ops`` — hash id → JSON record, ordered by ``ops:order`` (a zset scored by
  creation time) and trimmed to the newest ``OPERATIONS_KEEP``;
- ``ops:ids:ID`` — hash chunk number → newline-separated job ids.

No Flask here; redis-py errors become ``BackendUnavailable`` at one boundary.
"""

from __future__ import annotations

import re
import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import redis

from queuewatch.adapters.connections import redact_url, redis_client
from queuewatch.adapters.errors import StoreUnavailable
from queuewatch.adapters.redis_errors import redis_errors

from .interface import AUDIT_KEEP, CLAIM_DAYS, OPERATIONS_KEEP, Point

CLAIM_SECONDS = CLAIM_DAYS * 86400
_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_SCRIPTS = {name: Path(__file__).with_name(f"{name}.lua").read_text() for name in ("lease", "release", "attempt")}


class RedisStateStore:
    """Settings, the sampler's lease and history in one Redis database."""

    def __init__(self, *, url: str | None = None, client: redis.Redis | None = None, prefix: str = "queuewatch:",
                 timeout: float = 3.0) -> None:  # fmt: skip
        if client is None:
            if url is None:
                raise ValueError("RedisStateStore needs a url or a client")
            client = redis_client(url, timeout=timeout, health_check_interval=30)  # every URL form: adapters/connections.py
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.prefix = prefix
        self.location = redact_url(url) if url else f"{client!r}"
        self._what = f"Redis state store {self.location}"
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
        self.notices: list[str] = []
        self.last_write_error: tuple[float, str] | None = None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """redis-py's errors as StoreUnavailable, the last one kept for the banner and /readyz."""
        try:
            with redis_errors(self._what, StoreUnavailable):
                yield
        except StoreUnavailable as exc:
            self.last_write_error = (time.time(), str(exc))
            raise

    def check(self) -> str | None:
        """Why the store cannot be written now, or None: a real write (for /readyz)."""
        try:
            self.put("readyz", str(time.time()))
        except StoreUnavailable as exc:
            return str(exc)
        return None

    # -- attempts (the login limiter) ---------------------------------------------

    def count_attempt(self, key: str, window: float) -> int:
        with self._guard():
            return int(self._scripts["attempt"](keys=[self._key("attempts", key)], args=[max(1, int(window * 1000))]))

    def attempts(self, key: str, window: float) -> tuple[int, float]:
        with self._guard(), self.client.pipeline(transaction=True) as pipe:
            pipe.get(self._key("attempts", key))
            pipe.pttl(self._key("attempts", key))
            count, left = pipe.execute()
        return (int(count), max(0.0, left / 1000)) if count is not None and left > 0 else (0, 0.0)

    def reset_attempts(self, key: str) -> None:
        with self._guard():
            self.client.delete(self._key("attempts", key))

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _stream(self, tier: str, series: str) -> str:
        return self._key("h", tier, series)

    # -- settings --------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._guard():
            value = self.client.hget(self._key("settings"), key)
        return None if value is None else value.decode()

    def put(self, key: str, value: str) -> None:
        with self._guard():
            self.client.hset(self._key("settings"), key, value)
        self.last_write_error = None

    def set_default(self, key: str, value: str) -> str:
        with self._guard(), self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._key("settings"), key, value)
            pipe.hget(self._key("settings"), key)
            _, stored = pipe.execute()
        return stored.decode()

    # -- lease -------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> tuple[str | None, float]:
        with self._guard():
            current, left_ms = self._scripts["lease"](keys=[self._key("lease", name)], args=[holder, max(1, int(ttl * 1000))])
        return current.decode(), max(0, int(left_ms)) / 1000

    def release_lease(self, name: str, holder: str) -> None:
        with self._guard():
            self._scripts["release"](keys=[self._key("lease", name)], args=[holder])

    def lease(self, name: str) -> tuple[str | None, float]:
        with self._guard(), self.client.pipeline(transaction=True) as pipe:
            pipe.get(self._key("lease", name))
            pipe.pttl(self._key("lease", name))
            holder, left_ms = pipe.execute()
        if holder is None or left_ms < 0:
            return None, 0.0
        return holder.decode(), left_ms / 1000

    # -- history -----------------------------------------------------------------

    def add_points(self, tier: str, points: Iterable[Point]) -> int:
        rows = sorted(points, key=lambda p: (p[0], p[1]))
        if not rows:
            return 0
        with self._guard(), self.client.pipeline(transaction=False) as pipe:
            pipe.sadd(self._key("tiers"), tier)
            pipe.sadd(self._key("series"), *{series for series, _, _ in rows})
            for series, t, payload in rows:
                # An id at or below the stream's newest is refused: a time is written once.
                pipe.xadd(self._stream(tier, series), {b"v": payload}, id=f"{t}-0")
            replies = pipe.execute(raise_on_error=False)
        for reply in replies[:2]:
            if isinstance(reply, Exception):
                with self._guard():
                    raise reply
        return sum(1 for reply in replies[2:] if not isinstance(reply, Exception))

    def points(self, tier: str, series: Sequence[str] | None, after: int, before: int) -> dict[str, list[tuple[int, bytes]]]:
        if before - after <= 1:
            return {}
        with self._guard():
            keys = sorted(self._all_series()) if series is None else list(series)
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xrange(self._stream(tier, key), min=str(max(0, after + 1)), max=str(before - 1))
                replies = pipe.execute()
        found = {}
        for key, entries in zip(keys, replies):
            if entries:
                found[key] = [(int(entry_id.split(b"-", 1)[0]), fields[b"v"]) for entry_id, fields in entries]
        return found

    def prune(self, tier: str, before: int) -> int:
        with self._guard():
            keys = sorted(self._all_series())
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xtrim(self._stream(tier, key), minid=str(max(0, before)), approximate=False)
                return sum(pipe.execute()) if keys else 0

    def series(self) -> list[str]:
        return sorted(key for key, count in self._counts().items() if count)

    def forget_empty_series(self) -> int:
        empty = [key for key, count in self._counts().items() if not count]
        if empty:
            with self._guard():
                streams = [self._stream(tier, key) for key in empty for tier in self._tiers()]
                with self.client.pipeline(transaction=False) as pipe:
                    if streams:
                        pipe.delete(*streams)
                    pipe.srem(self._key("series"), *empty)
                    pipe.execute()
        return len(empty)

    def _all_series(self) -> set[str]:
        return {member.decode() for member in self.client.smembers(self._key("series"))}

    def _tiers(self) -> list[str]:
        return sorted(member.decode() for member in self.client.smembers(self._key("tiers")))

    def _counts(self) -> dict[str, int]:
        """Points per series over every tier."""
        with self._guard():
            keys, tiers = sorted(self._all_series()), self._tiers()
            if not keys or not tiers:
                return {key: 0 for key in keys}
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    for tier in tiers:
                        pipe.xlen(self._stream(tier, key))
                lengths = pipe.execute()
        return {key: sum(lengths[i * len(tiers) : (i + 1) * len(tiers)]) for i, key in enumerate(keys)}

    # -- audit -----------------------------------------------------------------

    def add_audit(self, entry: str) -> str:
        with self._guard():
            entry_id = self.client.xadd(self._key("audit"), {b"e": entry.encode()}, maxlen=AUDIT_KEEP, approximate=True)
        return entry_id.decode()

    def audit(self, limit: int, before: str | None = None) -> list[tuple[str, str]]:
        if before is not None and not _STREAM_ID.match(before):
            raise ValueError(f"not an audit cursor: {before!r}")
        with self._guard():
            rows = self.client.xrevrange(self._key("audit"), max=f"({before}" if before else "+", min="-", count=limit)
        return [(entry_id.decode(), fields[b"e"].decode()) for entry_id, fields in rows]

    # -- alerts ------------------------------------------------------------------

    def alert_rules(self) -> dict[str, str]:
        with self._guard():
            found = self.client.hgetall(self._key("alerts", "rules"))
        return {k.decode(): v.decode() for k, v in sorted(found.items())}

    def put_alert_rule(self, key: str, rule: str) -> None:
        with self._guard():
            self.client.hset(self._key("alerts", "rules"), key, rule)

    def delete_alert_rule(self, key: str) -> bool:
        with self._guard():
            return bool(self.client.hdel(self._key("alerts", "rules"), key))

    def alert_states(self) -> dict[str, str]:
        with self._guard():
            found = self.client.hgetall(self._key("alerts", "states"))
        return {k.decode(): v.decode() for k, v in found.items()}

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        key = self._key("alerts", "states")
        with self._guard(), self.client.pipeline(transaction=True) as pipe:
            if drop:
                pipe.hdel(key, *drop)
            if states:
                pipe.hset(key, mapping=dict(states))
            pipe.execute()

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        entries, order = self._key("alerts", "history"), self._key("alerts", "history", "order")
        with self._guard():
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(entries, entry_id, entry)
                pipe.zadd(order, {entry_id: started})
                pipe.zrange(order, 0, -(keep + 1))
                old = pipe.execute()[-1]
            if old:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.hdel(entries, *old)
                    pipe.zrem(order, *old)
                    pipe.execute()

    def alert_history(self, limit: int) -> list[str]:
        entries, order = self._key("alerts", "history"), self._key("alerts", "history", "order")
        with self._guard():
            ids = self.client.zrevrange(order, 0, limit - 1)
            values = self.client.hmget(entries, ids) if ids else []
        return [v.decode() for v in values if v is not None]

    def claim(self, claim_id: str, holder: str) -> bool:
        with self._guard():
            return bool(self.client.set(self._key("claim", claim_id), holder, nx=True, ex=CLAIM_SECONDS))

    # -- bulk operations ---------------------------------------------------------

    def put_operation(self, op_id: str, created: float, record: str) -> None:
        records, order = self._key("ops"), self._key("ops", "order")
        with self._guard():
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(records, op_id, record)
                pipe.zadd(order, {op_id: created})
                pipe.zrange(order, 0, -(OPERATIONS_KEEP + 1))
                old = [i.decode() for i in pipe.execute()[-1]]
            if old:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.hdel(records, *old)
                    pipe.zrem(order, *old)
                    pipe.delete(*(self._key("ops", "ids", i) for i in old))
                    pipe.execute()

    def operation(self, op_id: str) -> str | None:
        with self._guard():
            value = self.client.hget(self._key("ops"), op_id)
        return None if value is None else value.decode()

    def operations(self, limit: int) -> list[str]:
        with self._guard():
            ids = self.client.zrevrange(self._key("ops", "order"), 0, limit - 1)
            values = self.client.hmget(self._key("ops"), ids) if ids else []
        return [v.decode() for v in values if v is not None]

    def put_operation_ids(self, op_id: str, n: int, ids: str) -> None:
        with self._guard():
            self.client.hset(self._key("ops", "ids", op_id), str(n), ids)

    def operation_ids(self, op_id: str, n: int) -> str | None:
        with self._guard():
            value = self.client.hget(self._key("ops", "ids", op_id), str(n))
        return None if value is None else value.decode()

    def drop_operation_ids(self, op_id: str) -> None:
        with self._guard():
            self.client.delete(self._key("ops", "ids", op_id))

    def memory_bytes(self) -> int:
        """Memory the history keys take in Redis (MEMORY USAGE; for the docs and tests)."""
        with self._guard():
            keys = [self._stream(tier, key) for key in self._all_series() for tier in self._tiers()]
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.memory_usage(key, samples=0)
                return sum(v or 0 for v in pipe.execute())

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
