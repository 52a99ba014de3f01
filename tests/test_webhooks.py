"""One malformed webhook never silences the others, and a webhook cannot be
turned on the dashboard itself or on cloud metadata: targets are checked when
saved and before each delivery, the sender thread survives anything one
delivery raises, and errors are told in words, not as socket errors."""

from __future__ import annotations

import json

import pytest
import rq
import rq_tasks
from conftest import csrf_token, free_port
from test_alerts_api import RULE, make_app, tick
from webhook_receiver import webhook_receiver


pytestmark = pytest.mark.redis_db(5)

MALFORMED = ["http://exa mple.com/x", "http://example.com/\nx", "http://:80/x", "http://example.com:99999/x", "http://", "ftp://x"]


def test_malformed_urls_are_refused_when_saved(tmp_path, redis_url) -> None:
    app = make_app(redis_url, tmp_path / "s.sqlite3")
    try:
        client = app.test_client()
        for url in MALFORMED:
            answer = client.put("/api/v1/alerts/webhooks", json={"webhooks": [{"url": url}]})
            assert answer.status_code == 400, url
        token = csrf_token(client)
        client.post("/alerts/webhooks", data={"csrf_token": token, "webhooks": "http://exa mple.com/x"})
        assert client.get("/api/v1/alerts/webhooks").get_json()["webhooks"] == []
    finally:
        app.extensions["queuewatch.monitor"].close()


def test_a_bad_stored_target_beside_a_good_one_still_lets_the_alert_through(tmp_path, redis_url, r) -> None:
    with webhook_receiver() as receiver:
        app = make_app(redis_url, tmp_path / "s.sqlite3")
        try:
            store = app.extensions["queuewatch.store"]
            # Targets saved by an older version that checked less: one malformed, one that raises inside urllib.
            store.put("alerts.webhooks", json.dumps([{"url": "http://exa mple.com/x", "format": "json"},
                                                      {"url": "http://[::1/x", "format": "json"},
                                                      {"url": receiver.url, "format": "json"}]))  # fmt: skip
            client = app.test_client()
            assert client.get("/alerts").status_code == 200
            client.put(RULE, json={"max_depth": 0, "for_seconds": 0})
            rq.Queue("emails", connection=r).enqueue(rq_tasks.add, 1, 1)
            tick(app)
            assert len(receiver.wait_for("firing", 1)) == 1
            results = client.post("/api/v1/alerts/webhooks/test", json={}).get_json()["results"]
            assert [x["ok"] for x in results] == [True]
        finally:
            app.extensions["queuewatch.monitor"].close()


def test_the_sender_survives_a_delivery_that_raises_anything(tmp_path, redis_url, r, monkeypatch) -> None:
    with webhook_receiver() as receiver:
        app = make_app(redis_url, tmp_path / "s.sqlite3", WEBHOOK=[receiver.url, "http://127.0.0.1:1/unreachable"])
        try:
            notifier = app.extensions["queuewatch.alerts"].notifier
            real = type(notifier).post
            calls = []

            def flaky(self, webhook, message):  # the first delivery raises something no one expected
                calls.append(webhook.url)
                if len(calls) == 1:
                    raise KeyError("boom")
                return real(self, webhook, message)

            monkeypatch.setattr(type(notifier), "post", flaky)
            client = app.test_client()
            client.put(RULE, json={"max_depth": 0, "for_seconds": 0})
            rq.Queue("emails", connection=r).enqueue(rq_tasks.add, 1, 1)
            tick(app)
            assert len(receiver.wait_for("firing", 1)) == 1  # the second attempt goes through
            assert notifier._thread is not None and notifier._thread.is_alive()
        finally:
            app.extensions["queuewatch.monitor"].close()


def test_targets_on_the_dashboard_itself_or_on_metadata_are_refused_and_errors_map_no_ports(tmp_path, redis_url) -> None:
    port = free_port()
    app = make_app(redis_url, tmp_path / "s.sqlite3", BIND=f"127.0.0.1:{port}")
    try:
        client = app.test_client()
        closed = free_port()
        client.put("/api/v1/alerts/webhooks", json={"webhooks": [
            {"url": f"http://127.0.0.1:{port}/api/v1/queues/redis/rq/emails/purge"},  # itself
            {"url": "http://169.254.169.254/latest/meta-data/"},  # cloud metadata
            {"url": "http://metadata.google.internal/computeMetadata/v1/"},
            {"url": f"http://127.0.0.1:{closed}/hook"},  # nothing listens: the answer must not say which port
        ]})  # fmt: skip
        results = client.post("/api/v1/alerts/webhooks/test", json={}).get_json()["results"]
        errors = [x["error"] for x in results]
        assert not any(x["ok"] for x in results)
        assert "points back at this dashboard" in errors[0]
        assert "link-local" in errors[1] and "metadata" in errors[2]
        assert errors[3] == "refused: nothing accepts connections there"
        assert all("Errno" not in e and str(closed) not in e for e in errors)
        page = client.post("/alerts/webhooks/test", data={"csrf_token": csrf_token(client)}, follow_redirects=True)
        assert page.status_code == 200 and "points back at this dashboard" in page.get_data(as_text=True)
    finally:
        app.extensions["queuewatch.monitor"].close()
    allowed = make_app(redis_url, tmp_path / "t.sqlite3", WEBHOOK_ALLOW_INTERNAL=True)
    try:
        notifier = allowed.extensions["queuewatch.alerts"].notifier
        assert notifier.allow_internal
    finally:
        allowed.extensions["queuewatch.monitor"].close()
