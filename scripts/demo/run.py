"""`make demo`: every job system at work, and the dashboard on them; Ctrl-C stops it all.

Starts a private redis-server (by default on 127.0.0.1:6390, nothing kept on
disk) whose databases hold one system each — 0 RQ, 1 Celery (broker and
results), 2 Dramatiq, 3 Arq, 4 the results of Celery on RabbitMQ — and a
RabbitMQ vhost of its own (``queuewatch-demo``) on the local RabbitMQ. So it
never touches the databases that `make run` (0) and the tests (2-15) use on
the local Redis. Then real workers: RQ, Celery on Redis and on RabbitMQ,
Dramatiq on both, Arq, and a plain pika consumer with a dead-letter queue;
the traffic (traffic.py); and ``queuewatch serve`` on all of them, with the
caller's QUEUEWATCH_* environment and the arguments after ``--`` (`make demo
ARGS=...`).

Each child runs in its own session, so Ctrl-C reaches only this supervisor,
which stops them in order: SIGTERM, ten seconds, then SIGKILL for whatever is
left of each one's process group; then it deletes its vhost and stops its
Redis. Children also get SIGTERM if the supervisor itself dies (PDEATHSIG).
With ``--redis URL`` (compose) it uses that Redis instead of starting one,
and ``--no-dashboard`` leaves the dashboard to someone else.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def tool(name: str) -> str:
    """A command of this Python's environment (the .venv), else from PATH."""
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        sys.exit(f"demo: {name} is not installed (make demo installs the test extras: pip install -e '.[test]')")
    return found


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], *, quiet: bool = True) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "wb") if quiet else None  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT if quiet else None,
                                start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip
        if out:
            out.close()
        self.children.append((name, proc))
        return proc

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        """SIGTERM to each child's group, newest first; SIGKILL what is left after STOP_SECONDS."""
        for _, proc in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"demo: {name} did not stop in {STOP_SECONDS:g} s: killed", file=sys.stderr)
        for _, proc in self.children:  # the group too: a worker's own children (RQ's work horse, Dramatiq's processes)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def management(amqp_url: str, method: str, path: str, body: bytes | None = None) -> None:
    """A call to the RabbitMQ management API beside ``amqp_url``, with its credentials."""
    parts = urlsplit(amqp_url)
    auth = base64.b64encode(f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}".encode()).decode()
    request = urllib.request.Request(f"http://{parts.hostname or 'localhost'}:15672/api/{path}", data=body, method=method,
                                     headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(request, timeout=10).read()


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def wait_for_amqp(url: str, seconds: float = 60) -> None:
    """Until the broker takes a connection (in compose it may still be starting)."""
    import pika

    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/%2F"  # the vhost may not exist yet
    deadline = time.monotonic() + seconds
    while True:
        try:
            pika.BlockingConnection(pika.URLParameters(root)).close()
            return
        except Exception:  # pika's connection errors have no common base worth naming
            if time.monotonic() > deadline:
                sys.exit(f"demo: no RabbitMQ answers at {parts.hostname}:{parts.port or 5672}")
            time.sleep(0.5)


def wait_for_redis(url: str, seconds: float = 60) -> None:
    import redis

    deadline = time.monotonic() + seconds
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                sys.exit(f"demo: no Redis answers at {url}")
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, _, dashboard_args = _split(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="use this Redis (redis://host:port) instead of starting one")
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("DEMO_REDIS_PORT", 6390)),
                        help="port of the private redis-server (default %(default)s; DEMO_REDIS_PORT)")
    parser.add_argument("--amqp", default=os.environ.get("DEMO_AMQP", "amqp://guest:guest@127.0.0.1:5672/queuewatch-demo"),
                        help="RabbitMQ URL whose vhost the demo uses; created and deleted unless it is / (default %(default)s)")
    parser.add_argument("--keep-vhost", action="store_true", help="do not delete the vhost at the end")
    parser.add_argument("--no-dashboard", action="store_true", help="start the workers and the traffic only")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds of traffic")
    args = parser.parse_args(own)

    logs = Path(tempfile.mkdtemp(prefix="queuewatch-demo-"))
    supervisor = Supervisor(logs)
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))

    redis_base = args.redis.rstrip("/") if args.redis else f"redis://127.0.0.1:{args.redis_port}"
    vhost = vhost_of(args.amqp)
    made_vhost = False
    code = 0
    try:
        if not args.redis:
            if _port_open(args.redis_port):
                sys.exit(f"demo: port {args.redis_port} is taken (another demo?): DEMO_REDIS_PORT=N make demo picks another")
            supervisor.start("redis-server", [tool("redis-server"), "--port", str(args.redis_port), "--bind", "127.0.0.1",
                                              "--save", "", "--appendonly", "no", "--databases", "16"], dict(os.environ))  # fmt: skip
        wait_for_redis(f"{redis_base}/0")
        wait_for_amqp(args.amqp)
        if vhost != "/":
            try:
                management(args.amqp, "PUT", f"vhosts/{quote(vhost, safe='')}")
                user = unquote(urlsplit(args.amqp).username or "guest")
                management(args.amqp, "PUT", f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                           b'{"configure": ".*", "write": ".*", "read": ".*"}')  # fmt: skip
                made_vhost = not args.keep_vhost
            except (urllib.error.URLError, OSError) as exc:
                sys.exit(f"demo: could not create the vhost {vhost!r} through RabbitMQ's management API: {exc}")

        env = dict(os.environ, DEMO_REDIS=redis_base, DEMO_AMQP=args.amqp, PYTHONPATH=str(HERE), PYTHONUNBUFFERED="1")
        env = {key: value for key, value in env.items() if not key.startswith("QUEUEWATCH_")}  # the dashboard's, below
        celery = [tool("celery"), "-A", "celery_jobs", "worker", "--pool", "threads", "--concurrency", "2",
                  "--queues", "celery,payments", "--loglevel", "WARNING", "--without-mingle"]  # fmt: skip
        dramatiq = [tool("dramatiq"), "dramatiq_jobs", "--processes", "1", "--threads", "2"]
        supervisor.start("rq-worker", [tool("rq"), "worker", "--url", f"{redis_base}/0", "--with-scheduler", "--path", str(HERE),
                                       "--name", "demo-rq", "emails", "payments", "reports"], env)  # fmt: skip
        supervisor.start("celery-redis", [*celery, "--hostname", "demo-redis@%h"], env | {"DEMO_BROKER": "redis"})
        supervisor.start("celery-rabbitmq", [*celery, "--hostname", "demo-rabbitmq@%h"], env | {"DEMO_BROKER": "rabbitmq"})
        supervisor.start("dramatiq-redis", dramatiq, env | {"DEMO_BROKER": "redis"})
        supervisor.start("dramatiq-rabbitmq", dramatiq, env | {"DEMO_BROKER": "rabbitmq"})
        supervisor.start("arq-worker", [tool("arq"), "arq_jobs.WorkerSettings"], env)
        supervisor.start("amqp-consumer", [sys.executable, "amqp_jobs.py"], env)
        supervisor.start("traffic", [sys.executable, "traffic.py", "--interval", str(args.interval)], env)
        if not args.no_dashboard:
            serve = [tool("queuewatch"), "serve",
                     "--redis", f"rq={redis_base}/0", "--redis", f"celery={redis_base}/1",
                     "--redis", f"dramatiq={redis_base}/2", "--redis", f"arq={redis_base}/3",
                     "--rabbitmq", f"rabbitmq={args.amqp}", "--celery-results", f"rabbitmq={redis_base}/4",
                     *dashboard_args]  # fmt: skip
            # The caller's QUEUEWATCH_* variables reach the dashboard (QUEUEWATCH_BIND=127.0.0.1:8123 make demo).
            dashboard_env = dict(os.environ, PYTHONUNBUFFERED="1")
            supervisor.start("dashboard", serve, dashboard_env, quiet=False)
        bind = os.environ.get("QUEUEWATCH_BIND", "127.0.0.1:8000")
        print(f"demo: RQ, Celery (Redis, RabbitMQ), Dramatiq (Redis, RabbitMQ), Arq and a plain RabbitMQ queue at work on "
              f"{redis_base} (databases 0-4) and vhost {vhost!r}; workers' logs in {logs}", file=sys.stderr)  # fmt: skip
        if not args.no_dashboard:
            print(f"demo: the dashboard: http://{bind}/ (unless ARGS set --bind). Ctrl-C stops everything.", file=sys.stderr)
        while not stopping:
            ended = supervisor.exited()
            if ended:
                name, code = ended
                log = logs / f"{name}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                print(f"demo: {name} exited with status {code}; stopping the demo\n{tail}", file=sys.stderr)
                code = code or 1
                break
            time.sleep(0.2)
    finally:
        print("demo: stopping", file=sys.stderr)
        supervisor.stop()
        if made_vhost:
            with contextlib.suppress(urllib.error.URLError, OSError):
                management(args.amqp, "DELETE", f"vhosts/{quote(vhost, safe='')}")
        print("demo: stopped; nothing left running", file=sys.stderr)
    return code


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _split(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """The demo's own arguments, and those after ``--`` for ``queuewatch serve``."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], "--", argv[i + 1 :]
    return argv, "", []


if __name__ == "__main__":
    sys.exit(main())
