"""Huey and per-function metrics: not measurable.

Huey keeps a task's message only until a consumer takes it, and its result (if any)
without any time: no enqueue, start or end time is stored anywhere in Redis, and its
signals live inside the consumer process. So ``timings`` says so (Unsupported)."""

from __future__ import annotations

from typing import ClassVar


class HueyTimings:
    """The ``timings`` note of HueyAdapter (mixed into its class): the contract's default raises it."""

    timings_measure: ClassVar[frozenset[str]] = frozenset()
    timings_note: ClassVar[str | None] = ("not measurable: Huey stores no enqueue, start or end time of a task (its results "
                                          "hold only the value), so no processed count, runtime or wait can be read")  # fmt: skip
