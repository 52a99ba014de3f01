"""The one boundary where redis-py's exceptions become ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from .errors import BackendUnavailable


@contextlib.contextmanager
def redis_errors(what: str = "Redis", kind: type[BackendUnavailable] = BackendUnavailable) -> Iterator[None]:
    """Map redis-py's exceptions (and socket errors) to BackendUnavailable (or ``kind``, a subclass)."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        # NOSCRIPT, WRONGTYPE, OOM...: the server answered, but not as asked.
        raise kind(f"{what} refused the command: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise kind(f"{what} is unreachable: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise kind(f"{what} is unreachable: {exc}") from exc
