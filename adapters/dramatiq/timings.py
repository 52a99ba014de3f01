"""Dramatiq and per-function metrics: what its messages and dead letters allow.

Dramatiq removes a message when it is acked and keeps no result, so nothing says when
a job ran, how long it took or that it succeeded. A message that failed for good is
dead-lettered with its ``message_timestamp`` (when it was enqueued) and, on Redis, the
time it died (the XQ score); that is a failure count per actor, without a runtime.
Counting those needs the dead-letter zset followed by score like RQ's registries; not
done yet: ``timings`` says what is not measurable (Unsupported)."""

from __future__ import annotations

from typing import ClassVar


class DramatiqTimings:
    """The ``timings`` note of the Dramatiq adapters (mixed into their classes)."""

    timings_measure: ClassVar[frozenset[str]] = frozenset()
    timings_note: ClassVar[str | None] = ("not measurable: Dramatiq deletes a message when it is acked and records no start, "
                                          "end or success, so processed jobs, runtimes and waits cannot be read; only dead "
                                          "letters say that a job failed")  # fmt: skip
