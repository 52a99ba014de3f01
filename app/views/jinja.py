"""Template helpers (Jinja filters): numbers, times, durations and decoded values the way an operator reads them."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone

from flask import Flask, current_app

from queuewatch.adapters.decoding import payload
from queuewatch.alerts import rules as alert_rules


def number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def quantity(count: int | None, noun: tuple[str, str]) -> str:
    """"1 failed job", "3 dead letters"."""
    if count is None:
        return f"some {noun[1]}"
    return f"{count:,} {noun[0] if count == 1 else noun[1]}"


def duration(seconds: float | None) -> str:
    """3s, 4m 10s, 2h 5m, 3d 4h."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{seconds}s"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    delta = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    return "just now" if abs(delta) < 1 else (f"{duration(delta)} ago" if delta > 0 else f"in {duration(-delta)}")


def isotime(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def display(value: object) -> str:
    """A decoded argument as readable text (never code): pickled objects as module.Class(...)."""
    return payload.render(value, limit=20_000)


def digest(value: str) -> str:
    """A short stable token for a name of any characters (an element id)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fromtimestamp(seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime (for ``when``)."""
    return datetime.fromtimestamp(seconds, timezone.utc)


def dictremove(mapping: dict[str, str], *names: str) -> dict[str, str]:
    """A copy of ``mapping`` without ``names``: a filter's URL with one condition taken off."""
    return {k: v for k, v in mapping.items() if k not in names}


def merged(mapping: dict, more: dict) -> dict:
    """Two sets of URL arguments as one (Jinja calls take one ``**``)."""
    return {**mapping, **more}


STORE_TROUBLE_SECONDS = 600.0  # a store failure this recent is shown on every page


def store_trouble() -> list[str]:
    """What every page says about the dashboard's own store: a recent failure, and what happened to its file."""
    store = current_app.extensions["queuewatch.store"]
    found = list(store.notices[-3:])
    failed = store.last_write_error
    if failed is not None and time.time() - failed[0] < STORE_TROUBLE_SECONDS:
        found.append(f"The dashboard's own store ({store.location}) cannot be written: {failed[1]}. History, alert "
                     "states, rules, operations and the audit log are not being saved until it can.")  # fmt: skip
    return found


def rule_summary(rule: alert_rules.Rule) -> str:
    return alert_rules.summary(rule, duration)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["store_trouble"] = store_trouble
    app.jinja_env.filters.update(number=number, quantity=quantity, duration=duration, ago=ago, isotime=isotime, display=display,
                                 digest=digest, dictremove=dictremove, merged=merged, fromtimestamp=fromtimestamp,
                                 rule_summary=rule_summary)  # fmt: skip
