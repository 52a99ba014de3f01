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
    (
        "paused",
        "1 if workers were told to take none of the queue's jobs, 0 if not; absent where the system cannot pause one queue.",
    ),
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


# -- per-function metrics (issue 18) ----------------------------------------------------------
# From the state store only (what the sampler wrote), never from a backend. Label cardinality
# is bounded by the store's caps (app/functions/service.py): at most MAX_SERIES (2,000)
# (backend, system, queue, function) label sets in all, MAX_PER_QUEUE (200) functions per queue;
# jobs of further functions count under function="(other)" of their queue, and past 2,000 series
# they are dropped (queuewatch_function_dropped_total says how many, since the process started).
# _count and _sum are cumulative since the store began; the quantiles cover the last 5 minutes.

FUNCTION_LABELS = ["backend", "system", "queue", "function"]


class FunctionCollector:
    """One scrape's per-function summaries and counters."""

    def __init__(self, service) -> None:  # type: ignore[no-untyped-def]
        self.service = service

    def collect(self) -> Iterator[Metric]:
        from queuewatch.functions.service import METRICS_WINDOW
        from queuewatch.functions.store import key_of

        recent = {(r.backend, r.system, r.queue, r.function): r for r in self.service.table(METRICS_WINDOW)}
        runtime = Metric("queuewatch_function_runtime_seconds", "Job runtime (start to end) per function; quantiles over the "
                         "last 5 minutes, count and sum since the dashboard's store began.", "summary")  # fmt: skip
        wait = Metric("queuewatch_function_wait_seconds", "Job wait (enqueue to start) per function; quantiles over the last "
                      "5 minutes, count and sum since the dashboard's store began.", "summary")  # fmt: skip
        failed = Metric("queuewatch_function_failed", "Jobs of the function that failed, since the store began.", "counter")
        for series, (processed, failures, runtime_sum, wait_sum) in sorted(self.service.totals().items()):
            key = key_of(series)
            if key is None:
                continue
            labels = dict(zip(FUNCTION_LABELS, key))
            measures = self.service.measures(key[0], key[1])
            row = recent.get(key)
            if "runtime" in measures:
                for q, value in (("0.5", row and row.runtime_p50), ("0.95", row and row.runtime_p95)):
                    if value is not None:
                        runtime.add_sample(runtime.name, labels | {"quantile": q}, value)
                runtime.add_sample(runtime.name + "_count", labels, processed)
                runtime.add_sample(runtime.name + "_sum", labels, runtime_sum)
            if "wait" in measures:
                for q, value in (("0.5", row and row.wait_p50), ("0.95", row and row.wait_p95)):
                    if value is not None:
                        wait.add_sample(wait.name, labels | {"quantile": q}, value)
                wait.add_sample(wait.name + "_count", labels, processed)
                wait.add_sample(wait.name + "_sum", labels, wait_sum)
            if "failed" in measures:
                failed.add_sample(failed.name + "_total", labels, failures)
        yield runtime
        yield wait
        yield failed
        dropped = Metric("queuewatch_function_dropped", "Jobs not counted per function: past the cap of series.", "counter")
        dropped.add_sample(dropped.name + "_total", {}, self.service.dropped)
        yield dropped


@bp.after_request
def _append_function_metrics(response: Response) -> Response:
    """Per-function families after the others (their names are their own), unless the store is down."""
    service = current_app.extensions.get("queuewatch.functions")
    if response.status_code != 200 or service is None:
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FunctionCollector(service))
    try:
        extra = generate_latest(registry)
    except Exception as exc:
        current_app.logger.warning("no per-function series in /metrics: %s", exc)
        return response
    response.set_data(response.get_data() + extra)
    return response
