"""Failure fingerprints: which failed jobs are "the same failure", pure.

``normalize_message`` turns an error message into a pattern by masking the
parts that change from one job to the next. The rules, applied in this order
to the first ``MAX_INPUT`` characters of the message:

0. Runs of whitespace (newlines included) become one space.
1. Quoted values, ``'...'`` and ``"..."`` (an optional ``b``/``r``/``u``
   prefix kept), become ``'<str>'`` / ``"<str>"``. A quote right after a
   letter, digit or ``>`` is an apostrophe ("can't") or glued to the token
   before it, not the start of a value.
2. URLs (``scheme://...``) keep their scheme, host and path; credentials
   become ``<str>@``, every query value ``<str>``, the fragment ``#<str>``.
   The path is left to the rules below (ids and numbers in it are masked).
3. E-mail addresses become ``<email>``.
4. UUIDs become ``<uuid>``.
5. IPv4 addresses, and IPv6 addresses written in full or with ``::``, become
   ``<ip>`` (a port after them is a number: ``<ip>:<n>``).
6. ``0x`` hex literals, and words of 8 or more hex digits holding at least one
   digit and one letter (job ids, digests), become ``<hex>``.
7. Every other run of digits, with its decimal parts (``3.14``, ``1.2.3``),
   becomes ``<n>``.
8. The ends are stripped and a pattern longer than ``MAX_PATTERN`` is cut
   at its last space before that (whole tokens, so a cut pattern is still
   its own pattern), or at ``MAX_PATTERN`` if it has no space there.

Each rule treats the placeholders (``<n>``...) like letters, so a part glued
to a word is left alone on the first pass as on the next. Words, exception
types and function names are never masked. Normalizing a
pattern again changes nothing. ``fingerprint`` digests function, exception
type and pattern; ``group`` counts failed jobs per fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from queuewatch.adapters.base import FailedJob

MAX_INPUT = 2_000  # characters of a message read: bounds the work on a huge message
MAX_PATTERN = 1_000  # characters of a pattern kept: less than MAX_INPUT, so a pattern is its own pattern

_QUOTED = re.compile(r"""(?<![\w>])([bBrRuU]{0,2})(?:'[^']*'|"[^"]*")""")
_URL = re.compile(r"""(?<![\w+.>-])([A-Za-z][A-Za-z0-9+.-]*://)([^\s'"]+)""")
_EMAIL = re.compile(r"(?<![\w.+>-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_UUID = re.compile(r"(?<![\w>])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w<])")
_IPV4 = re.compile(r"(?<![\w.>])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]*\d)")
_IPV6 = re.compile(
    r"(?<![\w:>])(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
    r"|(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?::(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?)(?![\w:<])"
)
_HEX = re.compile(r"(?<![\w>])(?:0[xX][0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,})(?![\w<])")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_SPACE = re.compile(r"\s+")
_QUERY_VALUE = re.compile(r"=[^&;#]*")


def _quoted(match: re.Match[str]) -> str:
    quote = match.group(0)[-1]
    return f"{match.group(1)}{quote}<str>{quote}"


def _url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    rest, hash_, _ = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "<str>@" + authority.rpartition("@")[2]
    query = _QUERY_VALUE.sub("=<str>", query)
    return f"{scheme}{authority}{slash}{path}{question}{query}" + ("#<str>" if hash_ else "")


def _ipv6(match: re.Match[str]) -> str:
    # A bare "::" or a clock time is not an address worth masking as one.
    return "<ip>" if match.group(0) != "::" else match.group(0)


def normalize_message(text: str | None) -> str:
    """The message with its variable parts masked (rules in the module docstring)."""
    if not text:
        return ""
    # Whitespace first: a value quoted across lines is then one value, every time.
    text = _SPACE.sub(" ", text[:MAX_INPUT])
    text = _QUOTED.sub(_quoted, text)
    text = _URL.sub(_url, text)
    text = _EMAIL.sub("<email>", text)
    text = _UUID.sub("<uuid>", text)
    text = _IPV4.sub("<ip>", text)
    text = _IPV6.sub(_ipv6, text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    text = text.strip()
    if len(text) > MAX_PATTERN:
        cut = text.rfind(" ", 0, MAX_PATTERN + 1)
        text = text[: cut if cut > 0 else MAX_PATTERN].rstrip()
    return text


def fingerprint(function: str | None, error_type: str | None, error_message: str | None) -> str:
    """A short stable digest (16 hex digits) of function, exception type and message pattern."""
    key = "\x00".join((function or "", error_type or "", normalize_message(error_message)))
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Group:
    """Failed jobs that share a fingerprint."""

    fingerprint: str
    function: str | None
    error_type: str | None
    message_pattern: str
    count: int
    first_seen: datetime | None  # earliest failed_at; None when no job of the group has one
    last_seen: datetime | None
    sample_id: str  # the newest job (by failed_at; the first met when none has one)


def group(jobs: Iterable[FailedJob], limit_groups: int) -> list[Group]:
    """Failed jobs grouped by fingerprint: the ``limit_groups`` largest, most recent first among equals.

    Order: count descending, then last_seen descending (groups without a time
    last), then fingerprint, so the answer never depends on the input order
    of equal groups. Memory grows with the number of distinct fingerprints:
    pass a bounded set of jobs (a page, a sample).
    """
    if limit_groups <= 0:
        return []
    found: dict[str, Group] = {}
    for job in jobs:
        key = fingerprint(job.function, job.error_type, job.error_message)
        seen = found.get(key)
        when = job.failed_at
        if seen is None:
            pattern = normalize_message(job.error_message)
            found[key] = Group(key, job.function, job.error_type, pattern, 1, when, when, job.id)
            continue
        newer = when is not None and (seen.last_seen is None or when > seen.last_seen)
        found[key] = Group(
            key, seen.function, seen.error_type, seen.message_pattern, seen.count + 1,
            when if when is not None and (seen.first_seen is None or when < seen.first_seen) else seen.first_seen,
            when if newer else seen.last_seen,
            job.id if newer else seen.sample_id,
        )  # fmt: skip
    ordered = sorted(found.values(), key=lambda g: g.fingerprint)
    ordered.sort(key=lambda g: g.last_seen.timestamp() if g.last_seen else float("-inf"), reverse=True)
    ordered.sort(key=lambda g: g.count, reverse=True)
    return ordered[:limit_groups]
