"""Alert rules and their state machine: pure logic, no Flask, no store, no clock.

A ``Rule`` sets thresholds on one queue, or on every queue its glob pattern
matches (a "default rule": any of backend, system or queue containing ``*``,
``?`` or ``[``). An exact rule wins over patterns; among patterns the most
specific (most literal characters) wins. Each threshold of a rule is a
*condition* with its own state machine:

    ok ──breach──▶ pending ──breach for for_seconds──▶ firing
    ▲                 │ no breach                         │ at or past the clear level
    └─────────────────┘                                   ▼ for for_seconds
    ok ◀─────────────────────────── resolved ◀──── (still firing, "clearing")

Hysteresis: a condition fires above its threshold but clears only at or below
``clear level`` (threshold minus 10 %, at least 1 for counts, never below 0),
and only after staying there for the rule's ``for_seconds``; so a value
hovering at the threshold neither flaps nor pages twice. Every change of state
is a ``Transition`` with a stable id (the alert's key, when it was first
evaluated, and its per-alert sequence number): evaluating the same stored state
again, in whichever replica, yields the same id, which the caller claims in the
store (insert-if-absent) before notifying.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

OK, PENDING, FIRING = "ok", "pending", "firing"
STATE_NUMBER = {OK: 0, PENDING: 1, FIRING: 2}
GLOB = set("*?[")


@dataclass(frozen=True)
class Condition:
    """One threshold of a rule: ``name`` (the metric label), which reading, and which way is bad."""

    name: str
    reading: str
    above: bool  # True: bad above the threshold (depth); False: bad below it (workers)
    label: str


CONDITIONS = {
    "max_depth": Condition("max_depth", "depth", True, "waiting jobs"),
    "max_oldest_age_seconds": Condition("max_oldest_age_seconds", "oldest_age_seconds", True, "oldest waiting job (s)"),
    "min_workers": Condition("min_workers", "workers", False, "workers"),
    "max_new_failures": Condition("max_new_failures", "new_failures", True, "new failures per window"),
    "max_periodic_lateness": Condition("max_periodic_lateness", "periodic_lateness", True,
                                       "intervals since a periodic task last ran"),
}


@dataclass(frozen=True)
class Rule:
    backend: str
    system: str
    queue: str
    max_depth: int | None = None
    for_seconds: float = 0
    max_oldest_age_seconds: float | None = None
    min_workers: int | None = None
    max_new_failures: int | None = None
    failures_window_seconds: float = 300
    max_periodic_lateness: float | None = None  # a periodic task of the queue did not run for this many intervals

    @property
    def key(self) -> str:
        return json.dumps([self.backend, self.system, self.queue])

    @property
    def is_pattern(self) -> bool:
        return any(GLOB & set(part) for part in (self.backend, self.system, self.queue))

    def matches(self, backend: str, system: str, queue: str) -> bool:
        if not self.is_pattern:
            return (self.backend, self.system, self.queue) == (backend, system, queue)
        return all(fnmatch.fnmatchcase(v, p) for v, p in ((backend, self.backend), (system, self.system), (queue, self.queue)))

    def specificity(self) -> int:
        return sum(1 for part in (self.backend, self.system, self.queue) for ch in part if ch not in GLOB)

    def thresholds(self) -> list[tuple[Condition, float]]:
        return [(c, getattr(self, name)) for name, c in CONDITIONS.items() if getattr(self, name) is not None]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"pattern": self.is_pattern}


def parse_rule(backend: str, system: str, queue: str, body: Mapping[str, Any]) -> Rule:
    """A rule from an API body or a form. Raises ValueError saying what is wrong."""

    def number(name: str, required: bool = False, whole: bool = False, default: float | None = None) -> Any:
        raw = body.get(name)
        if raw in (None, ""):
            if required:
                raise ValueError(f"{name} is required")
            return default
        try:
            value = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {raw!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number of at least 0")
        if whole:
            if value != int(value):
                raise ValueError(f"{name} must be a whole number")
            return int(value)
        return value

    if not (backend and system and queue):
        raise ValueError("a rule needs a backend, a system and a queue (or patterns such as *)")
    rule = Rule(
        backend, system, queue,
        max_depth=number("max_depth", whole=True),
        for_seconds=number("for_seconds", default=0),
        max_oldest_age_seconds=number("max_oldest_age_seconds"),
        min_workers=number("min_workers", whole=True),
        max_new_failures=number("max_new_failures", whole=True),
        failures_window_seconds=number("failures_window_seconds", default=300) or 300,
        max_periodic_lateness=number("max_periodic_lateness"),
    )  # fmt: skip
    if not rule.thresholds():
        raise ValueError("a rule needs at least one threshold: max_depth, max_oldest_age_seconds, min_workers, "
                         "max_new_failures or max_periodic_lateness")  # fmt: skip
    return rule


def summary(rule: Rule, duration: Callable[[float], str] = lambda s: f"{s:g}s") -> str:
    """What a rule alerts on, in words: "more than 5 waiting, fewer than 1 worker for 30s"."""
    parts = []
    if rule.max_depth is not None:
        parts.append(f"more than {rule.max_depth:,} waiting")
    if rule.max_oldest_age_seconds is not None:
        parts.append(f"oldest waiting over {duration(rule.max_oldest_age_seconds)}")
    if rule.min_workers is not None:
        parts.append(f"fewer than {rule.min_workers:,} worker{'s' if rule.min_workers != 1 else ''}")
    if rule.max_new_failures is not None:
        parts.append(f"more than {rule.max_new_failures:,} new failures in {duration(rule.failures_window_seconds)}")
    if rule.max_periodic_lateness is not None:
        parts.append(f"a periodic task without a run for {rule.max_periodic_lateness:g}x its interval")
    return ", ".join(parts) + f" for {duration(rule.for_seconds)}"


def rule_from_json(text: str) -> Rule:
    data = json.loads(text)
    data.pop("pattern", None)
    return Rule(**data)


def rule_for(rules: Iterable[Rule], backend: str, system: str, queue: str) -> Rule | None:
    """The rule that applies to a queue: its exact rule, else the most specific matching pattern."""
    best: Rule | None = None
    for rule in rules:
        if not rule.matches(backend, system, queue):
            continue
        if not rule.is_pattern:
            return rule
        if best is None or (rule.specificity(), rule.key) > (best.specificity(), best.key):
            best = rule
    return best


def clear_level(condition: Condition, threshold: float) -> float:
    """Where a firing condition may clear: 10 % inside the threshold (1 for counts), never below 0."""
    if not condition.above:
        return threshold
    margin = threshold * 0.1
    if condition.reading != "oldest_age_seconds":
        margin = max(1, math.floor(margin))
    return max(0.0, threshold - margin)


@dataclass(frozen=True)
class Alert:
    """The state of one condition on one queue. Times are ms since the epoch."""

    backend: str
    system: str
    queue: str
    condition: str
    rule: str  # the key of the rule it comes from
    state: str = OK
    value: float | None = None
    threshold: float = 0
    since: int = 0  # when it entered this state
    seq: int = 0  # transitions so far: part of every transition's id
    peak: float | None = None  # worst value while pending or firing
    started: int | None = None  # when it fired
    clearing_since: int | None = None  # firing, but at or past the clear level since then
    born: int = 0  # when this alert was first evaluated: with seq, unique over time
    unknown: str | None = None  # why its reading is unknown now, where that deserves a warning (an Arq report too old)

    @property
    def resolving(self) -> bool:
        """Firing, but back within its clear level: held for ``for_seconds`` before it resolves."""
        return self.state == FIRING and self.clearing_since is not None

    @property
    def next_id(self) -> str:
        return f"{self.key}#{self.born}.{self.seq + 1}"

    @property
    def key(self) -> str:
        return alert_key(self.backend, self.system, self.queue, self.condition)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def alert_key(backend: str, system: str, queue: str, condition: str) -> str:
    return json.dumps([backend, system, queue, condition])


def alert_from_json(text: str) -> Alert:
    return Alert(**json.loads(text))


@dataclass(frozen=True)
class Transition:
    """A change of state. ``id`` is stable: whoever evaluates it, the same change has the same id."""

    id: str
    kind: str  # "pending" | "firing" | "resolved" | "cancelled" (pending back to ok)
    at: int
    alert: Alert

    @property
    def notifies(self) -> bool:
        return self.kind in ("firing", "resolved")


def _worse(condition: Condition, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b) if condition.above else min(a, b)


def step(alert: Alert, condition: Condition, value: float | None, threshold: float, for_ms: int,
         now: int) -> tuple[Alert, list[Transition]]:  # fmt: skip
    """Advance one condition by one reading. ``value`` None (unknown) changes nothing."""
    alert = replace(alert, threshold=threshold, value=value if value is not None else alert.value)
    if value is None:
        return alert, []
    breach = value > threshold if condition.above else value < threshold
    cleared = value <= clear_level(condition, threshold) if condition.above else value >= clear_level(condition, threshold)
    moves: list[Transition] = []

    def move(current: Alert, kind: str, state: str, **changes: Any) -> Alert:
        moved = replace(current, state=state, since=now, seq=current.seq + 1, **changes)
        moves.append(Transition(current.next_id, kind, now, moved))
        return moved

    if alert.state == OK and breach:
        alert = move(alert, "pending", PENDING, peak=value, started=None, clearing_since=None)
    elif alert.state == PENDING and not breach:
        return move(alert, "cancelled", OK, peak=None), moves
    elif alert.state == PENDING:
        alert = replace(alert, peak=_worse(condition, alert.peak, value))
    if alert.state == PENDING and now - alert.since >= for_ms:
        return move(alert, "firing", FIRING, started=now, clearing_since=None), moves
    if alert.state == FIRING:
        alert = replace(alert, peak=_worse(condition, alert.peak, value))
        if not cleared:
            return replace(alert, clearing_since=None), moves
        clearing = alert.clearing_since if alert.clearing_since is not None else now
        if now - clearing >= for_ms:
            return move(alert, "resolved", OK, clearing_since=None), moves
        return replace(alert, clearing_since=clearing), moves
    return alert, moves


def resolve(alert: Alert, now: int) -> tuple[Alert, list[Transition]]:
    """The rule is gone (or the queue): a firing alert resolves, a pending one is cancelled."""
    if alert.state == OK:
        return alert, []
    kind = "resolved" if alert.state == FIRING else "cancelled"
    moved = replace(alert, state=OK, since=now, seq=alert.seq + 1, clearing_since=None)
    return moved, [Transition(alert.next_id, kind, now, moved)]


@dataclass(frozen=True)
class Reading:
    """What a queue shows in one snapshot, as the conditions read it."""

    backend: str
    system: str
    queue: str
    depth: int | None
    oldest_age_seconds: float | None
    workers: int | None
    failed: int | None
    backend_up: bool = True
    partial: bool = False  # the failed count is still being learned (after a restart): nothing in it is new
    workers_unknown: str | None = None  # why workers is None where the system usually knows
    periodic_lateness: float | None = None  # intervals its most overdue periodic task has gone without a run

@dataclass
class FailureWindow:
    """Failed counts over time per queue, to count new failures over a rule's window."""

    seen: dict[tuple[str, str, str], list[tuple[int, int]]] = field(default_factory=dict)

    def new_failures(self, reading: Reading, now: int, window_ms: int) -> int | None:
        key = (reading.backend, reading.system, reading.queue)
        if reading.failed is None or reading.partial:
            # Learning the count (an index rebuilt after a restart) is not failing: start the window afresh.
            self.seen.pop(key, None)
            return None
        points = [(t, n) for t, n in self.seen.get(key, []) if now - t <= window_ms] + [(now, reading.failed)]
        self.seen[key] = points
        # A count that went down (a requeue or delete) starts counting afresh from there.
        total = 0
        for (_, before), (_, after) in zip(points, points[1:]):
            total += max(0, after - before)
        return total


def evaluate(rules: Iterable[Rule], readings: Iterable[Reading], alerts: Mapping[str, Alert], now: int,
             failures: FailureWindow | None = None) -> tuple[dict[str, Alert], list[Transition]]:  # fmt: skip
    """Every condition of every queue with a rule, one step on. Returns the new alerts and the transitions.

    A queue of a backend that is down keeps its alerts as they are (a dead
    backend is a state, not a reason to page or to resolve). Alerts whose rule
    or queue is gone resolve and are dropped.
    """
    rules = list(rules)
    failures = failures if failures is not None else FailureWindow()
    current: dict[str, Alert] = {}
    moves: list[Transition] = []
    down_backends = set()
    for reading in readings:
        if not reading.backend_up:
            down_backends.add(reading.backend)
            continue
        rule = rule_for(rules, reading.backend, reading.system, reading.queue)
        if rule is None:
            continue
        values = {
            "depth": reading.depth,
            "oldest_age_seconds": reading.oldest_age_seconds,
            "workers": reading.workers,
            "periodic_lateness": reading.periodic_lateness,
            "new_failures": failures.new_failures(reading, now, int(rule.failures_window_seconds * 1000))
            if rule.max_new_failures is not None else None,
        }  # fmt: skip
        for condition, threshold in rule.thresholds():
            key = alert_key(reading.backend, reading.system, reading.queue, condition.name)
            before = alerts.get(key)
            if before is None:
                before = Alert(reading.backend, reading.system, reading.queue, condition.name, rule.key, threshold=threshold,
                               since=now, born=now)  # fmt: skip
            value = values[condition.reading]
            unknown = reading.workers_unknown if condition.reading == "workers" and value is None else None
            alert, changes = step(replace(before, rule=rule.key, unknown=unknown), condition, value, threshold,
                                  int(rule.for_seconds * 1000), now)  # fmt: skip
            current[key] = alert
            moves += changes
    for key, alert in alerts.items():
        if key in current:
            continue
        if alert.backend in down_backends:
            current[key] = alert
            continue
        _, changes = resolve(alert, now)
        moves += changes
    return current, moves


def describe(transition: Transition) -> str:
    """One line for a person: what changed, where, how much."""
    a = transition.alert
    condition = CONDITIONS[a.condition]
    where = f"{a.backend}/{a.system}/{a.queue}"
    value = "unknown" if a.value is None else f"{a.value:g}"
    relation = ">" if condition.above else "<"
    if transition.kind == "resolved":
        peak = "" if a.peak is None else f" (peak {a.peak:g})"
        return f"RESOLVED {where}: {condition.label} {value}, back within {a.threshold:g}{peak}"
    return f"{transition.kind.upper()} {where}: {condition.label} {value} {relation} {a.threshold:g}"
