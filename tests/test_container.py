"""The image, built from the project's Dockerfile and run, as an operator would.

Built with Debian's podman by scripts/container.sh (the recipe of
../shared/CONTAINERS.md: a debootstrap base, runc, no registry), run with
host networking on a free port against the local Redis (database 14) and
RabbitMQ. Each test looks at what an operator sees: the image's own
HEALTHCHECK (``podman healthcheck run``), the overview with a real RQ job,
the user the processes run as, the state in the volume, a clean stop.

Cost, measured on this machine (2 cores): installing podman, runc and
debootstrap 12 s (once per machine, `make tools`); the first build 51 s
(debootstrap 30 s, the Python base 14 s, the project's image 7 s); a cached
build under 1 s, a rebuild after a source change about 7 s. The base images
and layer cache are kept in ~/.cache/queuewatch/containers, so CI's fresh
clone on the same machine builds cached. The tests themselves take about
25 s after the build.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import rq

from conftest import ROOT, free_port, require_service, unavailable, wait_for

pytestmark = pytest.mark.redis_db(14)

SCRIPT = ROOT / "scripts" / "container.sh"
TAG = "localhost/queuewatch:test"
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str) -> tuple[int, str]:
    try:
        with _http.open(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


class Podman:
    """podman with the storage and configuration scripts/container.sh sets up."""

    def __init__(self) -> None:
        lines = subprocess.run([str(SCRIPT), "env"], check=True, capture_output=True, text=True).stdout.split()
        self.env = os.environ | dict(line.split("=", 1) for line in lines)

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {shlex.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def health(self, name: str) -> subprocess.CompletedProcess:
        """Run the image's own HEALTHCHECK once (no systemd here to run it on its timer)."""
        return self("healthcheck", "run", name, check=False, timeout=30)

    def _health(self, name: str) -> dict:
        state = json.loads(self("inspect", name).stdout)[0]["State"]
        return state.get("Health") or state.get("Healthcheck") or {}

    def health_status(self, name: str) -> str:
        return self._health(name).get("Status", "")

    def health_output(self, name: str) -> str:
        """What the last probe printed."""
        log = self._health(name).get("Log") or [{}]
        return log[-1].get("Output", "")


@pytest.fixture(scope="module")
def podman() -> Podman:
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is missing (make tools installs it: apt-get install podman runc debootstrap)")
    tools = Podman()
    start = time.monotonic()
    built = subprocess.run([str(SCRIPT), "build", TAG], env=tools.env, capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        pytest.fail(f"the image did not build ({time.monotonic() - start:.0f} s):\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}")
    print(f"image built in {time.monotonic() - start:.1f} s")
    return tools


@contextlib.contextmanager
def container(podman: Podman, *args: str, volume: str | None = None, network: str = "host",
              env: dict[str, str] | None = None, options: tuple[str, ...] = ()) -> Iterator[str]:  # fmt: skip
    """A detached container of the test image (ARGS after the image), removed afterwards with its logs kept on failure."""
    name = f"qw-test-{uuid.uuid4().hex[:8]}"
    run = ["--name", name, f"--network={network}", *options]
    if volume:
        run += ["-v", f"{volume}:/data"]
    for key, value in (env or {}).items():
        run += ["-e", f"{key}={value}"]
    podman("run", "-d", *run, TAG, *args)
    try:
        yield name
    finally:
        podman("rm", "-f", "-v", "-t", "0", name, check=False)  # -v: the image's anonymous /data volume too


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    name = f"qw-test-data-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def serve_args(redis_url: str, port: int, *more: str) -> list[str]:
    return ["serve", "--bind", f"127.0.0.1:{port}", "--redis", redis_url, "--poll", "1", *more]


def started(podman: Podman, name: str, base: str) -> None:
    def up() -> bool:
        if json.loads(podman("inspect", name).stdout)[0]["State"]["Status"] != "running":
            raise AssertionError(f"the container stopped:\n{podman('logs', name, check=False).stderr}")
        return answers(base + "/healthz")

    wait_for(up, 30, what=f"{base}/healthz", step=0.2)


def test_the_image_serves_live_data_healthy_as_non_root_read_only_with_its_state_in_the_volume(podman, volume, r, redis_url) -> None:
    require_service(6379, "Redis")
    require_service(5672, "RabbitMQ")
    rq.Queue("container-orders", connection=r).enqueue("os.getcwd")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The AMQP URL through the environment: flags show in `podman top` and `ps`.
    env = {"QUEUEWATCH_RABBITMQ": "amqp://guest:guest@127.0.0.1:5672/%2F"}
    # As deploy/kubernetes/queuewatch.yaml runs it: a read-only root, the state on the volume, /tmp scratch.
    read_only = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp")
    with container(podman, *serve_args(redis_url, port), volume=volume, env=env, options=read_only) as name:
        started(podman, name, base)

        # The image's own HEALTHCHECK, while the image's QUEUEWATCH_BIND still says 0.0.0.0:8000.
        check = podman.health(name)
        assert check.returncode == 0, check.stdout + check.stderr
        assert podman.health_status(name) == "healthy"

        status, page = http_get(base + "/")
        assert status == 200 and "container-orders" in page
        queues = json.loads(http_get(base + "/api/v1/queues")[1])["queues"]
        [orders] = [q for q in queues if q["name"] == "container-orders"]
        assert (orders["backend"], orders["system"], orders["depth"]) == ("redis", "rq", 1)
        backends = {b["name"]: b for b in json.loads(http_get(base + "/api/v1/backends")[1])["backends"]}
        assert backends["redis"]["status"] == "up" and backends["rabbitmq"]["status"] == "up", backends

        # Every process of the container runs as the image's user, never root.
        top = podman("top", name, "user", "huser").stdout.split("\n")[1:]
        rows = [line.split() for line in top if line.strip()]
        assert rows and all(row == ["queuewatch", "10001"] for row in rows), top

        # State lives in the volume: a rule made now is there for the next container.
        answer = _http.open(urllib.request.Request(f"{base}/api/v1/alerts/rules/redis/rq/container-orders", method="PUT",
                                                   data=b'{"max_depth": 7}', headers={"Content-Type": "application/json"}))  # fmt: skip
        assert answer.status == 200
        mountpoint = Path(json.loads(podman("volume", "inspect", volume).stdout)[0]["Mountpoint"])
        state_file = mountpoint / "queuewatch.sqlite3"
        assert state_file.exists() and state_file.stat().st_uid == 10001

        begun = time.monotonic()
        podman("stop", "-t", "20", name)
        took = time.monotonic() - begun
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name).stderr
        assert state["ExitCode"] == 0 and took < 10, (state, took)
        assert "Shutting down: Master" in logs
        assert "guest:guest" not in logs

    port = free_port()
    with container(podman, *serve_args(redis_url, port), volume=volume, env=env) as name:
        started(podman, name, f"http://127.0.0.1:{port}")
        rules = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/alerts/rules")[1])["rules"]
        assert [(rule["queue"], rule["max_depth"]) for rule in rules] == [("container-orders", 7)]


def test_the_healthcheck_asks_the_running_dashboard_not_whatever_answers_on_its_configured_port(podman, redis_url) -> None:
    """QUEUEWATCH_BIND names a port where another service answers ``ok``; the dashboard was
    told --bind elsewhere. The probe follows the dashboard, so when the dashboard stops
    answering the container turns unhealthy, whatever answers on the other port."""
    decoy_port, port = free_port(), free_port()
    decoy = subprocess.Popen(["python3", "-c", DECOY, str(decoy_port)])
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{decoy_port}/healthz"), 10, what="the decoy")
        env = {"QUEUEWATCH_BIND": f"127.0.0.1:{decoy_port}"}
        with container(podman, *serve_args(redis_url, port, "--rabbitmq", "none"), env=env) as name:
            started(podman, name, f"http://127.0.0.1:{port}")
            healthy = podman.health(name)
            assert healthy.returncode == 0 and f":{port}/healthz" in podman.health_output(name), podman.health_output(name)

            # Freeze gunicorn's worker: the socket stays open, nothing answers.
            worker = [row.split() for row in podman("top", name, "pid", "ppid").stdout.splitlines()[1:] if row.split()[1:] == ["1"]]
            assert worker, podman("top", name, "pid", "ppid").stdout
            signal(podman, name, worker[0][0], "SIGSTOP")
            frozen = podman.health(name)
            assert frozen.returncode != 0, podman.health_output(name)
            assert f":{port}/healthz" in podman.health_output(name)
            assert answers(f"http://127.0.0.1:{decoy_port}/healthz")
            signal(podman, name, worker[0][0], "SIGCONT")
    finally:
        decoy.terminate()
        decoy.wait(10)


def signal(podman: Podman, name: str, pid: str, signame: str) -> None:
    """Signal a process inside the container (the image has no kill(1): Debian minbase has no procps)."""
    podman("exec", name, "python", "-c", f"import os, signal; os.kill({int(pid)}, signal.{signame})")


DECOY = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok\\n")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def dockerfile_usage() -> tuple[dict[str, str], list[str]]:
    """The environment and arguments of the `docker run` example at the top of the Dockerfile."""
    header = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    text = " ".join(header).replace("\\ ", " ")
    command = re.search(r"docker run (.*?serve .*?)(?:  |$)", text)
    assert command, text
    words = shlex.split(command.group(1))
    env, args = {}, []
    image_seen = False
    i = 0
    while i < len(words):
        word = words[i]
        if not image_seen and word in ("-e", "-p", "-v", "--name"):
            if word == "-e":
                key, _, value = words[i + 1].partition("=")
                env[key] = value
            i += 2
            continue
        if not image_seen and word.startswith("-"):
            i += 1
            continue
        if not image_seen:
            image_seen = True  # the image's name
        else:
            args.append(word)
        i += 1
    return env, args


def test_the_dockerfiles_usage_example_starts_and_is_healthy(podman) -> None:
    """The example binds the image's default 0.0.0.0:8000: run in a network namespace of its own
    (--network=none), so it meets nothing on this machine."""
    env, args = dockerfile_usage()
    assert args[0] == "serve" and "QUEUEWATCH_INSECURE_NO_AUTH" in env
    with container(podman, *args, network="none", env=env) as name:
        def healthy() -> bool:
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            if state["Status"] != "running":
                raise AssertionError(f"exited {state['ExitCode']}:\n{podman('logs', name, check=False).stderr}")
            return podman.health(name).returncode == 0

        wait_for(healthy, 30, what="the example's container to be healthy", step=0.5)


def test_the_image_has_exactly_the_pinned_dependencies(podman) -> None:
    frozen = podman("run", "--rm", "--network=none", "--entrypoint", "pip", TAG, "freeze").stdout
    installed = dict(line.lower().split("==") for line in frozen.split() if "==" in line)
    pins = dict(
        line.lower().split("==")
        for line in (ROOT / "deploy" / "constraints.txt").read_text().split()
        if "==" in line and not line.startswith("#")
    )
    assert installed.pop("queuewatch")
    assert installed and all(pins.get(name) == version for name, version in installed.items()), (installed, pins)
