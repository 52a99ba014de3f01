"""``GET /metrics``: Prometheus exposition through ``prometheus_client``.

A custom collector reads the shared snapshot (queues, backends, workers) and
the alert states from the state store at each scrape, so a queue that went
away leaves no stale series behind. Names and labels are stable (README,
"Metrics"); ``prometheus_client`` does the escaping and the format.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from queuewatch.alerts.rules import STATE_NUMBER
from queuewatch.snapshots.monitor import Snapshot

from . import monitor

bp = Blueprint("metrics", __name__)

QUEUE_SERIES = (
    ("depth", "Jobs waiting to run."),
    ("in_progress", "Jobs being run by a worker."),
    ("scheduled", "Jobs waiting for a time or a dependency."),
    ("failed", "Failed or dead-lettered jobs."),
    ("workers", "Live workers listening to the queue."),
    ("oldest_age_seconds", "Age of the oldest waiting job, in seconds."),
)
QUEUE_LABELS = ["backend", "system", "queue"]


class SnapshotCollector:
    """One scrape's metrics, made from one snapshot and the alert states."""

    def __init__(self, snapshot: Snapshot, alerts: list | None) -> None:
        self.snapshot = snapshot
        self.alerts = alerts

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        for field, help_text in QUEUE_SERIES:
            family = GaugeMetricFamily(f"queuewatch_queue_{field}", help_text, labels=QUEUE_LABELS)
            for q in snapshot.queues:
                value = getattr(q, field)
                if value is not None:
                    family.add_metric([q.backend, q.system, q.name], value)
            yield family
        up = GaugeMetricFamily("queuewatch_backend_up", "1 if the backend answered the last snapshot.", labels=["backend", "kind"])
        for b in snapshot.backends:
            up.add_metric([b.name, b.kind], int(b.status == "up"))
        yield up
        workers = GaugeMetricFamily("queuewatch_workers", "Registered workers by liveness.", labels=["backend", "system", "alive"])
        counts: dict[tuple[str, str, bool], int] = {}
        for w in snapshot.workers:
            counts[(w.backend, w.system, w.alive)] = counts.get((w.backend, w.system, w.alive), 0) + 1
        for (backend, system, alive), count in sorted(counts.items()):
            workers.add_metric([backend, system, str(alive).lower()], count)
        yield workers
        if self.alerts is None:  # the state store is down: the queue series are still worth serving
            return
        labels = [*QUEUE_LABELS, "rule"]
        state = GaugeMetricFamily("queuewatch_alert_state",
                                  "Alert state per queue and rule condition: 0 ok, 1 pending, 2 firing.", labels=labels)  # fmt: skip
        threshold = GaugeMetricFamily("queuewatch_alert_threshold", "The threshold of the rule condition.", labels=labels)
        for a in self.alerts:
            state.add_metric([a.backend, a.system, a.queue, a.condition], STATE_NUMBER[a.state])
            threshold.add_metric([a.backend, a.system, a.queue, a.condition], a.threshold)
        yield state
        yield threshold


def _alerts() -> list | None:
    try:
        return current_app.extensions["queuewatch.alerts"].alerts()
    except Exception as exc:
        current_app.logger.warning("no alert series in /metrics: %s", exc)
        return None


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of every queue, backend, worker count and alert."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(monitor().snapshot(), _alerts()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})  # fmt: skip
