"""The alert rules and state machine, pure: no Flask, no Redis, no clock."""

from __future__ import annotations

import json

import pytest

from queuewatch.alerts import rules as alerts
from queuewatch.alerts.rules import FIRING, OK, PENDING, Alert, Reading, Rule, evaluate, parse_rule, rule_for

S = 1000  # ms


def reading(depth: int | None, *, queue: str = "emails", workers: int | None = 1, failed: int | None = 0,
            oldest: float | None = None, up: bool = True) -> Reading:  # fmt: skip
    return Reading("redis", "rq", queue, depth, oldest, workers, failed, up)


def run(rules: list[Rule], depths: list[int | None], step_ms: int = S, **kw) -> tuple[list[str], list[alerts.Transition]]:
    """Feed one depth per interval; the states after each, and every transition."""
    states: dict[str, Alert] = {}
    seen, moves = [], []
    for i, depth in enumerate(depths):
        states, changes = evaluate(rules, [reading(depth, **kw)], states, now=i * step_ms)
        moves += changes
        seen.append(next(iter(states.values())).state if states else "-")
    return seen, moves


def kinds(moves: list[alerts.Transition]) -> list[str]:
    return [m.kind for m in moves]


def test_a_breach_is_pending_until_it_lasts_for_the_rules_duration_then_fires() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=5, for_seconds=3)
    states, moves = run([rule], [0, 10, 10, 10, 10, 10])
    assert states == [OK, PENDING, PENDING, PENDING, FIRING, FIRING]
    assert kinds(moves) == ["pending", "firing"]
    assert moves[-1].alert.started == 4 * S and moves[-1].alert.peak == 10


def test_a_short_breach_is_cancelled_without_paging() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=5, for_seconds=10)
    states, moves = run([rule], [10, 9, 2, 0])
    assert states == [PENDING, PENDING, OK, OK]
    assert kinds(moves) == ["pending", "cancelled"]
    assert not any(m.notifies for m in moves)


def test_without_a_duration_the_first_breach_fires() -> None:
    states, moves = run([Rule("redis", "rq", "emails", max_depth=5)], [5, 6])
    assert states == [OK, FIRING]
    assert kinds(moves) == ["pending", "firing"]


def test_a_value_hovering_at_the_threshold_does_not_flap() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=50, for_seconds=0)
    # Fires above 50, clears only at or below 45 (10 % hysteresis).
    states, moves = run([rule], [51, 50, 49, 51, 47, 52, 46, 45, 44])
    assert states == [FIRING] * 7 + [OK, OK]
    assert [m.kind for m in moves if m.notifies] == ["firing", "resolved"]
    assert moves[-1].alert.peak == 52


def test_resolving_also_waits_for_the_duration() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=5, for_seconds=2)
    states, moves = run([rule], [9, 9, 9, 0, 0, 7, 0, 0, 0])
    # Pending at 0 s, firing at 2 s; cleared at 3 s but back up at 5 s (clearing restarts); resolved at 8 s.
    assert states == [PENDING, PENDING, FIRING, FIRING, FIRING, FIRING, FIRING, FIRING, OK]
    assert [m.kind for m in moves if m.notifies] == ["firing", "resolved"]


def test_small_thresholds_keep_a_margin_of_one_and_zero_clears_at_zero() -> None:
    depth = alerts.CONDITIONS["max_depth"]
    assert alerts.clear_level(depth, 5) == 4
    assert alerts.clear_level(depth, 200) == 180
    assert alerts.clear_level(depth, 0) == 0
    assert alerts.clear_level(alerts.CONDITIONS["max_oldest_age_seconds"], 30) == 27
    assert alerts.clear_level(alerts.CONDITIONS["min_workers"], 2) == 2
    states, _ = run([Rule("redis", "rq", "emails", max_depth=0)], [1, 0])
    assert states == [FIRING, OK]


def test_transition_ids_are_stable_when_the_same_state_is_evaluated_again() -> None:
    """A new lease holder that loads the last stored state derives the same ids: its claim then fails."""
    rule = Rule("redis", "rq", "emails", max_depth=5)
    stored, _ = evaluate([rule], [reading(1)], {}, now=0)
    _, first = evaluate([rule], [reading(9)], stored, now=S)
    _, again = evaluate([rule], [reading(9)], stored, now=2 * S)  # another replica, a tick later
    assert [m.id for m in first] == [m.id for m in again]
    assert len({m.id for m in first}) == 2
    later, _ = evaluate([rule], [reading(9)], stored, now=S)
    resolved = evaluate([rule], [reading(0)], evaluate([rule], [reading(9)], later, now=2 * S)[0], now=3 * S)[1]
    assert resolved[0].id not in {m.id for m in first}


def test_other_conditions_each_have_their_own_state() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=100, max_oldest_age_seconds=60, min_workers=2, max_new_failures=3,
                failures_window_seconds=10)  # fmt: skip
    window = alerts.FailureWindow()  # kept by the caller from tick to tick
    states, _ = evaluate([rule], [reading(1, workers=1, failed=0, oldest=5)], {}, now=0, failures=window)
    states, moves = evaluate([rule], [reading(1, workers=1, failed=5, oldest=90)], states, now=S, failures=window)
    by_condition = {a.condition: a.state for a in states.values()}
    assert by_condition == {"max_depth": OK, "max_oldest_age_seconds": FIRING, "min_workers": FIRING, "max_new_failures": FIRING}
    # Failures older than the window no longer count.
    states, _ = evaluate([rule], [reading(1, workers=2, failed=5, oldest=1)], states, now=20 * S, failures=window)
    assert {a.condition: a.state for a in states.values()} == dict.fromkeys(by_condition, OK)


def test_a_requeue_that_lowers_the_failed_count_is_not_negative_failures() -> None:
    window = alerts.FailureWindow()
    assert window.new_failures(reading(0, failed=10), 0, 60 * S) == 0
    assert window.new_failures(reading(0, failed=0), S, 60 * S) == 0
    assert window.new_failures(reading(0, failed=2), 2 * S, 60 * S) == 2


def test_default_rules_match_by_pattern_and_the_most_specific_wins() -> None:
    everything = Rule("*", "*", "*", max_depth=1000)
    rq_mail = Rule("redis", "rq", "mail*", max_depth=50)
    exact = Rule("redis", "rq", "mail-bulk", max_depth=5000)
    rules = [everything, rq_mail, exact]
    assert rule_for(rules, "redis", "rq", "mail-bulk") is exact
    assert rule_for(rules, "redis", "rq", "mail-fast") is rq_mail
    assert rule_for(rules, "redis", "celery", "mail-fast") is everything
    assert rule_for([rq_mail], "redis", "celery", "mail-fast") is None
    assert everything.is_pattern and not exact.is_pattern
    assert not Rule("redis", "rq", "a.b", max_depth=1).matches("redis", "rq", "axb")


def test_a_default_rule_alerts_on_each_queue_it_matches() -> None:
    rules = [Rule("redis", "*", "*", max_depth=5)]
    states, moves = evaluate(rules, [reading(9, queue="a"), reading(1, queue="b"), reading(7, queue="c")], {}, now=0)
    assert sorted((a.queue, a.state) for a in states.values()) == [("a", FIRING), ("b", OK), ("c", FIRING)]
    assert len([m for m in moves if m.kind == "firing"]) == 2


def test_a_down_backend_holds_alerts_and_a_removed_rule_resolves_them() -> None:
    rule = Rule("redis", "rq", "emails", max_depth=5)
    states, _ = evaluate([rule], [reading(9)], {}, now=0)
    held, moves = evaluate([rule], [reading(None, up=False)], states, now=S)
    assert moves == [] and next(iter(held.values())).state == FIRING
    unknown, moves = evaluate([rule], [reading(None)], states, now=S)  # depth unknown: no change
    assert moves == [] and next(iter(unknown.values())).state == FIRING
    gone, moves = evaluate([], [reading(9)], states, now=2 * S)
    assert gone == {} and kinds(moves) == ["resolved"]


def test_rules_are_parsed_strictly() -> None:
    rule = parse_rule("redis", "rq", "emails", {"max_depth": "5", "for_seconds": "2.5", "min_workers": ""})
    assert (rule.max_depth, rule.for_seconds, rule.min_workers) == (5, 2.5, None)
    for body, message in (({}, "at least one threshold"), ({"for_seconds": 5}, "at least one threshold"), ({"max_depth": -1}, "at least 0"), ({"max_depth": 1.5}, "whole"),
                          ({"max_depth": "x"}, "number"), ({"max_depth": True}, "at least 0")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_rule("redis", "rq", "emails", body)
    assert alerts.rule_from_json(json.dumps(rule.to_json())) == rule


def test_a_transition_reads_as_one_line() -> None:
    _, moves = run([Rule("redis", "rq", "emails", max_depth=5)], [10, 0])
    assert alerts.describe(moves[1]) == "FIRING redis/rq/emails: waiting jobs 10 > 5"
    assert alerts.describe(moves[2]) == "RESOLVED redis/rq/emails: waiting jobs 0, back within 5 (peak 10)"
