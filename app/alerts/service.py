"""Alerting at run time: rules, states, history and webhooks through the state
store, evaluated on every snapshot of the sampler that holds the lease.

The decisions are the pure functions of ``rules.py``; this module reads the
rules and the last states from the store on every tick (so a replica that
takes the lease over continues where the last holder stopped), saves the new
states, keeps the history of firing episodes, and notifies each transition
that pages exactly once: its stable id is claimed in the store
(insert-if-absent) before it is handed to the ``Notifier``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask

from queuewatch import config
from queuewatch.adapters.store import StateStore
from queuewatch.snapshots.monitor import Snapshot
from queuewatch.snapshots.sampler import Sampler
from queuewatch.views.jinja import ago, isotime

from . import display
from . import marks as marking
from . import rules as alerts
from .marks import Mark
from .rules import FIRING, Alert, Rule, Transition
from .webhooks import DeliveryError, Notifier, Webhook, parse_webhook

log = logging.getLogger(__name__)

HISTORY_KEEP = 1000
WEBHOOKS_SETTING = "alerts.webhooks"


def when(ms: int | None) -> str | None:
    return None if not ms else isotime(datetime.fromtimestamp(ms / 1000, timezone.utc))


class AlertService:
    def __init__(self, store: StateStore, holder: str = "", configured: list[Webhook] | None = None,
                 notifier: Notifier | None = None) -> None:  # fmt: skip
        self.store = store
        self.holder = holder
        self.configured = list(configured or [])
        self.notifier = notifier or Notifier()
        self.failures = alerts.FailureWindow()

    # -- rules ------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        return [alerts.rule_from_json(text) for text in self.store.alert_rules().values()]

    def rule(self, backend: str, system: str, queue: str) -> Rule | None:
        """The rule stored for exactly this path (a pattern's own path included)."""
        return next((r for r in self.rules() if (r.backend, r.system, r.queue) == (backend, system, queue)), None)

    def rule_for(self, backend: str, system: str, queue: str) -> Rule | None:
        """The rule that applies to a queue: its own, or the most specific default rule."""
        return alerts.rule_for(self.rules(), backend, system, queue)

    def put_rule(self, rule: Rule) -> Rule:
        self.store.put_alert_rule(rule.key, json.dumps(rule.to_json()))
        return rule

    def delete_rule(self, backend: str, system: str, queue: str) -> bool:
        return self.store.delete_alert_rule(json.dumps([backend, system, queue]))

    # -- webhooks ------------------------------------------------------------------

    def webhooks(self) -> list[Webhook]:
        """The targets kept in the store (editable); ``configured`` ones come from --webhook."""
        text = self.store.get(WEBHOOKS_SETTING)
        found = []
        for item in json.loads(text) if text else ():
            try:
                found.append(parse_webhook(item))
            except ValueError as exc:  # stored before it would have been refused: skipped, never fatal
                log.warning("skipping a stored webhook target: %s", exc)
        return found

    def put_webhooks(self, webhooks: list[Webhook]) -> None:
        self.store.put(WEBHOOKS_SETTING, json.dumps([w.to_json() for w in webhooks]))

    def targets(self) -> list[Webhook]:
        seen: dict[tuple[str, str], Webhook] = {}
        for webhook in self.configured + self.webhooks():
            seen.setdefault((webhook.url, webhook.format), webhook)
        return list(seen.values())

    def send_test(self) -> list[tuple[Webhook, str | None]]:
        """Post a test message to every target now, once; (target, error or None) each."""
        message = {"id": f"test-{int(time.time() * 1000)}", "event": "test", "text": "queuewatch test notification: webhooks work.",
                   "alert": None, "sent_at": when(int(time.time() * 1000))}  # fmt: skip
        results: list[tuple[Webhook, str | None]] = []
        for webhook in self.targets():
            try:
                self.notifier.post(webhook, message)
                results.append((webhook, None))
            except DeliveryError as exc:
                results.append((webhook, str(exc)))
        return results

    # -- states and history ------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        found = [alerts.alert_from_json(text) for text in self.store.alert_states().values()]
        return sorted(found, key=lambda a: (-alerts.STATE_NUMBER[a.state], a.backend, a.system, a.queue, a.condition))

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts() if a.state == FIRING]

    def history(self, limit: int = HISTORY_KEEP) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.store.alert_history(limit)]

    # -- acknowledge and silence ---------------------------------------------------------

    def marks(self) -> dict[str, Mark]:
        return marking.load(self.store.get(marking.MARKS_SETTING))

    def find(self, backend: str, system: str, queue: str, condition: str) -> Alert | None:
        key = alerts.alert_key(backend, system, queue, condition)
        text = self.store.alert_states().get(key)
        return alerts.alert_from_json(text) if text else None

    def acknowledge(self, alert: Alert, who: str) -> Mark:
        """Raises ValueError unless it is firing. Every viewer sees it; webhooks are told."""
        now = int(time.time() * 1000)
        marks = marking.acknowledge(self.marks(), alert, who, now)
        self.store.put(marking.MARKS_SETTING, marking.dump(marks))
        self._tell(alert, "acknowledged", f"👀 queuewatch {who} acknowledged {self._where(alert)}", now)
        return marks[alert.key]

    def silence(self, alert: Alert, who: str, seconds: float) -> Mark:
        """Silence its notifications for ``seconds`` (0 lifts the silence). Raises ValueError."""
        now = int(time.time() * 1000)
        marks = marking.silence(self.marks(), alert.key, who, seconds, now)
        self.store.put(marking.MARKS_SETTING, marking.dump(marks))
        if seconds:
            text = f"🔕 queuewatch {who} silenced {self._where(alert)} for {ago_words(seconds)}"
        else:
            text = f"🔔 queuewatch {who} lifted the silence of {self._where(alert)}"
        self._tell(alert, "silenced" if seconds else "unsilenced", text, now)
        return marks[alert.key]

    @staticmethod
    def _where(alert: Alert) -> str:
        return f"{alert.backend}/{alert.system}/{alert.queue} ({alerts.CONDITIONS[alert.condition].label})"

    def _tell(self, alert: Alert, event: str, text: str, now: int) -> None:
        targets = self.targets()
        if targets:
            mark = self.marks().get(alert.key)
            self.notifier.send(targets, {"id": f"{alert.key}#{event}.{now}", "event": event, "text": text,
                                         "alert": alert_json(alert, mark, now), "at": when(now)})  # fmt: skip

    # -- evaluation (the lease holder) -------------------------------------------------

    def evaluate(self, snapshot: Snapshot, now: int | None = None) -> list[Transition]:
        """One step of every alert; persist; claim and notify the transitions that page."""
        now = int(snapshot.taken_at.timestamp() * 1000) if now is None else now
        stored = self.store.alert_states()
        before = {key: alerts.alert_from_json(text) for key, text in stored.items()}
        up = {b.name: b.status == "up" for b in snapshot.backends}
        readings = [alerts.Reading(q.backend, q.system, q.name, q.depth, q.oldest_age_seconds, q.workers, q.failed,
                                   up.get(q.backend, True), q.partial, q.workers_unknown, q.periodic_lateness)
                    for q in snapshot.queues]  # fmt: skip
        readings += [alerts.Reading(name, "", "", None, None, None, None, False) for name, ok in up.items() if not ok]
        after, moves = alerts.evaluate(self.rules(), readings, before, now, self.failures)
        changed = {key: json.dumps(a.to_json()) for key, a in after.items()}
        changed = {key: text for key, text in changed.items() if stored.get(key) != text}
        self.store.put_alert_states(changed, [key for key in before if key not in after])
        for alert in after.values():
            if alert.state == FIRING and alert.started is not None and before.get(alert.key, alert).peak != alert.peak:
                self._record(alert, None)
        marks = self.marks() if any(m.notifies for m in moves) else {}
        for move in moves:
            if move.kind == "firing":
                self._record(move.alert, None)
            elif move.kind == "resolved":
                self._record(move.alert, move.at)
            silenced = marks.get(move.alert.key, Mark()).silenced(move.at)
            if move.notifies and silenced:
                log.info("alert %s (silenced, not sent): %s", move.kind, alerts.describe(move))
            elif move.notifies:
                self._notify(move)
        return moves

    def _record(self, alert: Alert, ended: int | None) -> None:
        started = alert.started or alert.since
        entry = {"backend": alert.backend, "system": alert.system, "queue": alert.queue, "rule": alert.condition,
                 "threshold": alert.threshold, "peak": alert.peak, "value": alert.value,
                 "start": when(started), "end": when(ended), "state": "resolved" if ended else FIRING}  # fmt: skip
        self.store.record_alert(f"{alert.key}@{started}", started, json.dumps(entry), HISTORY_KEEP)

    def _notify(self, move: Transition) -> None:
        targets = self.targets()
        if not targets:
            return
        if not self.store.claim(move.id, self.holder):
            log.info("transition %s was already notified by another process", move.id)
            return
        log.info("alert %s: %s", move.kind, alerts.describe(move))
        self.notifier.send(targets, message(move))


def message(move: Transition) -> dict[str, Any]:
    """The generic JSON payload of a transition (Slack targets get its ``text``)."""
    a = move.alert
    return {
        "id": move.id,
        "event": move.kind,  # "firing" | "resolved"
        "text": ("🔥 " if move.kind == "firing" else "✅ ") + "queuewatch " + alerts.describe(move),
        "alert": alert_json(a),
        "at": when(move.at),
    }


def ago_words(seconds: float) -> str:
    return ago(datetime.now(timezone.utc) - timedelta(seconds=seconds)).removesuffix(" ago")


def alert_json(a: Alert, mark: Mark | None = None, now: int | None = None) -> dict[str, Any]:
    """An alert in API v1 (DESIGN.md), with the rule's condition, peak and start; "resolving"
    while a firing alert is back within its clear level; "unknown" why its reading is unknown;
    who acknowledged or silenced it."""
    now = int(time.time() * 1000) if now is None else now
    return {"backend": a.backend, "system": a.system, "queue": a.queue, "rule": a.condition, "state": a.state,
            "value": a.value, "threshold": a.threshold, "since": when(a.since), "peak": a.peak,
            "started": when(a.started) if a.state == FIRING else None, "resolving": a.resolving,
            "unknown": a.unknown} | marking.mark_json(mark, a, now, when)  # fmt: skip


def init_app(app: Flask, sampler: Sampler) -> AlertService:
    """Keep the service in ``app.extensions`` and evaluate on the sampler's snapshots while it holds the lease."""
    configured = [parse_webhook(spec) for spec in config.split_specs(app.config.get("WEBHOOK"))]
    notifier = Notifier(own=lambda: own_addresses(app), allow_internal=bool(app.config.get("WEBHOOK_ALLOW_INTERNAL")))
    service = AlertService(app.extensions["queuewatch.store"], holder=sampler.holder, configured=configured, notifier=notifier)
    app.extensions["queuewatch.alerts"] = service

    def on_snapshot(snapshot: Snapshot) -> None:
        if sampler.holding or sampler.store is None:
            service.holder = sampler.holder
            service.evaluate(snapshot)

    sampler.on_snapshot(on_snapshot)
    display.init_app(app, service)
    return service


def own_addresses(app: Flask) -> list[tuple[str, int]]:
    """Where this dashboard listens, as (host, port): a webhook must not point back at it."""
    bind = app.config.get("BIND") or ""
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        return []
    names = [host.strip("[]") or "0.0.0.0", "localhost", *config.split_specs(app.config.get("ALLOWED_HOSTS"))]
    return [(name, int(port)) for name in names]
