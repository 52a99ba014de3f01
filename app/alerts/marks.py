"""What operators said about alerts: acknowledged (who, when: for the firing episode it was
said of, so the next episode pages again) and silenced (until when: no webhook posts for it
meanwhile). Kept in the state store so every viewer and every replica sees them; pure
functions here, the service stores them and tells the webhooks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from .rules import FIRING, Alert

MARKS_SETTING = "alerts.marks"
MAX_SILENCE_SECONDS = 7 * 86400
KEEP_MARKS = 10_000  # marks of alerts that no longer exist are dropped beyond this


@dataclass(frozen=True)
class Mark:
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None  # ms
    episode: int | None = None  # the firing episode (Alert.started) the acknowledgement is for
    silenced_by: str | None = None
    silenced_at: int | None = None
    silenced_until: int | None = None  # ms

    def acknowledged(self, alert: Alert) -> bool:
        return self.acknowledged_at is not None and alert.state == FIRING and self.episode == alert.started

    def silenced(self, now: int) -> bool:
        return self.silenced_until is not None and now < self.silenced_until


def load(text: str | None) -> dict[str, Mark]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    names = set(Mark.__dataclass_fields__)
    return {key: Mark(**{k: v for k, v in value.items() if k in names}) for key, value in data.items()
            if isinstance(key, str) and isinstance(value, dict)}  # fmt: skip


def dump(marks: dict[str, Mark]) -> str:
    return json.dumps({key: asdict(mark) for key, mark in list(marks.items())[-KEEP_MARKS:]})


def acknowledge(marks: dict[str, Mark], alert: Alert, who: str, now: int) -> dict[str, Mark]:
    """Raises ValueError unless the alert is firing."""
    if alert.state != FIRING:
        raise ValueError("only a firing alert can be acknowledged")
    mark = marks.get(alert.key, Mark())
    return marks | {alert.key: replace(mark, acknowledged_by=who, acknowledged_at=now, episode=alert.started)}


def silence(marks: dict[str, Mark], key: str, who: str, seconds: float, now: int) -> dict[str, Mark]:
    """Silence for ``seconds`` (0 lifts it). Raises ValueError outside 0 … 7 days."""
    if not 0 <= seconds <= MAX_SILENCE_SECONDS:
        raise ValueError(f"a silence lasts from 0 to {MAX_SILENCE_SECONDS // 86400} days")
    mark = marks.get(key, Mark())
    if seconds == 0:
        return marks | {key: replace(mark, silenced_by=who, silenced_at=now, silenced_until=None)}
    return marks | {key: replace(mark, silenced_by=who, silenced_at=now, silenced_until=now + int(seconds * 1000))}


def mark_json(mark: Mark | None, alert: Alert, now: int, when: Any) -> dict[str, Any]:
    """The API fields of a mark (``when`` turns ms into ISO text)."""
    mark = mark or Mark()
    acked = mark.acknowledged(alert)
    silenced = mark.silenced(now)
    return {
        "acknowledged": {"by": mark.acknowledged_by, "at": when(mark.acknowledged_at)} if acked else None,
        "silenced": {"by": mark.silenced_by, "at": when(mark.silenced_at), "until": when(mark.silenced_until)}
        if silenced else None,
    }  # fmt: skip
