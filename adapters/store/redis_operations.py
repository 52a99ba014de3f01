"""The bulk-operation part of the Redis state store (``OpStore`` in
app/state_ops.py), mixed into ``RedisStateStore``. Keys, under the store's prefix:

- ``ops`` — hash id → JSON record, ordered by ``ops:order`` (a zset scored by
  creation time) and trimmed to the newest ``OPS_KEEP``;
- ``ops:ids:ID`` — hash chunk number → newline-separated job ids.
"""

from __future__ import annotations

from queuewatch.adapters.redis_errors import redis_errors

OPS_KEEP = 200


class RedisOpStore:
    """Needs ``client``, ``_key`` and ``_what`` from RedisStateStore."""

    def put_op(self, op_id: str, created: float, record: str) -> None:
        records, order = self._key("ops"), self._key("ops", "order")  # type: ignore[attr-defined]
        with redis_errors(self._what):  # type: ignore[attr-defined]
            with self.client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                pipe.hset(records, op_id, record)
                pipe.zadd(order, {op_id: created})
                pipe.zrange(order, 0, -(OPS_KEEP + 1))
                old = [i.decode() for i in pipe.execute()[-1]]
            if old:
                with self.client.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                    pipe.hdel(records, *old)
                    pipe.zrem(order, *old)
                    pipe.delete(*(self._key("ops", "ids", i) for i in old))  # type: ignore[attr-defined]
                    pipe.execute()

    def op(self, op_id: str) -> str | None:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            value = self.client.hget(self._key("ops"), op_id)  # type: ignore[attr-defined]
        return None if value is None else value.decode()

    def ops(self, limit: int) -> list[str]:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            ids = self.client.zrevrange(self._key("ops", "order"), 0, limit - 1)  # type: ignore[attr-defined]
            values = self.client.hmget(self._key("ops"), ids) if ids else []  # type: ignore[attr-defined]
        return [v.decode() for v in values if v is not None]

    def put_op_ids(self, op_id: str, n: int, ids: str) -> None:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            self.client.hset(self._key("ops", "ids", op_id), str(n), ids)  # type: ignore[attr-defined]

    def op_ids(self, op_id: str, n: int) -> str | None:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            value = self.client.hget(self._key("ops", "ids", op_id), str(n))  # type: ignore[attr-defined]
        return None if value is None else value.decode()

    def drop_op_ids(self, op_id: str) -> None:
        with redis_errors(self._what):  # type: ignore[attr-defined]
            self.client.delete(self._key("ops", "ids", op_id))  # type: ignore[attr-defined]
