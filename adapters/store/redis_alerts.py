"""The alert part of the Redis state store (``AlertStore`` in app/state_alerts.py),
mixed into ``RedisStateStore``. Keys, under the store's prefix:

- ``alerts:rules`` and ``alerts:states`` — hashes, key → JSON;
- ``alerts:history`` — hash id → JSON entry, ordered by ``alerts:history:order``
  (a zset scored by start time) and trimmed to the newest entries;
- ``claim:ID`` — a notification claim: ``SET NX`` with a 30-day expiry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from queuewatch.adapters.redis_errors import redis_errors

CLAIM_SECONDS = 30 * 86400


class RedisAlertStore:
    """Needs ``client``, ``_key`` and ``_what`` from RedisStateStore."""

    def alert_rules(self) -> dict[str, str]:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            found = self.client.hgetall(self._key("alerts", "rules"))  # type: ignore[attr-defined]
        return {k.decode(): v.decode() for k, v in sorted(found.items())}

    def put_alert_rule(self, key: str, rule: str) -> None:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            self.client.hset(self._key("alerts", "rules"), key, rule)  # type: ignore[attr-defined]

    def delete_alert_rule(self, key: str) -> bool:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            return bool(self.client.hdel(self._key("alerts", "rules"), key))  # type: ignore[attr-defined]

    def alert_states(self) -> dict[str, str]:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            found = self.client.hgetall(self._key("alerts", "states"))  # type: ignore[attr-defined]
        return {k.decode(): v.decode() for k, v in found.items()}

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        key = self._key("alerts", "states")  # type: ignore[attr-defined]
        with redis_errors(self._what), self.client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
            if drop:
                pipe.hdel(key, *drop)
            if states:
                pipe.hset(key, mapping=dict(states))
            pipe.execute()

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        entries, order = self._key("alerts", "history"), self._key("alerts", "history", "order")  # type: ignore[attr-defined]
        with redis_errors(self._what):  # type: ignore[attr-defined]
            with self.client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                pipe.hset(entries, entry_id, entry)
                pipe.zadd(order, {entry_id: started})
                pipe.zrange(order, 0, -(keep + 1))
                old = pipe.execute()[-1]
            if old:
                with self.client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                    pipe.hdel(entries, *old)
                    pipe.zrem(order, *old)
                    pipe.execute()

    def alert_history(self, limit: int) -> list[str]:
        entries, order = self._key("alerts", "history"), self._key("alerts", "history", "order")  # type: ignore[attr-defined]
        with redis_errors(self._what):  # type: ignore[attr-defined]
            ids = self.client.zrevrange(order, 0, limit - 1)  # type: ignore[attr-defined]
            values = self.client.hmget(entries, ids) if ids else []  # type: ignore[attr-defined]
        return [v.decode() for v in values if v is not None]

    def claim(self, claim_id: str, holder: str) -> bool:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            return bool(self.client.set(self._key("claim", claim_id), holder, nx=True, ex=CLAIM_SECONDS))  # type: ignore[attr-defined]
