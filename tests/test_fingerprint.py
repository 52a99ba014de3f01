"""Failure fingerprints and grouping, pure: no Flask, no Redis."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuewatch.adapters.base import FailedJob
from queuewatch.failures.fingerprint import MAX_INPUT, MAX_PATTERN, fingerprint, group, normalize_message

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
SEND = "billing.tasks.send_invoice"


def failed(job_id: str, message: str | None, *, function: str | None = SEND, error_type: str | None = "MailerUnavailable",
           at: datetime | None = T0) -> FailedJob:  # fmt: skip
    return FailedJob(job_id, function, "()", error_type, message, at, 1)


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ("Job 3f2a9c1e-1b2c-4d5e-8f90-123456789abc failed after 3 attempts", "Job <uuid> failed after <n> attempts"),
        ("KeyError: 'user_42'", "KeyError: '<str>'"),
        ('no row for b"abc" in "orders"', 'no row for b"<str>" in "<str>"'),
        ("can't reach 10.0.0.5:6379", "can't reach <ip>:<n>"),
        ("mail to ann.lee+x@example.co.uk bounced", "mail to <email> bounced"),
        ("object at 0x7f3a2b1c, digest deadbeef12", "object at <hex>, digest <hex>"),
        ("fe80::1 and 2001:db8:0:0:0:0:2:1 unreachable", "<ip> and <ip> unreachable"),
        ("took 3.25 s at 12:30:45", "took <n> s at <n>:<n>:<n>"),
        ("GET https://u:pw@api.example.com/v2/orders/991?page=4&q=x#top -> 503",
         "GET https://<str>@api.example.com/v<n>/orders/<n>?page=<str>&q=<str>#<str> -> <n>"),
        ("  timed\n\n  out\t ", "timed out"),
        ("a decade of facade", "a decade of facade"),  # words made of hex letters are words
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_masks_variable_parts(message: str | None, pattern: str) -> None:
    assert normalize_message(message) == pattern


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=3000))
def test_normalization_is_idempotent_and_never_raises(text: str) -> None:
    pattern = normalize_message(text)
    assert normalize_message(pattern) == pattern
    assert len(pattern) <= MAX_PATTERN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["'x y'", "https://h/p?a=1", "a@b.io", "10.1.2.3", "::1", "0xff", "9", " ", "\n", "id",
                                 '"', "'", "deadbeef01", "b'", "-", ":", "."]), max_size=80))  # fmt: skip
def test_normalization_is_idempotent_on_messages_made_of_masked_parts(parts: list[str]) -> None:
    pattern = normalize_message("".join(parts))
    assert normalize_message(pattern) == pattern


def test_a_huge_message_is_read_only_up_to_the_limit_and_quickly() -> None:
    started = time.perf_counter()
    pattern = normalize_message(("'" + "1 a@b.c " * 50_000) * 20)
    assert time.perf_counter() - started < 1
    assert len(pattern) <= MAX_PATTERN
    assert normalize_message("x" * MAX_INPUT + " 7 tail") == normalize_message("x" * MAX_INPUT)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12),
    st.uuids(), st.uuids(), st.from_regex(r"[A-Za-z0-9_-]{0,20}", fullmatch=True), st.from_regex(r"[A-Za-z0-9_-]{0,20}", fullmatch=True),
)  # fmt: skip
def test_messages_differing_only_in_ids_numbers_and_quoted_values_share_a_fingerprint(n1, n2, u1, u2, q1, q2) -> None:
    template = "invoice {} for '{}' failed: job {} (hex {}) answered {}"
    one = template.format(n1, q1, u1, u1.hex, n1 % 600)
    two = template.format(n2, q2, u2, u2.hex, n2 % 600)
    assert fingerprint(SEND, "MailerUnavailable", one) == fingerprint(SEND, "MailerUnavailable", two)


def test_different_exception_types_functions_or_words_do_not_share_a_fingerprint() -> None:
    base = fingerprint(SEND, "ValueError", "bad invoice 12")
    assert fingerprint(SEND, "TypeError", "bad invoice 12") != base
    assert fingerprint("billing.tasks.refund", "ValueError", "bad invoice 12") != base
    assert fingerprint(SEND, "ValueError", "bad customer 12") != base
    assert fingerprint(None, None, None) != fingerprint("", "", "x")


def test_a_fingerprint_is_short_stable_hex() -> None:
    digest = fingerprint(SEND, "ValueError", "bad invoice 12")
    assert digest == fingerprint(SEND, "ValueError", "bad invoice 99")
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert fingerprint(None, None, None) == fingerprint("", "", "")


def test_group_counts_first_and_last_seen_and_picks_the_newest_job_as_sample() -> None:
    jobs = [
        failed("a", "timeout after 3 s", at=T0 + timedelta(minutes=5)),
        failed("b", "timeout after 30 s", at=T0),
        failed("c", "timeout after 4 s", at=T0 + timedelta(minutes=9)),
        failed("d", "timeout after 5 s", at=None),
        failed("e", "quota 'acme' exceeded", error_type="QuotaExceeded", at=T0 + timedelta(minutes=1)),
    ]
    timeout, quota = group(jobs, limit_groups=10)
    assert (timeout.count, timeout.first_seen, timeout.last_seen, timeout.sample_id) == (
        4, T0, T0 + timedelta(minutes=9), "c")
    assert (timeout.function, timeout.error_type, timeout.message_pattern) == (SEND, "MailerUnavailable", "timeout after <n> s")
    assert timeout.fingerprint == fingerprint(SEND, "MailerUnavailable", "timeout after 3 s")
    assert (quota.count, quota.first_seen, quota.last_seen, quota.sample_id) == (1, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), "e")


def test_group_handles_missing_fields_and_times() -> None:
    jobs = [failed("x", None, function=None, error_type=None, at=None), failed("y", None, function=None, error_type=None, at=None)]
    (only,) = group(jobs, limit_groups=5)
    assert (only.count, only.first_seen, only.last_seen, only.sample_id) == (2, None, None, "x")
    assert (only.function, only.error_type, only.message_pattern) == (None, None, "")


def test_groups_are_ordered_by_count_then_most_recent_and_limited() -> None:
    def many(prefix: str, error_type: str, n: int, at: datetime | None) -> list[FailedJob]:
        return [failed(f"{prefix}{i}", f"boom {i}", error_type=error_type, at=at) for i in range(n)]

    jobs = many("o", "OldError", 2, T0) + many("t", "TimelessError", 2, None) + many("n", "NewError", 2, T0 + timedelta(hours=1))
    jobs += many("b", "BigError", 3, T0 - timedelta(days=1))
    ordered = [g.error_type for g in group(jobs, limit_groups=10)]
    assert ordered == ["BigError", "NewError", "OldError", "TimelessError"]
    assert [g.error_type for g in group(reversed(jobs), limit_groups=2)] == ["BigError", "NewError"]
    assert group(jobs, limit_groups=0) == []
    assert group([], limit_groups=3) == []
