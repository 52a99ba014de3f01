"""Celery beat as celery-redbeat keeps it on Redis: each entry's definition, last run and next run.

redbeat (``redbeat.RedBeatScheduler``) keeps ``redbeat::schedule`` (a sorted set: entry key
-> when it is due next, Unix seconds) and per entry the hash ``redbeat:NAME`` with
``definition`` (JSON: name, task, args, kwargs, options, schedule as
``{"__type__": "interval", "every": S}`` or ``"crontab"``, enabled) and ``meta``
(``last_run_at`` as ``{"__type__": "datetime", year…, "timezone"}``, ``total_run_count``).
Read in two round trips, bounded, never written. Celery's default file-based beat keeps
its schedule in a local shelve file: nothing of it reaches the broker.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from queuewatch.adapters.periodic import Periodic, every

SCHEDULE_KEY = "redbeat::schedule"
MAX_ENTRIES = 500
FIELD_LIMIT = 64 * 1024  # bytes of one entry's definition or meta read at most


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, dict) or value.get("__type__") != "datetime":
        return None
    try:
        zone = value.get("timezone")
        tz = (timezone(timedelta(seconds=float(zone))) if isinstance(zone, (int, float))
              else ZoneInfo(zone) if isinstance(zone, str) and zone not in ("UTC", "") else timezone.utc)  # fmt: skip
        return datetime(int(value["year"]), int(value["month"]), int(value["day"]), int(value["hour"]),
                        int(value["minute"]), int(value["second"]), int(value.get("microsecond") or 0), tzinfo=tz)  # fmt: skip
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _json(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, bytes) or len(raw) > FIELD_LIMIT:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _crontab(spec: dict[str, Any]) -> str:
    return " ".join(str(spec.get(k, "*")) for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))


class RedBeat:
    """Mixed into the Celery-on-Redis adapter."""

    backend: str
    system: str
    client: Any

    def periodic(self) -> list[Periodic]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(SCHEDULE_KEY)
            pipe.zrange(SCHEDULE_KEY, 0, MAX_ENTRIES - 1, withscores=True)
            count, entries = pipe.execute(raise_on_error=False)
        if not isinstance(entries, list) or not entries:
            return []
        keys = [key for key, _ in entries]
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hstrlen(key, "definition")
                pipe.hstrlen(key, "meta")
                pipe.hmget(key, ["definition", "meta"])
            replies = pipe.execute(raise_on_error=False)
        found = []
        more = (f"redbeat schedules {count:,} entries: the first {MAX_ENTRIES:,} by next run are shown.",) \
            if isinstance(count, int) and count > MAX_ENTRIES else ()  # fmt: skip
        for n, (key, score) in enumerate(entries):
            sizes, fields = replies[3 * n : 3 * n + 2], replies[3 * n + 2]
            if not isinstance(fields, list) or any(not isinstance(s, int) or s > FIELD_LIMIT for s in sizes):
                continue
            definition, meta = _json(fields[0]), _json(fields[1])
            if not definition:
                continue
            found.append(self._entry(key, score, definition, meta, more))
        return found

    def _entry(self, key: bytes, score: float, definition: dict[str, Any], meta: dict[str, Any], notes: tuple[str, ...]) -> Periodic:
        spec = definition.get("schedule") if isinstance(definition.get("schedule"), dict) else {}
        last = _moment(meta.get("last_run_at"))
        nxt = datetime.fromtimestamp(score, timezone.utc) if isinstance(score, (int, float)) and score > 0 else None
        interval: float | None = None
        if spec.get("__type__") == "interval" and isinstance(spec.get("every"), (int, float)):
            interval = float(spec["every"])
            schedule = every(interval)
        elif spec.get("__type__") == "crontab":
            schedule = f"crontab {_crontab(spec)}"
            if last and nxt and nxt > last:
                interval = (nxt - last).total_seconds()
        else:
            schedule = str(spec.get("__type__") or "unknown schedule")
        options = definition.get("options") if isinstance(definition.get("options"), dict) else {}
        queue = options.get("queue") if isinstance(options.get("queue"), str) else "celery"
        extra = list(notes)
        if definition.get("enabled") is False:
            extra.append("Disabled: beat does not send it.")
        runs = meta.get("total_run_count")
        return Periodic(backend=self.backend, system=self.system, queue=queue, name=str(definition.get("name") or key.decode(errors="replace")),
                        function=str(definition.get("task") or "") or None, schedule=schedule, interval_seconds=interval,
                        last_run=last, last_outcome=None, next_run=nxt, runner="celery beat (celery-redbeat)",
                        source=f"{key.decode(errors='replace')} and {SCHEDULE_KEY} (beat records when it sent a task, not how it ended)",
                        runs=runs if isinstance(runs, int) else None, notes=tuple(extra))  # fmt: skip
