"""Liveness and Prometheus metrics: queues and backends from the shared snapshot,
alert states from the state store. Names and labels are stable (README, Metrics)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from queuewatch.alerts.rules import STATE_NUMBER
from . import monitor

bp = Blueprint("health", __name__)

QUEUE_SERIES = (
    ("depth", "Jobs waiting to run."),
    ("in_progress", "Jobs being run by a worker."),
    ("scheduled", "Jobs waiting for a time or a dependency."),
    ("failed", "Failed or dead-lettered jobs."),
    ("workers", "Live workers listening to the queue."),
    ("oldest_age_seconds", "Age of the oldest waiting job, in seconds."),
)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@bp.get("/healthz")
def healthz() -> Response:
    """The dashboard process answers (backends may still be down: see /api/v1/backends)."""
    return Response("ok\n", mimetype="text/plain")


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of every queue and backend."""
    snapshot = monitor().snapshot()
    lines = []
    for field, help_text in QUEUE_SERIES:
        name = f"queuewatch_queue_{field}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for q in snapshot.queues:
            value = getattr(q, field)
            if value is not None:
                labels = f'backend="{_label(q.backend)}",system="{_label(q.system)}",queue="{_label(q.name)}"'
                lines.append(f"{name}{{{labels}}} {_number(value)}")
    lines += ["# HELP queuewatch_backend_up 1 if the backend answered the last snapshot.", "# TYPE queuewatch_backend_up gauge"]
    for b in snapshot.backends:
        lines.append(f'queuewatch_backend_up{{backend="{_label(b.name)}",kind="{b.kind}"}} {int(b.status == "up")}')
    lines += ["# HELP queuewatch_workers Registered workers by liveness.", "# TYPE queuewatch_workers gauge"]
    counts: dict[tuple[str, str, bool], int] = {}
    for w in snapshot.workers:
        counts[(w.backend, w.system, w.alive)] = counts.get((w.backend, w.system, w.alive), 0) + 1
    for (backend, system, alive), count in sorted(counts.items()):
        lines.append(f'queuewatch_workers{{backend="{_label(backend)}",system="{system}",alive="{str(alive).lower()}"}} {count}')
    lines += alert_lines()
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def alert_lines() -> list[str]:
    """Each alert condition's state (0 ok, 1 pending, 2 firing) and threshold, per queue."""
    try:
        alerts = current_app.extensions["queuewatch.alerts"].alerts()
    except Exception as exc:  # the state store is down: the queue series are still worth serving
        current_app.logger.warning("no alert series in /metrics: %s", exc)
        return []
    lines = ["# HELP queuewatch_alert_state Alert state per queue and rule condition: 0 ok, 1 pending, 2 firing.",
             "# TYPE queuewatch_alert_state gauge"]  # fmt: skip
    thresholds = ["# HELP queuewatch_alert_threshold The threshold of the rule condition.", "# TYPE queuewatch_alert_threshold gauge"]
    for a in alerts:
        labels = f'backend="{_label(a.backend)}",system="{_label(a.system)}",queue="{_label(a.queue)}",rule="{a.condition}"'
        lines.append(f"queuewatch_alert_state{{{labels}}} {STATE_NUMBER[a.state]}")
        thresholds.append(f"queuewatch_alert_threshold{{{labels}}} {_number(a.threshold)}")
    return lines + thresholds
