"""Failure triage: filter a failed list, and group it by cause, within a time budget.

A ``Filter`` is what the operator typed (function, exception type, text, a
time range, a fingerprint); it round-trips through a bookmarkable query string.
``scan`` walks an adapter's failed list page by page, newest first, keeping
the rows a filter matches, until it has enough, reaches the end, or runs out
of its time budget: then it says how far it got (``examined`` of ``total``)
and where to go on (``next_cursor``), so the answer is never silently partial.
``groups`` does the same walk and counts the rows per fingerprint
(app/failures/fingerprint.py).

Only reads: every call goes through ``Adapter.failed``, which never writes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from queuewatch.adapters.base import Adapter, FailedJob

from .fingerprint import Group, fingerprint, group

LIST_BUDGET = 1.0  # seconds a filtered page may spend walking the failed list
GROUP_BUDGET = 2.0  # seconds a grouping may spend
MAX_TEXT = 200  # characters of a filter value
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


class FilterError(ValueError):
    """A filter the operator typed that cannot be used; the message says why."""


def _time(name: str, raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{name} must be a date and time such as 2026-11-21T06:48 (UTC), not {raw[:40]!r}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def has_blanks(args: Mapping[str, str]) -> bool:
    """Whether a query string carries empty filter fields (as a submitted filter form does)."""
    return any(args.get(param) == "" for param in Filter.PARAMS.values())


# Besides the filter's own, what a filtered page's address may carry on (a page size, an inspection).
KEPT_ARGS = ("limit", "inspection")


def with_query(path: str, args: Mapping[str, str]) -> str:
    """``path`` with the filter's set fields as its query string. The query is encoded here, never
    spread into ``url_for`` (where a request's keys could set ``_external``, ``_scheme`` or an endpoint
    argument)."""
    kept = without_blanks(args)
    return path + ("?" + urlencode(kept) if kept else "")


def without_blanks(args: Mapping[str, str]) -> dict[str, str]:
    """The filter's fields that are set, and the page's own arguments: nothing else of a query string
    goes on into a redirect (``backend=``, ``_external=``... would reach ``url_for``)."""
    known = (*Filter.PARAMS.values(), *KEPT_ARGS)
    return {k: v for k, v in args.items() if k in known and isinstance(v, str) and v != ""}


@dataclass(frozen=True)
class Filter:
    """Which failed jobs to show or act on. Empty fields match everything."""

    function: str = ""  # substring of the function name, any case
    exception: str = ""  # substring of the exception type, any case
    text: str = ""  # substring of id, function, exception, message or arguments, any case
    since: datetime | None = None  # failed at or after (UTC)
    until: datetime | None = None  # failed before (UTC)
    group: str = ""  # a fingerprint: exactly the jobs of one group

    # The query-string names of the fields (``q`` for text, as search boxes go).
    PARAMS = {"function": "function", "exception": "exception", "text": "q", "since": "since", "until": "until", "group": "group"}

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filter:
        """The filter of a query string (or a JSON object). Raises FilterError."""
        values: dict[str, Any] = {}
        for name, param in cls.PARAMS.items():
            raw = args.get(param)
            if raw is None:
                continue
            if not isinstance(raw, str):
                raise FilterError(f"{param} must be text")
            if len(raw) > MAX_TEXT:
                raise FilterError(f"{param} is longer than {MAX_TEXT} characters")
            values[name] = _time(param, raw) if name in ("since", "until") else raw.strip()
        if values.get("group") and not _FINGERPRINT.match(values["group"]):
            raise FilterError("group must be a fingerprint: 16 hexadecimal digits, as the group list links to")
        flt = cls(**values)
        if flt.since and flt.until and flt.since >= flt.until:
            raise FilterError("since must be earlier than until")
        return flt

    def args(self) -> dict[str, str]:
        """The query-string form: only the fields that are set."""
        out = {}
        for name, param in self.PARAMS.items():
            value = getattr(self, name)
            if value:
                out[param] = value.isoformat(timespec="seconds").replace("+00:00", "Z") if isinstance(value, datetime) else value
        return out

    def to_json(self) -> dict[str, str]:
        return self.args()

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def matches(self, job: FailedJob) -> bool:
        if self.function and self.function.lower() not in (job.function or "").lower():
            return False
        if self.exception and self.exception.lower() not in (job.error_type or "").lower():
            return False
        if self.since and (job.failed_at is None or job.failed_at < self.since):
            return False
        if self.until and (job.failed_at is None or job.failed_at >= self.until):
            return False
        if self.text:
            needle = self.text.lower()
            haystack = (job.id, job.function or "", job.error_type or "", job.error_message or "", job.args_preview)
            if not any(needle in part.lower() for part in haystack):
                return False
        if self.group and fingerprint(job.function, job.error_type, job.error_message) != self.group:
            return False
        return True


@dataclass(frozen=True)
class Scan:
    """How far a walk of a failed list got, and what it kept."""

    rows: tuple[FailedJob, ...]  # the matching rows, newest first
    examined: int  # rows read
    total: int | None  # rows in the list when the walk started, if known
    complete: bool  # the walk reached the end of the list
    next_cursor: str | None  # where to go on; None when complete
    elapsed: float  # seconds

    @property
    def partial(self) -> bool:
        return not self.complete


def walk(adapter: Adapter, queue: str, *, cursor: str | None = None, budget: float = LIST_BUDGET,
         page: int | None = None) -> Iterable[tuple[list[FailedJob], str | None, int | None]]:  # fmt: skip
    """Pages of the failed list from ``cursor``: (rows, next cursor, total), until the end or the budget."""
    deadline = time.monotonic() + budget
    size = page or adapter.walk_page
    while True:
        got = adapter.failed(queue, size, cursor)
        yield list(got.items), got.next_cursor, got.total
        cursor = got.next_cursor
        if cursor is None or time.monotonic() >= deadline:
            return


def scan(adapter: Adapter, queue: str, flt: Filter, *, want: int, cursor: str | None = None,
         budget: float = LIST_BUDGET) -> Scan:  # fmt: skip
    """Rows matching ``flt`` from ``cursor``: at least ``want`` (whole pages), unless the list or the budget ends first."""
    started = time.monotonic()
    rows: list[FailedJob] = []
    examined, total, next_cursor = 0, None, cursor
    page = adapter.walk_page if flt.active else want
    for items, next_cursor, page_total in walk(adapter, queue, cursor=cursor, budget=budget, page=page):
        total = page_total if total is None else total
        examined += len(items)
        rows.extend(job for job in items if flt.matches(job))
        if len(rows) >= want:
            break
    return Scan(tuple(rows), examined, total, next_cursor is None, next_cursor, time.monotonic() - started)


@dataclass(frozen=True)
class Found:
    """One group of a grouping, with the failed lists it was found in."""

    group: Group
    sample_in: tuple[str, str, str]  # (backend, system, queue) of the sample job
    queues: tuple[tuple[tuple[str, str, str], int], ...]  # (where, count), most first


@dataclass(frozen=True)
class Grouping:
    """The groups of one or more failed lists, and how much of them was read."""

    groups: tuple[Found, ...]
    examined: int
    total: int | None
    complete: bool
    elapsed: float
    lists: int  # failed lists read (some maybe partly)
    errors: tuple[str, ...] = ()  # failed lists that could not be read, and why
    unread: int = 0  # failed lists not reached within the budget (the last of ``sources``)

    @property
    def partial(self) -> bool:
        return not self.complete


def _merge(old: Group, new: Group) -> Group:
    """One group from the same fingerprint's groups of two parts of the failed lists."""

    def pick(a: datetime | None, b: datetime | None, first: bool) -> datetime | None:
        if a is None or b is None:
            return a or b
        return min(a, b) if first else max(a, b)

    newer = new.last_seen is not None and (old.last_seen is None or new.last_seen > old.last_seen)
    return Group(old.fingerprint, old.function, old.error_type, old.message_pattern, old.count + new.count,
                 pick(old.first_seen, new.first_seen, True), pick(old.last_seen, new.last_seen, False),
                 new.sample_id if newer else old.sample_id)  # fmt: skip


def groups(sources: Iterable[tuple[tuple[str, str, str], Adapter]], flt: Filter, *, budget: float = GROUP_BUDGET,
           limit: int = 50) -> Grouping:  # fmt: skip
    """Group the failed lists of ``sources`` ((backend, system, queue), adapter) by fingerprint.

    The budget is shared: each list gets an equal part of what is left (at
    least one page), newest jobs first, so a partial answer covers the latest
    failures of every list it reached. Pass the lists that matter most first:
    when the budget is spent, the rest are not read (``unread``).
    A group's count is the jobs of it that were read: exact when ``complete``.
    Memory grows with the number of groups, not of jobs: each page read is
    grouped and merged, then dropped.
    """
    started = time.monotonic()
    sources = list(sources)
    found: dict[str, Group] = {}
    sample_in: dict[str, tuple[str, str, str]] = {}
    spread: dict[str, dict[tuple[str, str, str], int]] = {}
    examined, total, complete, errors, unread = 0, 0, True, [], 0
    deadline = started + budget
    for n, (where, adapter) in enumerate(sources):
        left = deadline - time.monotonic()
        if left <= 0 and n:  # every list read so far had its share: the rest wait for a narrower filter
            unread, complete = len(sources) - n, False
            break
        share = max(0.0, left) / (len(sources) - n)
        next_cursor: str | None = None
        try:
            first = True
            for items, next_cursor, page_total in walk(adapter, where[2], budget=share):
                if first:
                    total = None if total is None or page_total is None else total + page_total
                    first = False
                examined += len(items)
                for g in group((job for job in items if flt.matches(job)), 10**9):
                    key = g.fingerprint
                    seen = found.get(key)
                    found[key] = g if seen is None else _merge(seen, g)
                    if seen is None or found[key].sample_id != seen.sample_id:
                        sample_in[key] = where
                    counts = spread.setdefault(key, {})
                    counts[where] = counts.get(where, 0) + g.count
        except Exception as exc:  # one unreadable list (a backend down) must not hide the others
            errors.append(f"{'/'.join(where)}: {exc}")
            complete = False
            continue
        complete = complete and next_cursor is None
    ordered = sorted(found.values(), key=lambda g: g.fingerprint)
    ordered.sort(key=lambda g: g.last_seen.timestamp() if g.last_seen else float("-inf"), reverse=True)
    ordered.sort(key=lambda g: g.count, reverse=True)
    top = tuple(
        Found(g, sample_in[g.fingerprint], tuple(sorted(spread[g.fingerprint].items(), key=lambda wc: (-wc[1], wc[0]))))
        for g in ordered[:limit]
    )
    return Grouping(top, examined, None if unread else total, complete, time.monotonic() - started,
                    len(sources) - unread, tuple(errors), unread)  # fmt: skip
