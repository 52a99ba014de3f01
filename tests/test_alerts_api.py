"""Alerts through the API and the sampler over real RQ data (Redis database 5):
rules CRUD, rules surviving a restart, firing and resolving with exactly one
notification each (also across a handover), webhooks and their test button,
and /metrics read by Prometheus's own parser."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import csrf_token, run_rq_worker
from prometheus_client.parser import text_string_to_metric_families
from webhook_receiver import Receiver, webhook_receiver

from queuewatch import create_app

pytestmark = pytest.mark.redis_db(5)
RULE = "/api/v1/alerts/rules/redis/rq/emails"


def make_app(redis_url: str, state: Path, **extra):
    return create_app({"TESTING": True, "REDIS": [redis_url], "RABBITMQ": ["none"], "STATE": str(state), "POLL": 1, **extra})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def app(redis_url: str, tmp_path: Path, receiver: Receiver):
    app = make_app(redis_url, tmp_path / "state.sqlite3", WEBHOOK=[receiver.url])
    yield app
    app.extensions["queuewatch.monitor"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def tick(app) -> None:
    """One sampler interval: a fresh snapshot, history, alert evaluation."""
    app.extensions["queuewatch.monitor"].changed()
    app.extensions["queuewatch.sampler"].tick()


def alerts_of(client) -> list[dict]:
    return client.get("/api/v1/alerts").get_json()["alerts"]


def metrics(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as Prometheus parses it: (name, sorted labels) -> value."""
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_rules_are_created_listed_replaced_and_deleted(client) -> None:
    answer = client.put(RULE, json={"max_depth": 5, "for_seconds": 30})
    assert answer.status_code == 200
    assert (answer.get_json()["max_depth"], answer.get_json()["for_seconds"]) == (5, 30)
    client.put("/api/v1/alerts/rules/*/*/*", json={"max_depth": 1000, "min_workers": 1})
    rules = client.get("/api/v1/alerts/rules").get_json()["rules"]
    assert [(r["backend"], r["system"], r["queue"], r["max_depth"], r["for_seconds"], r["pattern"]) for r in rules] == [
        ("*", "*", "*", 1000, 0, True), ("redis", "rq", "emails", 5, 30, False)]  # fmt: skip
    assert client.put(RULE, json={"max_depth": 8, "for_seconds": 0}).get_json()["max_depth"] == 8
    assert client.delete(RULE).status_code == 204
    assert client.delete(RULE).status_code == 404
    assert [r["queue"] for r in client.get("/api/v1/alerts/rules").get_json()["rules"]] == ["*"]
    # Every change is in the audit log, newest first, refused ones too.
    log = [(e["action"], e["queue"], e["result"]) for e in client.get("/api/v1/audit?limit=10").get_json()["entries"]]
    assert log[:3] == [("remove_rule", "emails", "refused (404)"), ("remove_rule", "emails", "ok"), ("put_rule", "emails", "ok")]


def test_bad_rules_are_refused_with_400(client) -> None:
    for body in ({}, {"max_depth": -1}, {"max_depth": "many"}, {"max_depth": 5, "for_seconds": "soon"}):
        answer = client.put(RULE, json=body)
        assert answer.status_code == 400, body
        assert answer.get_json()["error"]["code"] == "bad_request"
    assert client.put(RULE, data="max_depth=5", content_type="application/x-www-form-urlencoded").status_code in (400, 403)


def test_a_rule_survives_a_restart(redis_url: str, tmp_path: Path) -> None:
    first = make_app(redis_url, tmp_path / "state.sqlite3")
    first.test_client().put("/api/v1/alerts/rules/redis/rq/a%2Fb", json={"max_depth": 5, "for_seconds": 2})
    first.extensions["queuewatch.monitor"].close()
    second = make_app(redis_url, tmp_path / "state.sqlite3")
    rules = second.test_client().get("/api/v1/alerts/rules").get_json()["rules"]
    second.extensions["queuewatch.monitor"].close()
    assert [(r["queue"], r["max_depth"], r["for_seconds"]) for r in rules] == [("a/b", 5, 2)]


def test_the_queue_page_form_sets_the_rule_and_needs_its_csrf_token(client, r) -> None:
    rq.Queue("emails", connection=r).enqueue(rq_tasks.add, 1, 2)
    form = {"max_depth": "5", "for_seconds": "2", "min_workers": ""}
    assert client.post("/queues/redis/rq/emails/alert-rule", data=form).status_code == 403
    answer = client.post("/queues/redis/rq/emails/alert-rule", data=form | {"csrf_token": csrf_token(client)})
    assert answer.status_code == 303
    page = client.get("/queues/redis/rq/emails").get_data(as_text=True)
    assert 'data-alert-threshold="5"' in page and "more than 5 waiting for 2s" in page
    assert client.get("/api/v1/alerts/rules").get_json()["rules"][0]["min_workers"] is None


def test_ten_jobs_over_a_threshold_of_five_fire_once_and_resolve_once_after_the_queue_drains(app, client, r, redis_url, receiver) -> None:
    client.put(RULE, json={"max_depth": 5, "for_seconds": 0})
    emails = rq.Queue("emails", connection=r)
    for i in range(10):
        emails.enqueue(rq_tasks.add, i, i)
    tick(app)
    tick(app)
    (alert,) = [a for a in alerts_of(client) if a["rule"] == "max_depth"]
    assert (alert["state"], alert["value"], alert["threshold"]) == ("firing", 10, 5)
    assert alert["since"].endswith("Z")
    firing = receiver.wait_for("firing", 1)
    assert firing[0]["alert"]["queue"] == "emails" and "waiting jobs 10 > 5" in firing[0]["text"]
    page = client.get("/").get_data(as_text=True)
    assert "1 alert firing" in page and 'data-alert="redis/rq/emails/max_depth"' in page

    seen = metrics(client)
    labels = (("backend", "redis"), ("queue", "emails"), ("rule", "max_depth"), ("system", "rq"))
    assert seen[("queuewatch_alert_state", labels)] == 2
    assert seen[("queuewatch_alert_threshold", labels)] == 5
    queue = (("backend", "redis"), ("queue", "emails"), ("system", "rq"))
    for series in ("depth", "in_progress", "scheduled", "failed", "workers"):
        assert ("queuewatch_queue_" + series, queue) in seen, series
    assert seen[("queuewatch_queue_depth", queue)] == 10
    assert ("queuewatch_backend_up", (("backend", "redis"), ("kind", "redis"))) in seen

    run_rq_worker(redis_url, "emails")
    tick(app)
    tick(app)
    resolved = receiver.wait_for("resolved", 1)
    assert resolved[0]["alert"]["peak"] == 10
    assert [a["state"] for a in alerts_of(client)] == ["ok"]
    history = client.get("/api/v1/alerts/history").get_json()["alerts"]
    assert [(h["queue"], h["state"], h["peak"]) for h in history] == [("emails", "resolved", 10)]
    assert history[0]["start"] <= history[0]["end"]
    assert metrics(client)[("queuewatch_alert_state", labels)] == 0
    assert app.extensions["queuewatch.alerts"].notifier.pending() == 0
    assert (len(receiver.events("firing")), len(receiver.events("resolved"))) == (1, 1)


def test_a_default_rule_applies_to_every_matching_queue_without_its_own(app, client, r) -> None:
    client.put("/api/v1/alerts/rules/redis/rq/*", json={"max_depth": 2})
    client.put("/api/v1/alerts/rules/redis/rq/reports", json={"max_depth": 100})
    for name in ("emails", "reports", "sms"):
        for i in range(3):
            rq.Queue(name, connection=r).enqueue(rq_tasks.add, i, i)
    tick(app)
    assert sorted((a["queue"], a["state"], a["threshold"]) for a in alerts_of(client)) == [
        ("emails", "firing", 2), ("reports", "ok", 100), ("sms", "firing", 2)]  # fmt: skip
    page = client.get("/queues/redis/rq/sms").get_data(as_text=True)
    assert 'data-alert-threshold="2"' in page and "default rule redis/rq/*" in page


def test_a_replica_that_re_evaluates_a_transition_already_claimed_does_not_notify_again(app, client, r, redis_url,
                                                                                       tmp_path, receiver) -> None:  # fmt: skip
    """The holder claims and sends, then dies before saving its states: the next holder derives the
    same transition from the same stored state, its claim fails, nothing is sent twice."""
    client.put(RULE, json={"max_depth": 5})
    tick(app)  # the rule's alert exists, ok
    store = app.extensions["queuewatch.store"]
    before = store.alert_states()
    for i in range(10):
        rq.Queue("emails", connection=r).enqueue(rq_tasks.add, i, i)
    tick(app)
    receiver.wait_for("firing", 1)
    store.put_alert_states(before, [])  # as if the holder had died before saving its states
    other = make_app(redis_url, tmp_path / "state.sqlite3", WEBHOOK=[receiver.url])
    try:
        other.extensions["queuewatch.sampler"].holder = "replica-2"
        app.extensions["queuewatch.sampler"].stop()  # hands the lease over
        tick(other)
        assert [a["state"] for a in alerts_of(other.test_client())] == ["firing"]
    finally:
        other.extensions["queuewatch.monitor"].close()
    assert len(receiver.wait_for("firing", 1)) == 1
    assert all(json.dumps(b).count("firing") for b in receiver.bodies)
    assert len(receiver.bodies) == 1


def test_failed_deliveries_are_retried_with_backoff(app, client, r, receiver) -> None:
    receiver.fail_next = 2
    client.put(RULE, json={"max_depth": 0})
    rq.Queue("emails", connection=r).enqueue(rq_tasks.add, 1, 1)
    tick(app)
    assert len(receiver.wait_for("firing", 1, timeout=15)) == 1
    assert app.extensions["queuewatch.alerts"].notifier.delivered == 1


def test_webhooks_are_stored_and_the_test_button_posts_to_each(app, client, receiver) -> None:
    answer = client.put("/api/v1/alerts/webhooks", json={"webhooks": [{"url": receiver.url + "/slack", "format": "slack"}]})
    assert answer.status_code == 200
    listed = client.get("/api/v1/alerts/webhooks").get_json()
    origin = receiver.url.rsplit("/", 1)[0]  # http://127.0.0.1:PORT
    [stored], [configured] = listed["webhooks"], listed["configured"]
    assert stored["format"] == "slack" and stored["url"].startswith(origin + "/…#") and "slack" not in stored["url"]
    assert configured["url"].startswith(origin + "/…#") and "hook" not in configured["url"]
    # The path is the secret (Slack's token): never on the page or in the API; the shown form keeps the target.
    page = client.get("/alerts").get_data(as_text=True)
    assert "/slack" not in page and receiver.url not in page and stored["url"] in page
    kept = client.put("/api/v1/alerts/webhooks", json={"webhooks": [stored]})
    assert kept.status_code == 200 and kept.get_json()["webhooks"] == [stored]
    assert app.extensions["queuewatch.alerts"].webhooks()[0].url == receiver.url + "/slack"
    assert client.post("/alerts/webhooks", data={"csrf_token": csrf_token(client), "webhooks": f"slack={stored['url']}\n"}).status_code == 303
    assert app.extensions["queuewatch.alerts"].webhooks()[0].url == receiver.url + "/slack"
    gone = client.put("/api/v1/alerts/webhooks", json={"webhooks": [{"url": origin + "/…#000000"}]})
    assert gone.status_code == 400 and "whole URL" in gone.get_json()["error"]["message"]
    assert client.put("/api/v1/alerts/webhooks", json={"webhooks": ["ftp://x"]}).status_code == 400
    results = client.post("/api/v1/alerts/webhooks/test", json={}).get_json()["results"]
    assert [r["ok"] for r in results] == [True, True]
    assert receiver.events("test")[0]["text"].startswith("queuewatch test")
    assert {"text": "queuewatch test notification: webhooks work."} in receiver.bodies  # the Slack-compatible one
    answer = client.post("/alerts/webhooks/test", data={"csrf_token": csrf_token(client)})
    assert answer.status_code == 303
    assert "Test sent to" in client.get("/alerts").get_data(as_text=True)


def test_a_bad_webhook_flag_is_a_usage_error(tmp_path: Path) -> None:
    queuewatch = Path(sys.executable).with_name("queuewatch")
    done = subprocess.run([str(queuewatch), "serve", "--state", str(tmp_path / "s.sqlite3"), "--webhook", "ftp://example.com/x"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "--webhook" in done.stderr and "http://" in done.stderr


def test_an_alert_is_acknowledged_and_silenced_for_every_viewer_and_a_silence_holds_back_notifications(
        app, client, r, redis_url, receiver) -> None:  # fmt: skip
    """Acknowledged: who and when, for this firing episode only, told to the webhooks. Silenced:
    no webhook posts until it ends or is lifted. Refusals are 404 / 409 / 400 in words."""
    client.put(RULE, json={"max_depth": 5, "for_seconds": 0})
    emails = rq.Queue("emails", connection=r)
    for i in range(10):
        emails.enqueue(rq_tasks.add, i, i)
    tick(app)
    receiver.wait_for("firing", 1)
    ack = client.post("/api/v1/alerts/redis/rq/emails/max_depth/acknowledge", json={})
    assert ack.status_code == 200
    assert ack.get_json()["acknowledged"]["by"] == "someone at 127.0.0.1"
    [told] = receiver.wait_for("acknowledged", 1)
    assert "acknowledged redis/rq/emails" in told["text"]
    (alert,) = alerts_of(client)
    assert alert["acknowledged"]["by"] == "someone at 127.0.0.1" and alert["silenced"] is None
    page = client.get("/alerts").get_data(as_text=True)
    assert "acknowledged by someone at 127.0.0.1" in page and "Silence" in page
    # Refused in words: no such alert, no such condition, bad or too long a silence.
    missing = client.post("/api/v1/alerts/redis/rq/nosuch/max_depth/acknowledge", json={})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert client.post("/api/v1/alerts/redis/rq/emails/bogus/acknowledge", json={}).status_code == 404
    for body in ({"seconds": "an hour"}, {"seconds": 8 * 86400}, {"seconds": -1}, {}):
        answer = client.post("/api/v1/alerts/redis/rq/emails/max_depth/silence", json=body)
        assert answer.status_code == 400, body
        assert answer.get_json()["error"]["message"]

    silenced = client.post("/api/v1/alerts/redis/rq/emails/max_depth/silence", json={"seconds": 3600})
    assert silenced.status_code == 200 and silenced.get_json()["silenced"]["until"].endswith("Z")
    receiver.wait_for("silenced", 1)
    run_rq_worker(redis_url, "emails")
    tick(app)
    (alert,) = alerts_of(client)
    assert alert["state"] == "ok" and alert["acknowledged"] is None  # the episode it was said of is over
    for i in range(10):
        emails.enqueue(rq_tasks.add, i, i)
    tick(app)
    (alert,) = alerts_of(client)
    assert alert["state"] == "firing" and alert["acknowledged"] is None  # a new episode pages again ...
    assert client.post("/api/v1/alerts/redis/rq/emails/max_depth/acknowledge", json={}).status_code == 200
    receiver.wait_for("acknowledged", 2)  # delivered in order: anything sent before it has arrived
    assert (len(receiver.events("firing")), len(receiver.events("resolved"))) == (1, 0)  # ... but not while silenced
    # A resolved alert cannot be acknowledged; lifting the silence is said to the webhooks.
    run_rq_worker(redis_url, "emails")
    tick(app)
    not_firing = client.post("/api/v1/alerts/redis/rq/emails/max_depth/acknowledge", json={})
    assert not_firing.status_code == 409 and not_firing.get_json()["error"]["code"] == "not_firing"
    assert client.post("/api/v1/alerts/redis/rq/emails/max_depth/silence", json={"seconds": 0}).status_code == 200
    receiver.wait_for("unsilenced", 1)
    assert alerts_of(client)[0]["silenced"] is None
    for i in range(10):
        emails.enqueue(rq_tasks.add, i, i)
    tick(app)
    receiver.wait_for("firing", 2)
    done = [(e["action"], e["queue"], e["result"]) for e in client.get("/api/v1/audit?limit=50").get_json()["entries"]]
    assert ("api_acknowledge", "emails", "ok") in done and ("api_silence", "emails", "ok") in done
    assert ("api_acknowledge", "emails", "refused (409)") in done


def test_a_firing_alert_back_within_its_level_is_shown_resolving_until_its_hold_ends(app, client, r, redis_url) -> None:
    client.put(RULE, json={"max_depth": 5, "for_seconds": 0})
    emails = rq.Queue("emails", connection=r)
    for i in range(10):
        emails.enqueue(rq_tasks.add, i, i)
    tick(app)
    client.put(RULE, json={"max_depth": 5, "for_seconds": 3600})  # now it must stay clear an hour to resolve
    run_rq_worker(redis_url, "emails")
    tick(app)
    (alert,) = alerts_of(client)
    assert (alert["state"], alert["resolving"], alert["value"]) == ("firing", True, 0)
    assert "resolving" in client.get("/").get_data(as_text=True)
