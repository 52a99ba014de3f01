"""The dashboard's own store: one interface, ``StateStore``, for what queuewatch
keeps for itself (settings and the session key, the sampler's lease, history
points, the audit log, alert rules and states, bulk operations).

Values are opaque here: history points are bytes (``snapshots.history``
makes them), records are JSON text (the app's services make them). Times are
positive integer milliseconds for history, unix seconds elsewhere. Every
implementation passes the one contract test, tests/test_state_store.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

Point = tuple[str, int, bytes]  # (series, t in ms, payload)

AUDIT_KEEP = 100_000  # audit entries kept; the oldest go first
CLAIM_DAYS = 30  # a notification claim is kept this long: longer than any alert is retried
OPERATIONS_KEEP = 200  # bulk-operation records kept; the oldest go first, with their ids


@runtime_checkable
class StateStore(Protocol):
    """What the dashboard keeps for itself."""

    location: str  # where, for logs (no password)

    # -- settings ------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """A setting, or None."""

    def put(self, key: str, value: str) -> None:
        """Store a setting."""

    def set_default(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return what is stored (race-free)."""

    # -- leases (the sampler's, and each bulk operation's) -----------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> tuple[str | None, float]:
        """Take or renew the lease if it is free, expired or ours, atomically.
        Returns (holder, seconds left) after the attempt: we hold it if holder is us."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if we hold it."""

    def lease(self, name: str) -> tuple[str | None, float]:
        """(holder, seconds left), or (None, 0) when nobody holds it."""

    # -- history ---------------------------------------------------------------------

    def add_points(self, tier: str, points: Iterable[Point]) -> int:
        """Append points; one whose (series, tier, t) is taken is dropped, as may be one
        older than its series' newest. Returns how many were stored."""

    def points(self, tier: str, series: Sequence[str] | None, after: int, before: int) -> dict[str, list[tuple[int, bytes]]]:
        """Points with after < t < before, oldest first, per series (every series if None)."""

    def prune(self, tier: str, before: int) -> int:
        """Drop the tier's points older than ``before``; returns how many went."""

    def series(self) -> list[str]:
        """Every series with points."""

    def forget_empty_series(self) -> int:
        """Drop series that have no points left in any tier."""

    # -- audit -----------------------------------------------------------------------

    def add_audit(self, entry: str) -> str:
        """Append one audit entry (opaque JSON text); returns its id. Keeps the newest AUDIT_KEEP."""

    def audit(self, limit: int, before: str | None = None) -> list[tuple[str, str]]:
        """Up to ``limit`` (id, entry), newest first, older than the id ``before`` if given.
        Raises ValueError for a ``before`` that is not an id this store made."""

    # -- alerts ------------------------------------------------------------------------

    def alert_rules(self) -> dict[str, str]:
        """Every alert rule, by key."""

    def put_alert_rule(self, key: str, rule: str) -> None:
        """Create or replace a rule."""

    def delete_alert_rule(self, key: str) -> bool:
        """Remove a rule; False if there was none."""

    def alert_states(self) -> dict[str, str]:
        """The current state of every alert, by key."""

    def put_alert_states(self, states: Mapping[str, str], drop: Sequence[str]) -> None:
        """Write some alerts' states and forget others, in one transaction."""

    def record_alert(self, entry_id: str, started: int, entry: str, keep: int) -> None:
        """Create or update one history entry; keep only the ``keep`` newest by ``started``."""

    def alert_history(self, limit: int) -> list[str]:
        """History entries, newest first."""

    def claim(self, claim_id: str, holder: str) -> bool:
        """Insert-if-absent: True for exactly one caller per id, whichever replica asks."""

    # -- bulk operations -----------------------------------------------------------------

    def put_operation(self, op_id: str, created: float, record: str) -> None:
        """Create or replace an operation's record; keeps the newest OPERATIONS_KEEP operations."""

    def operation(self, op_id: str) -> str | None:
        """One operation's record, or None."""

    def operations(self, limit: int) -> list[str]:
        """Operation records, newest first."""

    def put_operation_ids(self, op_id: str, n: int, ids: str) -> None:
        """Store (or replace) chunk ``n`` of an operation's job ids."""

    def operation_ids(self, op_id: str, n: int) -> str | None:
        """Chunk ``n`` of an operation's job ids, or None."""

    def drop_operation_ids(self, op_id: str) -> None:
        """Forget an operation's job ids (it has finished with them)."""

    # -- attempts (the login limiter: shared by every process and replica) ---------------

    def count_attempt(self, key: str, window: float) -> int:
        """One more attempt under ``key``, atomically; the count within the window (which starts at the first)."""

    def attempts(self, key: str, window: float) -> tuple[int, float]:
        """(attempts counted under ``key`` in its window, seconds until the window ends)."""

    def reset_attempts(self, key: str) -> None:
        """Forget the attempts under ``key`` (a login that succeeded)."""

    # -- health --------------------------------------------------------------------------

    notices: list[str]  # what happened to the store that the operator should know (a damaged file moved aside)
    last_write_error: tuple[float, str] | None  # (when, why) of the last failure, until a write succeeds

    def check(self) -> str | None:
        """Why the store cannot be written now, or None (a real write: for /readyz)."""

    def close(self) -> None:
        """Release connections."""
