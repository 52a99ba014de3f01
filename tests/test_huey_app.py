"""Huey through the dashboard: found on the backend, shown on its pages, moved by the API, run by a real consumer."""

from __future__ import annotations

import huey_tasks
import pytest
from conftest import wait_for
from huey.api import Task
from test_huey_adapter import consumer

pytestmark = pytest.mark.redis_db(12)


def test_a_task_enqueued_now_through_the_api_runs_and_a_deleted_one_never_does(client, r, redis_url, tmp_path) -> None:
    instance = huey_tasks.build("RedisHuey", "web", redis_url)
    run_now, deleted, waiting = tmp_path / "now", tmp_path / "deleted", tmp_path / "waiting"
    ids = huey_tasks.enqueue(instance, [("touch", [str(p)], {}, {"delay": 3600}) for p in (run_now, deleted)])
    with consumer(redis_url, "web", "RedisHuey"):
        wait_for(lambda: instance.scheduled_count() == 2, what="both tasks in the schedule")
    [kept] = huey_tasks.enqueue(instance, [("touch", [str(waiting)], {})])
    queue = client.get("/api/v1/queues/redis/huey/web").get_json()
    assert (queue["depth"], queue["scheduled"], queue["workers"]) == (1, 2, None)
    listed = client.get("/api/v1/queues/redis/huey/web/jobs?state=scheduled").get_json()
    assert sorted(j["id"] for j in listed["jobs"]) == sorted(ids) and all(j["scheduled_for"] for j in listed["jobs"])
    answer = client.post("/api/v1/queues/redis/huey/web/jobs/delete", json={"ids": [ids[1]]})
    assert answer.get_json() == {"deleted": 1, "not_found": []}
    answer = client.post("/api/v1/queues/redis/huey/web/jobs/enqueue-now", json={"ids": [ids[0], "nope"]})
    assert answer.get_json() == {"enqueued": 1, "not_found": ["nope"]}
    refused = client.post("/api/v1/queues/redis/huey/web/failed/requeue", json={"all": True})
    assert refused.status_code == 409 and "no copy" in refused.get_json()["error"]["message"]
    page = client.get("/queues/redis/huey/web")
    assert page.status_code == 200 and "Huey" in page.get_data(as_text=True)
    with consumer(redis_url, "web", "RedisHuey"):
        wait_for(lambda: run_now.exists() and waiting.exists(), what="the enqueued-now and waiting tasks to run")
    assert not deleted.exists() and instance.scheduled_count() == 0 and kept


def test_a_task_revoked_through_the_api_is_skipped_listed_canceled_and_restorable(client, r, redis_url, tmp_path) -> None:
    """Revoke is huey.revoke_by_id: the task stays in the queue and the consumer skips it; restore undoes it."""
    instance = huey_tasks.build("RedisHuey", "revoking", redis_url)
    skipped, runs, restored = tmp_path / "skipped", tmp_path / "runs", tmp_path / "restored"
    ids = huey_tasks.enqueue(instance, [("touch", [str(p)], {}) for p in (skipped, runs)])
    # Before the instance has stored a result, where its revoke markers go cannot be told: said, nothing written.
    refused = client.post("/api/v1/queues/redis/huey/revoking/jobs/revoke", json={"ids": [ids[0]]})
    assert refused.status_code == 409 and "no result store yet" in refused.get_json()["error"]["message"]
    assert not instance.is_revoked(Task(id=ids[0]))
    instance.storage.flush_queue()
    [first] = huey_tasks.enqueue(instance, [("add", [1, 2], {})])
    with consumer(redis_url, "revoking", "RedisHuey"):
        wait_for(lambda: instance.result(first, preserve=True) == 3, what="a first result")
    ids = huey_tasks.enqueue(instance, [("touch", [str(p)], {}) for p in (skipped, runs)])
    [later] = huey_tasks.enqueue(instance, [("touch", [str(restored)], {}, {"delay": 3600})])
    answer = client.post("/api/v1/queues/redis/huey/revoking/jobs/revoke", json={"ids": [ids[0], later]})
    assert answer.status_code == 200 and answer.get_json()["revoked"] == 2
    assert instance.is_revoked(Task(id=ids[0])) and instance.is_revoked(Task(id=later))  # what huey itself says
    canceled = client.get("/api/v1/queues/redis/huey/revoking/jobs?state=canceled").get_json()
    assert sorted(j["id"] for j in canceled["jobs"]) == sorted([ids[0], later])
    page = client.get("/queues/redis/huey/revoking/jobs?state=canceled").get_data(as_text=True)
    assert "Restore" in page
    with consumer(redis_url, "revoking", "RedisHuey"):
        wait_for(lambda: runs.exists() and instance.pending_count() == 0, what="the other task to run")
    assert not skipped.exists()
    answer = client.post("/api/v1/queues/redis/huey/revoking/jobs/restore", json={"ids": [later, "never-revoked"]})
    assert answer.get_json() == {"restored": 1, "not_found": ["never-revoked"]}
    assert not instance.is_revoked(Task(id=later))
    assert client.post("/api/v1/queues/redis/huey/revoking/jobs/enqueue-now", json={"ids": [later]}).get_json()["enqueued"] == 1
    with consumer(redis_url, "revoking", "RedisHuey"):
        wait_for(restored.exists, what="the restored task to run")
    # Systems without revoke say so.
    refused = client.post("/api/v1/queues/redis/rq/any/jobs/revoke", json={"ids": ["x"]})
    assert refused.status_code in (404, 409)
