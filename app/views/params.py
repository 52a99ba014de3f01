"""What views read from requests: query arguments, JSON bodies, selections of
jobs, and where to go back to. Each parser raises ``BadRequest`` (answered 400
with its message) instead of letting bad input reach an adapter."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import request

from queuewatch.adapters.base import ALL, Selection
from queuewatch.snapshots import history
from queuewatch.snapshots.history import MAX_MINUTES, QUEUE_METRICS

MAX_IDS = 10_000  # per request; larger selections use "all"
MAX_PAGE = 500


class BadRequest(ValueError):
    """The request's own fault: answered 400 with the message."""


def selection(ids: object, everything: object) -> Selection:
    """ALL or a list of ids from a request. Raises BadRequest."""
    if everything is True:
        if ids:
            raise BadRequest('send either "ids" or "all": true, not both')
        return ALL
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BadRequest('send "ids": a non-empty list of job ids, or "all": true')
    if len(ids) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS:,} ids per request; use \"all\": true for more")
    return ids


def page_limit(raw: str | None, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def minutes_arg(raw: str | None, default: float = 60) -> float:
    """The span of a history request, in minutes (fractions allowed)."""
    if raw in (None, ""):
        return default
    try:
        minutes = float(raw)
    except ValueError:
        raise BadRequest(f"minutes must be a number, not {raw!r}") from None
    if not 0 < minutes <= MAX_MINUTES:
        raise BadRequest(f"minutes must be more than 0 and at most {MAX_MINUTES:,} (90 days)")
    return minutes


def since_arg(raw: str | None) -> int | None:
    """``since``, an ISO 8601 time (a point's ``t``), as ms since the epoch."""
    if raw in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"since must be an ISO 8601 time such as 2026-11-21T06:48:15Z, not {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def points_arg(raw: str | None, default: int = 4000) -> int:
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise BadRequest("points must be a whole number from 1 to 10000")
    return int(raw)


def fields_arg(raw: str | None) -> tuple[str, ...] | None:
    """Which metrics to answer with (comma-separated); all if absent."""
    if raw in (None, ""):
        return None
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    unknown = [f for f in fields if f not in QUEUE_METRICS]
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(QUEUE_METRICS)}")
    return fields


def json_body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # json raises it, not ValueError, for a body nested thousands deep
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


MAX_SERIES = 500


def series_arg(raw: str | None) -> tuple[str, ...] | None:
    """``series=backend/system/queue,…`` (each part percent-encoded) as store series keys; None: all."""
    if raw in (None, ""):
        return None
    keys = []
    for item in raw.split(","):
        parts = [unquote(p) for p in item.split("/")]
        if len(parts) != 3 or not all(parts):
            raise BadRequest(f"series must be backend/system/queue items, comma-separated, each part percent-encoded; not {item[:80]!r}")
        keys.append(history.series_key(*parts))
    if len(keys) > MAX_SERIES:
        raise BadRequest(f"at most {MAX_SERIES} series per request")
    return tuple(sorted(set(keys)))


def safe_next(raw: str | None, default: str) -> str:
    """Where to go back to after a form: a path on this dashboard, never another site.

    Refused (``default`` instead): anything not starting with one ``/``, a
    backslash (browsers read it as ``/``), control characters and whitespace
    (a tab or newline inside ``/\t/evil.example`` is dropped by the browser,
    leaving ``//evil.example``), a scheme or host, and very long values.
    """
    if not raw or len(raw) > 2000 or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return default
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in raw):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return default
    return raw
