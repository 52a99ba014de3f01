"""Fixtures: real Redis and RabbitMQ (skipped locally if absent, an error in
CI), the Flask app, and real RQ workers."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis

from queuewatch import create_app

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _redis_of_this_worker() -> None:
    """Under pytest-xdist (``make test`` runs ``-n 3``) each worker process starts a redis-server of its
    own before any test module reads QW_TEST_REDIS_PORT: workers never share a database, and the
    libraries' workers the tests start inherit the port. It keeps nothing on disk and ends with the worker."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("QW_TEST_REDIS_OWNER") == str(os.getpid()):
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                break
        except redis.RedisError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the worker's redis-server on port {port} did not start") from None
            time.sleep(0.05)
    os.environ["QW_TEST_REDIS_PORT"], os.environ["QW_TEST_REDIS_OWNER"] = str(port), str(os.getpid())
    atexit.register(lambda: (server.terminate(), server.wait(10)))


_redis_of_this_worker()
# QW_TEST_REDIS_PORT: a private redis-server for this run (two runs at once must not share databases).
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("QW_TEST_REDIS_PORT", "6379"))
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Debian's Chromium, never a downloaded browser; these flags keep it off the (closed) network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _rq_major() -> int | None:
    try:
        import rq
    except ImportError:
        return None
    return int(rq.__version__.split(".")[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test of one RQ major line (``@pytest.mark.rq_at_least(N)``) runs in the environments that
    have it and is deselected in the others, never skipped: `make test` runs the RQ tests again in
    .venv-rq3, so every one of them runs in CI."""
    major = _rq_major()
    drop = [i for i in items if (m := i.get_closest_marker("rq_at_least")) and (major is None or major < m.args[0])]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]
    # Browser tests last, together: they share one Chromium, and Playwright's event loop,
    # once started, would stop the asyncio tests (Arq's client) that come after them.
    items.sort(key=lambda item: "chromium" in getattr(item, "fixturenames", ()))


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing: skip locally, fail in CI (CI=true), where `make test` provides everything."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def wait_for(condition, timeout: float = 20.0, *, what: str = "the condition", step: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it answers something true, and return that; fail after ``timeout`` seconds.
    What every test waits with, instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def samples_taken(base: str, queue_path: str) -> int:
    """How many samples the dashboard at ``base`` has recorded of a queue in the last hour."""
    return len(get_json(f"{base}/api/v1/queues/{queue_path}/history?minutes=60")["points"])  # type: ignore[index]


def wait_for_samples(base: str, queue_path: str, more: int, timeout: float = 30.0) -> None:
    """Wait until the dashboard's sampler has recorded ``more`` further intervals of a queue:
    for checks that something did NOT happen over several intervals."""
    start = samples_taken(base, queue_path)
    wait_for(lambda: samples_taken(base, queue_path) >= start + more, timeout, what=f"{more} more samples of {queue_path}")


def require_service(port: int, what: str) -> None:
    if not port_open(port):
        unavailable(f"{what} is not running on 127.0.0.1:{port} (make test starts it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_db(request: pytest.FixtureRequest) -> Iterator[int]:
    """An empty Redis database for this test (number from the test's marker, default 9)."""
    require_service(REDIS_PORT, "Redis")
    marker = request.node.get_closest_marker("redis_db")
    db = marker.args[0] if marker else 9
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    yield db
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture
def r(redis_db: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    yield client
    client.close()


@pytest.fixture
def app(redis_url: str, tmp_path: Path):
    app = create_app(
        {
            "TESTING": True,
            "REDIS": [redis_url],
            "RABBITMQ": ["none"],
            "STATE": str(tmp_path / "state.sqlite3"),
            "POLL": 0.01,  # every request reads fresh; sharing has its own test
        }
    )
    yield app
    app.extensions["queuewatch.monitor"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client) -> str:
    """The session's CSRF token, as a page would embed it."""
    client.get("/")
    with client.session_transaction() as session:
        return session["csrf"]


def inspect_queue(client, queue_path: str) -> str:
    """Inspect a RabbitMQ queue's dead letters through the API, as an operator asks to (a POST); its id."""
    answer = client.post(f"/api/v1/queues/{queue_path}/inspect", json={"confirm": True})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["inspection"]["id"]


def redis_digest(client: redis.Redis) -> dict[bytes, str]:
    """Every key's type, value (DUMP) and whether it has a TTL: equal digests mean nothing was written."""
    digest = {}
    for key in client.scan_iter(count=1000):
        dumped = client.dump(key) or b""
        ttl = client.pttl(key)
        digest[key] = hashlib.sha256(dumped).hexdigest() + (":ttl" if ttl > 0 else ":none")
    return digest


class CommandCounter:
    """Counts the commands Redis runs against one database (MONITOR), whatever else uses the server."""

    def __init__(self, db: int) -> None:
        self.db = db
        self.count = 0
        self.commands: list[str] = []
        self._client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        self._token = f"qw-stop-{os.getpid()}-{id(self)}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self._token in command["command"]:
                    return
                if command.get("db") == self.db:
                    self.count += 1
                    self.commands.append(command["command"])

    def __enter__(self) -> CommandCounter:
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.1)  # MONITOR is live once Redis answered OK
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.echo(self._token)
        self._thread.join(10)
        self._client.close()
        self.count -= 1  # the ECHO that stopped it ran on this db before the token check


def rq_bin() -> str:
    return str(Path(sys.executable).with_name("rq"))


def run_rq_worker(redis_url: str, *queues: str, serializer: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real ``rq worker --burst`` over ``queues``; returns when the queues are empty."""
    cmd = [rq_bin(), "worker", "--burst", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker"]
    if serializer:
        cmd += ["--serializer", serializer]
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    return subprocess.run([*cmd, *queues], env=env, capture_output=True, text=True, timeout=timeout, check=True)


def rq1_python() -> str:
    """Python of the RQ 1.16 environment that `make test` builds."""
    path = ROOT / ".venv-rq1" / "bin" / "python"
    if not path.exists():
        unavailable(f"{path} is missing: `make test` builds it")
    return str(path)


@contextlib.contextmanager
def start_queuewatch(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `queuewatch serve` for real (gunicorn, sampler) on a free port, in its own process
    group so it can be killed whole; yield its base URL and the process. Later flags win
    over the defaults given here (--state)."""
    port = free_port()
    queuewatch = Path(sys.executable).with_name("queuewatch")
    cmd = [str(queuewatch), "serve", "--bind", f"127.0.0.1:{port}", "--state", str(tmp_path / "state.sqlite3"), *args]
    log = tmp_path / f"queuewatch-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")} | (env or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"queuewatch did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def serve_queuewatch(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``start_queuewatch`` when only the URL matters."""
    with start_queuewatch(tmp_path, *args, env=env) as (base, _):
        yield base


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the whole run (starting one costs about a second)."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium):
    """The shared Chromium; every page (and its context) a test opened is closed after it."""
    yield chromium
    for context in list(chromium.contexts):
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where browser tests save screenshots: $QUEUEWATCH_SCREENSHOTS (docs/screenshots to refresh the README's) or a temp dir."""
    target = Path(os.environ.get("QUEUEWATCH_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis_db(n): the Redis database number the test uses")

