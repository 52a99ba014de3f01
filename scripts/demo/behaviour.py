"""What a demo job does, the same for every job system: mostly quick success,
some slow jobs, and failures of several causes (each with its own message
shape, so the dashboard's grouping by cause has something to group).

``KINDS`` is the mix the traffic draws from; ``behave(kind, n)`` runs one.
"""

from __future__ import annotations

import asyncio
import random
import time

# 20 quick, 2 slow, 4 failures of different causes: about one job in seven fails.
KINDS = ("ok",) * 20 + ("slow",) * 2 + ("declined", "missing", "timeout", "refused")
SLOW_SECONDS = (3.0, 8.0)  # short enough for a worker's warm shutdown to finish them


def pick(rng: random.Random) -> str:
    return rng.choice(KINDS)


def seconds(kind: str) -> float:
    return random.uniform(*SLOW_SECONDS) if kind == "slow" else random.uniform(0.05, 0.3)


def outcome(kind: str, n: int) -> str:
    """Raise the failure of ``kind``, or say what was done."""
    if kind == "declined":
        raise ValueError(f"card declined for customer c-{n % 97}: insufficient funds")
    if kind == "missing":
        raise KeyError(f"user-{n % 50}")
    if kind == "timeout":
        raise TimeoutError(f"upstream API timed out after 30 s (request {n})")
    if kind == "refused":
        raise ConnectionError("SMTP server mail.example.com:587 refused the connection")
    return f"job {n} done ({kind})"


def behave(kind: str, n: int) -> str:
    time.sleep(seconds(kind))
    return outcome(kind, n)


async def behave_async(kind: str, n: int) -> str:
    await asyncio.sleep(seconds(kind))
    return outcome(kind, n)
