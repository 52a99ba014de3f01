"""What the banner, the alerts page and a queue page read about alerts (template helpers):
firing alerts, warnings (a condition whose reading is unknown where it should be known),
labels in words ("resolving" while a firing alert is held by its clear level), and who
acknowledged or silenced each."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from flask import Flask, g

from queuewatch.views.jinja import ago

from . import rules as alerts
from .marks import Mark
from .rules import FIRING, Alert

if TYPE_CHECKING:
    from .service import AlertService

log = logging.getLogger(__name__)


def label(a: Alert) -> str:
    """"waiting jobs 12 > 5", "resolving: waiting jobs 4 (threshold 5)", "workers unknown"."""
    condition = alerts.CONDITIONS[a.condition]
    value = "—" if a.value is None else f"{a.value:,.6g}"
    if a.resolving:
        return f"resolving: {condition.label} {value} (threshold {a.threshold:,.6g})"
    if a.unknown and a.state != FIRING:
        return f"{condition.label} unknown (threshold {a.threshold:,.6g})"
    return f"{condition.label} {value} {'>' if condition.above else '<'} {a.threshold:,.6g}"


def init_app(app: Flask, service: AlertService) -> None:
    def guarded(read, default):  # the state store is down: pages still render, without the banner
        try:
            return read()
        except Exception as exc:
            log.debug("no alerts on this page: %s", exc)
            return default

    def firing_alerts() -> list[Alert]:
        return guarded(service.firing, [])

    def alert_warnings() -> list[Alert]:
        """Not firing, but a condition cannot be read where it should be (workers unknown)."""
        return guarded(lambda: [a for a in service.alerts() if a.unknown and a.state != FIRING], [])

    def alert_marks() -> dict[str, Mark]:
        if "alert_marks" not in g:
            g.alert_marks = guarded(service.marks, {})
        return g.alert_marks

    def alert_mark(a: Alert) -> dict[str, str | None]:
        """{"acknowledged": "by ann 3m ago", "silenced": "until 14:05 UTC by bob"} (None where not)."""
        mark = alert_marks().get(a.key) or Mark()
        now = int(time.time() * 1000)
        return {
            "acknowledged": f"{mark.acknowledged_by} {ms_ago(mark.acknowledged_at)}" if mark.acknowledged(a) else None,
            "silenced": f"until {clock(mark.silenced_until)} by {mark.silenced_by}" if mark.silenced(now) else None,
        }

    def alerts_for_queue(backend: str, system: str, queue: str) -> list[Alert]:
        return [a for a in service.alerts() if (a.backend, a.system, a.queue) == (backend, system, queue)]

    def clock(ms: int | None) -> str:
        return datetime.fromtimestamp((ms or 0) / 1000, timezone.utc).strftime("%H:%M UTC")

    def number_g(value: float | None) -> str:
        return "—" if value is None else f"{value:,.6g}"

    def ms_ago(ms: int | None) -> str:
        return ago(datetime.fromtimestamp(ms / 1000, timezone.utc)) if ms else "—"

    app.jinja_env.globals.update(firing_alerts=firing_alerts, alert_warnings=alert_warnings, alerts_for_queue=alerts_for_queue,
                                 alert_label=label, alert_mark=alert_mark, alert_rule=service.rule,
                                 alert_rule_for=service.rule_for)  # fmt: skip
    app.jinja_env.filters.update(number_g=number_g, ms_ago=ms_ago)
