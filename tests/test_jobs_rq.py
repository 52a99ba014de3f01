"""RQ's lists through the jobs API (RQ's adapter implements the states; its own tests are in test_rq_states.py)."""

from __future__ import annotations

import pytest
import rq
import rq_tasks

pytestmark = pytest.mark.redis_db(11)


def test_rq_waiting_list_through_the_api_is_rqs_own_queue_order_and_delete_is_audited(client, r) -> None:
    q = rq.Queue("mail", connection=r)
    ids = [q.enqueue(rq_tasks.add, i, i).id for i in range(4)]
    answer = client.get("/api/v1/queues/redis/rq/mail/jobs?state=waiting&limit=3").get_json()
    assert [j["id"] for j in answer["jobs"]] == q.job_ids[:3] == ids[:3] and answer["total"] == 4
    deleted = client.post("/api/v1/queues/redis/rq/mail/jobs/delete", json={"ids": [ids[0]]}).get_json()
    assert deleted == {"deleted": 1, "not_found": []}
    assert ids[0] not in q.job_ids
    assert client.get("/api/v1/audit").get_json()["entries"][0]["action"] == "delete_jobs"
