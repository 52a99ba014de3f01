"""The published API description (GET /api/v1/openapi.json) is true: every /api
route is in it, and schemathesis, generating requests from it, finds no 5xx."""

from __future__ import annotations

import re

import pytest
import rq
import rq_tasks
import schemathesis
from conftest import run_rq_worker
from hypothesis import HealthCheck, given, settings

from queuewatch.views import openapi

pytestmark = pytest.mark.redis_db(4)


def test_every_api_route_is_in_the_document_with_its_methods(client, app) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")]
    assert len(rules) >= 12
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in document["paths"], rule.rule
        documented = {m.upper() for m in document["paths"][path]}
        assert (rule.methods or set()) - {"HEAD", "OPTIONS"} <= documented, rule.rule


def test_every_api_route_has_its_own_description_of_what_it_takes_and_answers(app) -> None:
    missing = sorted({rule.endpoint for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")} - set(openapi.DETAILS))
    assert missing == [], f"add these endpoints to app/views/openapi.py DETAILS: {missing}"


@pytest.fixture
def api_schema(app, r, redis_url, tmp_path):
    """The app's own document, over a Redis database with a real queue, failed jobs and a worker."""
    q = rq.Queue("emails", connection=r)
    for i in range(2):
        q.enqueue(rq_tasks.fail_unless_exists, str(tmp_path / "never"), i)
    run_rq_worker(redis_url, "emails")
    q.enqueue(rq_tasks.add, 1, 2)
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def test_generated_requests_never_get_a_server_error(api_schema) -> None:
    """Each operation gets a handful of generated requests (bounded: this is a smoke test, not a soak)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    statuses: set[int] = set()
    for operation in operations:
        if operation.path.endswith("/webhooks/test"):
            continue  # would send real HTTP requests to whatever URLs the generated PUT stored

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            response = case.call()
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        call()
    assert failures == []
    assert {200, 400, 404} <= statuses  # the requests reached the app and some were valid
