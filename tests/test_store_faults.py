"""The dashboard's own store, when its file is lost, damaged or read-only: the
dashboard goes on, says what happened, and never answers 500. And the file
that holds the session key is private."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import get_json, samples_taken, serve_queuewatch, wait_for

from queuewatch.adapters.store import SQLiteStateStore
from queuewatch.adapters.store.sqlite_store import SCHEMA_VERSION

pytestmark = pytest.mark.redis_db(8)
PAGES = ["/", "/queues/redis/rq/mail", "/alerts", "/operations", "/audit", "/api/v1/queues/redis/rq/mail/history",
         "/api/v1/alerts", "/api/v1/alerts/rules", "/api/v1/operations", "/api/v1/audit", "/healthz"]  # fmt: skip


def status_of(url: str, method: str = "GET", body: object | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def mail(r):
    rq.Queue("mail", connection=r).enqueue(rq_tasks.add, 1, 1)


def test_the_state_file_is_private_and_versioned(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "new" / "dir" / "state.sqlite3")
    store.put("k", "v")
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        path = tmp_path / "new" / "dir" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, name
    with sqlite3.connect(tmp_path / "new" / "dir" / "state.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    loose = tmp_path / "loose.sqlite3"
    SQLiteStateStore(loose)
    loose.chmod(0o644)  # as an older version left it
    SQLiteStateStore(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_a_state_file_deleted_under_a_running_dashboard_is_made_again_and_sampling_goes_on(tmp_path, redis_url, mail) -> None:
    state = tmp_path / "state.sqlite3"
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1", "--state", str(state)) as base:
        wait_for(lambda: samples_taken(base, "redis/rq/mail") >= 2, what="samples")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
        for page in PAGES:
            assert status_of(base + page)[0] == 200, page
        wait_for(lambda: samples_taken(base, "redis/rq/mail") >= 2, what="sampling into the new file")
        assert "disappeared" in status_of(base + "/")[1]
        assert status_of(base + "/readyz")[0] == 200
        assert status_of(base + "/api/v1/alerts/rules/redis/rq/mail", "PUT", {"max_depth": 3})[0] == 200


def test_a_damaged_state_file_is_moved_aside_and_the_dashboard_starts(tmp_path, redis_url, mail) -> None:
    state = tmp_path / "state.sqlite3"
    state.write_bytes(b"this is not a database" * 200)
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--state", str(state)) as base:
        for page in PAGES:
            assert status_of(base + page)[0] == 200, page
        assert "was damaged" in status_of(base + "/")[1]
        ready = json.loads(status_of(base + "/readyz")[1])
        assert ready["status"] == "ready" and "damaged" in ready["store"]["notices"][0]
    assert list(tmp_path.glob("state.sqlite3.damaged-*"))


@pytest.fixture
def immutable():
    frozen: list[Path] = []

    def freeze(*paths: Path) -> None:
        for path in paths:
            if path.exists():
                subprocess.run(["chattr", "+i", str(path)], check=True)  # even root cannot write it now
                frozen.append(path)

    yield freeze
    for path in frozen:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_state_file_that_cannot_be_written_is_said_503_and_nothing_else_fails(tmp_path, redis_url, mail, immutable) -> None:
    state = tmp_path / "state.sqlite3"
    with serve_queuewatch(tmp_path, "--redis", redis_url, "--rabbitmq", "none", "--poll", "1", "--state", str(state)) as base:
        wait_for(lambda: samples_taken(base, "redis/rq/mail") >= 1, what="a sample")
        with sqlite3.connect(state) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        immutable(state, Path(f"{state}-wal"), Path(f"{state}-shm"))
        status, body = status_of(base + "/api/v1/alerts/rules/redis/rq/mail", "PUT", {"max_depth": 3})
        assert status == 503 and json.loads(body)["error"]["code"] == "store_unavailable", body
        assert "cannot be used" in json.loads(body)["error"]["message"]
        for page in PAGES:
            assert status_of(base + page)[0] in (200, 503), page
        assert status_of(base + "/")[0] == 200 and "cannot be written" in status_of(base + "/")[1]
        assert status_of(base + "/readyz")[0] == 503
        assert get_json(base + "/api/v1/backends")["backends"][0]["status"] == "up"  # type: ignore[index]
