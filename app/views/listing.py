"""The overview's queue table as a model: what the operator asked for (search,
filters, sort, page: ``QueueQuery``, from the query string), and one page of
queues cut from the snapshot (``queue_page``). Pure, except ``alerting_queues``,
which asks the alert service. The JSON API pages queues the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flask import current_app

from queuewatch.adapters.backends import SYSTEM_NAMES
from queuewatch.adapters.base import QueueStats

from .params import BadRequest

SYSTEMS = SYSTEM_NAMES
# state filter -> (label, test); "alerting" is answered from the alert service instead.
QUEUE_STATES: dict[str, tuple[str, Callable[[QueueStats], bool]]] = {
    "failing": ("failing (failed > 0)", lambda q: bool(q.failed)),
    "backlog": ("backlog (waiting > 0)", lambda q: bool(q.depth) and not q.dead_letters_of),
    # Workers unknown (an Arq report too old to be evidence) is listed too: nobody may be working it.
    "no-workers": ("waiting, no workers", lambda q: bool(q.depth) and not q.dead_letters_of
                   and (q.workers == 0 or (q.workers is None and q.workers_unknown is not None))),
    "alerting": ("alert firing", lambda q: False),
}
STATE_ALIASES = {"no workers": "no-workers", "no_workers": "no-workers", "noworkers": "no-workers"}
# sort key -> (column label, the queue's value, first click sorts descending)
QUEUE_SORTS: dict[str, tuple[str, Callable[[QueueStats], Any], bool]] = {
    "name": ("Queue", lambda q: q.name.casefold(), False),
    "system": ("System", lambda q: q.system, False),
    "backend": ("Backend", lambda q: q.backend.casefold(), False),
    "depth": ("Waiting", lambda q: q.depth, True),
    "in_progress": ("In progress", lambda q: q.in_progress, True),
    "scheduled": ("Scheduled", lambda q: q.scheduled, True),
    "failed": ("Failed", lambda q: q.failed, True),
    "workers": ("Workers", lambda q: q.workers, True),
    "oldest": ("Oldest waiting", lambda q: q.oldest_age_seconds, True),
}
SORT_ALIASES = {"oldest_age_seconds": "oldest", "oldest_age": "oldest", "age": "oldest", "waiting": "depth"}
PER_PAGE, MAX_PER_PAGE, MAX_SEARCH = 100, 500, 200
LISTING_ARGS = ("q", "system", "backend", "state", "sort", "dir", "page", "per")  # the JSON API pages only when asked to


@dataclass(frozen=True)
class QueueQuery:
    """What the operator asked the queue table for (the overview's query string)."""

    q: str = ""
    system: str = ""
    backend: str = ""
    state: str = ""
    sort: str = "name"
    descending: bool = False
    page: int = 1
    per: int = PER_PAGE

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.system or self.backend or self.state)

    def args(self, **changes: Any) -> dict[str, str | int]:
        """The query string of this query with ``changes``, defaults left out (short, bookmarkable URLs)."""
        query = replace(self, **changes)
        args: dict[str, str | int] = {k: v for k in ("q", "system", "backend", "state") if (v := getattr(query, k))}
        if (query.sort, query.descending) != ("name", False):
            args["sort"] = ("-" if query.descending else "") + query.sort
        if query.page != 1:
            args["page"] = query.page
        if query.per != PER_PAGE:
            args["per"] = query.per
        return args

    def sorted_by(self, column: str) -> dict[str, str | int]:
        """The query string a column header links to: the other direction if sorted by it, else its natural one."""
        descending = not self.descending if column == self.sort else QUEUE_SORTS[column][2]
        return self.args(sort=column, descending=descending, page=1)


def _whole(raw: str, name: str, low: int, high: int) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and low <= int(raw) <= high):
        raise BadRequest(f"{name} must be a whole number from {low:,} to {high:,}, not {raw!r}")
    return int(raw)


def queue_query(args: Mapping[str, str], backends: Collection[str]) -> QueueQuery:
    """The queue table's query from request arguments. Raises BadRequest; empty values mean "any"."""
    q = args.get("q", "").strip()
    if len(q) > MAX_SEARCH:
        raise BadRequest(f"the search text is too long ({len(q):,} characters; at most {MAX_SEARCH})")
    system = args.get("system", "").strip().lower()
    if system and system not in SYSTEMS:
        raise BadRequest(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
    backend = args.get("backend", "").strip()
    if backend and backend not in backends:
        raise BadRequest(f"unknown backend {backend!r}; configured: {', '.join(sorted(backends)) or 'none'}")
    state = args.get("state", "").strip().lower()
    state = STATE_ALIASES.get(state, state)
    if state and state not in QUEUE_STATES:
        raise BadRequest(f"unknown state {state!r}; known: {', '.join(QUEUE_STATES)}")
    sort = args.get("sort", "").strip().lower() or "name"
    descending = sort.startswith("-")
    sort = SORT_ALIASES.get(sort.lstrip("-"), sort.lstrip("-"))
    if sort not in QUEUE_SORTS:
        raise BadRequest(f"unknown sort {sort!r}; known: {', '.join(QUEUE_SORTS)} (a leading - or dir=desc sorts descending)")
    direction = args.get("dir", "").strip().lower()
    if direction not in ("", "asc", "desc"):
        raise BadRequest(f"dir must be asc or desc, not {direction!r}")
    if descending and direction == "asc":
        raise BadRequest("sort has a leading - (descending) but dir=asc; send one or the other")
    descending = descending or direction == "desc"
    page = _whole(args.get("page", "").strip() or "1", "page", 1, 1_000_000)
    per = _whole(args.get("per", "").strip() or str(PER_PAGE), "per", 1, MAX_PER_PAGE)
    return QueueQuery(q, system, backend, state, sort, descending, page, per)


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue table, and where it sits among all queues."""

    query: QueueQuery  # page clamped to the pages there are
    rows: list[QueueStats]
    total: int  # every queue in the snapshot
    matched: int  # queues that pass the search and filters
    pages: int
    first: int  # 1-based position of the first row shown, 0 if none
    last: int


def queue_page(queues: Sequence[QueueStats], query: QueueQuery, alerting: Collection[tuple[str, str, str]] = ()) -> QueuePage:
    """Search, filter, sort (unknown counts last either way) and cut one page. Pure; O(queues)."""
    needle = query.q.casefold()
    test = QUEUE_STATES[query.state][1] if query.state and query.state != "alerting" else None
    matched = [
        q for q in queues
        if (not needle or needle in q.name.casefold() or needle in q.backend.casefold() or needle in q.system)
        and (not query.system or q.system == query.system)
        and (not query.backend or q.backend == query.backend)
        and (test is None or test(q))
        and (query.state != "alerting" or (q.backend, q.system, q.name) in alerting)
    ]  # fmt: skip
    # Ties keep name order in both directions: sort by name first, then (stably) by the column.
    matched.sort(key=lambda q: (q.name.casefold(), q.name, q.backend, q.system))
    value = QUEUE_SORTS[query.sort][1]
    if query.sort != "name":
        known = [q for q in matched if value(q) is not None]
        known.sort(key=value, reverse=query.descending)
        matched = known + [q for q in matched if value(q) is None]
    elif query.descending:
        matched.reverse()
    pages = max(1, -(-len(matched) // query.per))
    # A bookmark or a refresh past the end (queues went away) shows the last page rather than nothing.
    query = replace(query, page=min(query.page, pages))
    start = (query.page - 1) * query.per
    rows = matched[start : start + query.per]
    return QueuePage(query, rows, len(queues), len(matched), pages, start + 1 if rows else 0, start + len(rows))


@dataclass(frozen=True)
class QueueTotals:
    """One backend's queues summed (unknown counts count as none)."""

    backend: str
    queues: int
    depth: int
    failed: int


def queue_totals(queues: Iterable[QueueStats]) -> list[QueueTotals]:
    """Per backend, over every queue: what the top of the overview says whatever page is shown.
    Each dead letter counts once, as failed: a dead-letter queue's messages are not waiting, and a
    source whose failed count is its DLQ's messages is not counted again where that DLQ is a row."""
    queues = list(queues)
    rows = {(q.backend, q.system, q.name) for q in queues}
    sums: dict[str, list[int]] = {}
    for q in queues:
        row = sums.setdefault(q.backend, [0, 0, 0])
        row[0] += 1
        if not q.dead_letters_of:
            row[1] += q.depth or 0
        if q.failed_in is None or (q.backend, q.system, q.failed_in) not in rows:
            row[2] += q.failed or 0
    return [QueueTotals(backend, *row) for backend, row in sums.items()]


@dataclass(frozen=True)
class Attention:
    """What the first screen of the overview points at: backends down, queues failing, backlogs nobody works."""

    down: tuple[str, ...]
    failing: tuple[QueueStats, ...]  # most failed first (at most ATTENTION_ROWS)
    failing_count: int
    unworked: tuple[QueueStats, ...]  # waiting with no (known) workers, deepest first
    unworked_count: int


ATTENTION_ROWS = 5


def attention(backends: Iterable[Any], queues: Iterable[QueueStats]) -> Attention:
    queues = list(queues)
    failing = sorted((q for q in queues if q.failed), key=lambda q: -(q.failed or 0))
    unworked = sorted((q for q in queues if QUEUE_STATES["no-workers"][1](q)), key=lambda q: -(q.depth or 0))
    return Attention(tuple(b.name for b in backends if b.status != "up"), tuple(failing[:ATTENTION_ROWS]), len(failing),
                     tuple(unworked[:ATTENTION_ROWS]), len(unworked))  # fmt: skip


def alerting_queues() -> set[tuple[str, str, str]]:
    """Queues with a firing alert (read only when the operator filters on it)."""
    service = current_app.extensions.get("queuewatch.alerts")
    if service is None:
        return set()
    try:
        return {(a.backend, a.system, a.queue) for a in service.firing()}
    except Exception as exc:  # the state store is down: say so rather than show "no queue alerting"
        raise BadRequest(f"the alert state cannot be read right now ({exc}); try again, or filter on something else") from exc
