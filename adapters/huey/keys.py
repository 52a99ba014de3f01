"""Huey's key names on Redis, and the Huey instance a key belongs to.

Huey (``RedisStorage`` and its subclasses) names every key after the instance's
cleaned name ``N``: the queue ``huey.redis.N`` (a list; a sorted set for the
priority storages), the schedule ``huey.schedule.N`` (a sorted set), the result
store ``huey.results.N`` (a hash; ``RedisExpireHuey`` keeps one string per
entry instead, ``huey.r.N.<key>``) and counters ``huey.counters.N`` (or
``huey.c.N.<key>``). Inside the result store a task's id holds its return value
or its ``Error``; ``r:<id>`` revokes one task and ``rt:<module>.<task>`` every
task of that kind; locks, rate-limit windows and chord parts have other names.
"""

from __future__ import annotations

from collections.abc import Collection

QUEUE = "huey.redis."
SCHEDULE = "huey.schedule."
RESULTS = "huey.results."
COUNTERS = "huey.counters."
EXPIRE_RESULTS = "huey.r."  # RedisExpireHuey: huey.r.N.<key>
EXPIRE_COUNTERS = "huey.c."
DEFAULT_NAME = "huey"
SCAN_PATTERN = "huey.*"
_WHOLE_NAME = ((QUEUE, "queue"), (SCHEDULE, "schedule"), (RESULTS, "results"), (COUNTERS, "counters"))
_WITH_SUFFIX = ((EXPIRE_RESULTS, "expire"), (EXPIRE_COUNTERS, "expire-counter"))

REVOKE_PREFIX = "r:"  # one task, by id
REVOKE_ALL_PREFIX = "rt:"  # every task of one kind


def queue_key(name: str) -> str:
    return QUEUE + name


def schedule_key(name: str) -> str:
    return SCHEDULE + name


def results_key(name: str) -> str:
    return RESULTS + name


def expire_key(name: str, key: str) -> str:
    """Where a RedisExpireHuey keeps the result-store entry ``key``."""
    return f"{EXPIRE_RESULTS}{name}.{key}"


def recognizes(key: bytes) -> bool:
    """Whether a key is one Huey's Redis storage writes."""
    return key.startswith(b"huey.") and classify(key) is not None


def classify(key: bytes, known: Collection[str] = ()) -> tuple[str, str, str | None] | None:
    """(instance name, what the key is, the entry's key inside an expiring result store) of a
    Huey key, or None. Names are text (Huey writes str): a key that is not UTF-8 is not Huey's.

    ``huey.r.N.<key>`` is split at the first dot after ``N``: cleaned names have no dots, and
    a name with dots (``clean_name=False``) is matched against the ``known`` names first.
    """
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for prefix, what in _WHOLE_NAME:
        if text.startswith(prefix) and len(text) > len(prefix):
            return text[len(prefix) :], what, None
    for prefix, what in _WITH_SUFFIX:
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            dotted = [n for n in known if "." in n and rest.startswith(n + ".")]
            name, dot, entry = (max(dotted, key=len), ".", rest[len(max(dotted, key=len)) + 1 :]) if dotted else rest.partition(".")
            if name and dot and entry:
                return name, what, entry
    return None


def entry_kind(field: str) -> str:
    """What a result-store entry is: "revoke", "revoke-all", "other" (locks, rate limits, chord
    parts), or "task" (a task id: its return value or its Error)."""
    if field.startswith(REVOKE_PREFIX):
        return "revoke"
    if field.startswith(REVOKE_ALL_PREFIX):
        return "revoke-all"
    if field.startswith("chord:") or ".lock." in field or ".rl." in field:
        return "other"
    return "task"
