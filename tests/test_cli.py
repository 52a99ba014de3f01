"""The command line and configuration contract (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import rq
import rq_tasks
from conftest import free_port, get_json, serve_queuewatch

from queuewatch.config import BackendSpec, parse_backends, split_specs


def test_backend_names_default_to_the_kind_then_count_up() -> None:
    specs = parse_backends(["redis://a:6379/0", "cache=redis://b:6379/1", "redis://c/2"], ["amqp://guest:guest@r:5672/%2F"])
    assert specs == [
        BackendSpec("redis", "redis", "redis://a:6379/0"),
        BackendSpec("cache", "redis", "redis://b:6379/1"),
        BackendSpec("redis-2", "redis", "redis://c/2"),
        BackendSpec("rabbitmq", "rabbitmq", "amqp://guest:guest@r:5672/%2F"),
    ]


def test_a_password_containing_equals_is_not_taken_for_a_name() -> None:
    [spec] = parse_backends(["redis://:pa=ss@host:6379/0"], [])
    assert (spec.name, spec.url) == ("redis", "redis://:pa=ss@host:6379/0")


@pytest.mark.parametrize(
    "redis, rabbitmq, message",
    [(["http://x"], [], "redis://"), ([], ["redis://x"], "amqp://"), (["a=redis://x", "a=redis://y"], [], "used twice")],
)
def test_bad_backend_specs_are_refused_with_a_reason(redis, rabbitmq, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_backends(redis, rabbitmq)


def test_none_turns_a_kind_off_and_env_values_split_on_commas() -> None:
    assert parse_backends(["none"], ["none"]) == []
    assert split_specs("redis://a/0, b=redis://b/1 redis://c/2") == ["redis://a/0", "b=redis://b/1", "redis://c/2"]


def test_serve_starts_with_a_backend_that_is_down_and_shows_it_down(tmp_path) -> None:
    closed = free_port()
    with serve_queuewatch(tmp_path, "--redis", f"redis://127.0.0.1:{closed}/0", "--rabbitmq", f"amqp://guest:secret@127.0.0.1:{free_port()}/%2F") as base:
        backends = {b["name"]: b for b in get_json(base + "/api/v1/backends")["backends"]}
        assert {n: b["status"] for n, b in backends.items()} == {"redis": "down", "rabbitmq": "down"}
        assert "secret" not in backends["rabbitmq"]["url"] and "***" in backends["rabbitmq"]["url"]
        log = next(tmp_path.glob("queuewatch-*.log")).read_text()
        assert "secret" not in log
        # The first lines say what it watches, where its own store is, whether a login is needed, and the URL to open.
        port = base.rsplit(":", 1)[1]
        assert f"queuewatch: open http://127.0.0.1:{port}/" in log
        assert f"watching redis redis: redis://127.0.0.1:{closed}/0" in log
        assert "watching rabbitmq rabbitmq: amqp://guest:***@127.0.0.1:" in log
        assert f"own store (settings, history, audit): {tmp_path / 'state.sqlite3'}" in log
        assert "login: none needed (no users configured; loopback only)" in log


def test_every_flag_is_also_an_environment_variable(tmp_path, r, redis_url) -> None:
    rq.Queue("from-env", connection=r).enqueue(rq_tasks.add, 1, 1)
    env = {"QUEUEWATCH_REDIS": f"envredis={redis_url}", "QUEUEWATCH_RABBITMQ": "none", "QUEUEWATCH_POLL": "0.5"}
    with serve_queuewatch(tmp_path, env=env) as base:
        [backend] = get_json(base + "/api/v1/backends")["backends"]
        assert (backend["name"], backend["status"], backend["systems"]) == ("envredis", "up", ["rq"])
        assert [q["name"] for q in get_json(base + "/api/v1/queues")["queues"]] == ["from-env"]
        assert 'data-poll-seconds="0.5"' in __import__("urllib.request").request.urlopen(base + "/").read().decode()


def test_rabbitmq_is_shown_up_when_it_answers(tmp_path) -> None:
    from conftest import RABBIT_URL, require_service

    require_service(5672, "RabbitMQ")
    with serve_queuewatch(tmp_path, "--redis", "none", "--rabbitmq", RABBIT_URL) as base:
        [backend] = get_json(base + "/api/v1/backends")["backends"]
        assert (backend["kind"], backend["status"]) == ("rabbitmq", "up")


def test_queuewatch_alone_is_serve_and_reads_the_environment(tmp_path) -> None:
    queuewatch = str(Path(sys.executable).with_name("queuewatch"))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("QUEUEWATCH_")}
    done = subprocess.run([queuewatch], env=env | {"QUEUEWATCH_BIND": "nonsense", "QUEUEWATCH_STATE": str(tmp_path / "s.db")},
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
    assert "serve" in subprocess.run([queuewatch, "--help"], capture_output=True, text=True, timeout=30).stdout


def test_a_bad_flag_is_a_usage_error_not_a_traceback(tmp_path) -> None:
    queuewatch = str(Path(sys.executable).with_name("queuewatch"))
    for args, message in ((["--bind", "nonsense"], "HOST:PORT"), (["--redis", "http://x"], "redis://"), (["--poll", "0"], "poll")):
        done = subprocess.run([queuewatch, "serve", "--state", str(tmp_path / "s.db"), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def test_celery_results_specs_name_a_known_broker_backend() -> None:
    from queuewatch.config import backend_options

    specs = parse_backends(["redis://r/0"], ["amqp://x/%2F"])
    results = lambda value: {n: o.get("system_options", {}).get("celery") for n, o in  # noqa: E731
                             backend_options(specs, {"CELERY_RESULTS": value}).items()}  # fmt: skip
    assert results("redis://r:6379/1") == {"redis": {"results_url": "redis://r:6379/1"},
                                           "rabbitmq": {"results_url": "redis://r:6379/1"}}  # fmt: skip
    assert results("redis=redis://r:6379/1") == {"redis": {"results_url": "redis://r:6379/1"}, "rabbitmq": None}
    with pytest.raises(ValueError, match="no backend named"):
        results("other=redis://r:6379/1")
    with pytest.raises(ValueError, match="redis://"):
        results("amqp://x")


def test_backend_options_go_to_the_named_rabbitmq_backend_or_to_all() -> None:
    from queuewatch.config import backend_options

    specs = parse_backends(["redis://r/0"], ["a=amqp://x/%2F", "b=amqp://y/%2F"])
    options = backend_options(specs, {"DRAMATIQ_NAMESPACE": "app", "RABBITMQ_QUEUES": ["a=orders", "audit"],
                                      "RABBITMQ_MANAGEMENT": "b=http://mgmt:15672/"})  # fmt: skip
    assert options["redis"] == {"system_options": {"dramatiq": {"namespace": "app"}}}
    assert options["a"] == {"queues": ["orders", "audit"]}
    assert options["b"] == {"queues": ["audit"], "management_url": "http://mgmt:15672/"}
    with pytest.raises(ValueError, match="no RabbitMQ backend named 'redis'"):
        backend_options(specs, {"RABBITMQ_DLQS": ["redis=dlq"]})
