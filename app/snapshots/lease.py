"""When the sampler renews its lease and wakes up, and which interval a sample belongs to.

Pure timing rules (no I/O, no clock of their own) for ``sampler.Sampler``: the
holder renews at the start of every poll interval and the lease lives 1.5
intervals, so a replica waiting for it takes over within two intervals of the
holder's last renewal; a sample is stamped with its interval's start, so an
interval holds one sample however many processes sample.
"""

from __future__ import annotations


def lease_ttl(interval: float) -> float:
    """How long a sampler holds the lease without renewing it (it renews every interval).

    Under two intervals, so that a replica waiting for it to expire takes over
    within two intervals of the holder's last renewal.
    """
    return 1.5 * interval


def slot(t: int, interval_ms: int) -> int:
    """The start of the poll interval ``t`` falls in: a sample's time, so one interval holds one sample."""
    return t - t % interval_ms


def next_wakeup(now: float, interval: float, held: bool, expires_in: float | None) -> float:
    """Seconds until the sampler should look again: just after the next interval
    starts, or, for a replica waiting on someone else's lease, when it expires."""
    phase = min(0.05, interval * 0.02)  # a little past the boundary, so the slot is the new one
    until_slot = (phase - now % interval) % interval or interval
    if held or expires_in is None:
        return until_slot
    return max(0.01, min(until_slot, expires_in + 0.02))
