"""Requeue every job of a large RQ failed registry, four ways, side by side.

  rq CLI     ``rq requeue --queue Q --all`` (RQ's own, one job at a time)
  adapter    ``RQAdapter(...).requeue(Q, ALL)`` in this process (Lua, 1,000 ids per call)
  HTTP API   ``POST /api/v1/queues/redis/rq/Q/failed/requeue {"all": true}`` to a
             real ``queuewatch serve``
  operation  the browser's "Requeue all…": ``POST /api/v1/operations``, wait for the
             exact count, confirm it, wait until done (the background runner of a
             real ``queuewatch serve``, 1,000 ids per chunk)

Each method runs on freshly filled, identical data (N real RQ failed jobs).
Besides its wall-clock time, SLOWLOG gives the longest single Redis command
it ran (how long it blocked every other Redis client at once) and INFO
commandstats the commands Redis ran meanwhile. After each run the queue must
hold exactly the N original ids, each once, and the registry must be empty.

    .venv/bin/python benchmarks/requeue_all.py [--jobs 100000] [--url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import _data
import _server
import redis

from queuewatch.adapters.base import ALL
from queuewatch.adapters.rq.adapter import RQAdapter

Run = Callable[[], str]  # requeues everything; returns a note on how it went


@contextlib.contextmanager
def rq_cli(url: str, queue: str, timeout: float) -> Iterator[Run]:
    """RQ's own CLI in a subprocess, as an operator would run it."""
    command = [str(_server.BIN / "rq"), "requeue", "--queue", queue, "--all", "--url", url]

    def run() -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"killed after {timeout:.0f} s"
        tail = done.stderr.strip().splitlines()[-1:] if done.returncode else []
        return f"exit {done.returncode}" + (f": {tail[0][:120]}" if tail else "")

    yield run


@contextlib.contextmanager
def adapter(url: str, queue: str, timeout: float) -> Iterator[Run]:
    """queuewatch's RQ adapter in this process (no time limit of its own)."""
    client = redis.Redis.from_url(url)
    rq = RQAdapter(backend="redis", client=client)

    def run() -> str:
        result = rq.requeue(queue, ALL)
        return f"requeued={result.affected} not_found={len(result.not_found)}"

    try:
        yield run
    finally:
        client.close()


@contextlib.contextmanager
def http_api(url: str, queue: str, timeout: float) -> Iterator[Run]:
    """One API request to a real ``queuewatch serve``, started before the clock and stopped after."""
    port = _server.free_port()
    with tempfile.TemporaryDirectory() as state:
        with _server.serve(_server.queuewatch_command(url, port, state, poll=5.0), port, "/healthz"):

            def run() -> str:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                try:
                    conn.request(
                        "POST", f"/api/v1/queues/redis/rq/{quote(queue, safe='')}/failed/requeue",
                        body=json.dumps({"all": True}), headers={"Content-Type": "application/json"},
                    )  # fmt: skip
                    response = conn.getresponse()
                    return f"HTTP {response.status} {response.read().decode()[:120].strip()}"
                finally:
                    conn.close()

            yield run


@contextlib.contextmanager
def operation(url: str, queue: str, timeout: float) -> Iterator[Run]:
    """The browser's "Requeue all…": a background operation through the API of a real ``queuewatch serve``:
    start it (it counts the ids), confirm the exact count, and poll until it is done. All timed."""
    port = _server.free_port()

    def call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> dict:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f"HTTP {response.status}: {answer}")
        return answer

    def until(conn: http.client.HTTPConnection, path: str, state: str) -> tuple[dict, float]:
        deadline = time.perf_counter() + timeout
        while (op := call(conn, "GET", path))["state"] != state:
            if time.perf_counter() > deadline or op["state"] in ("cancelled",):
                raise RuntimeError(f"operation {op['state']}: {op.get('error')}")
            time.sleep(0.02)
        return op, time.perf_counter()

    with tempfile.TemporaryDirectory() as state:
        with _server.serve(_server.queuewatch_command(url, port, state, poll=5.0), port, "/healthz"):

            def run() -> str:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                try:
                    started = time.perf_counter()
                    op = call(conn, "POST", "/api/v1/operations", {"action": "requeue", "backend": "redis", "system": "rq", "queue": queue})
                    path = f"/api/v1/operations/{op['id']}"
                    op, counted = until(conn, path, "ready")
                    call(conn, "POST", path + "/confirm", {"total": op["total"]})
                    op, done = until(conn, path, "done")
                    return (f"counted {op['total']:,} in {counted - started:.2f} s, then requeued {op['affected']:,} "
                            f"in {done - counted:.2f} s ({op['chunks']} chunks; polled every 20 ms)")
                finally:
                    conn.close()

            yield run


METHODS = {
    "rq requeue --all (CLI)": rq_cli,
    "RQAdapter.requeue(ALL)": adapter,
    "POST …/failed/requeue (HTTP)": http_api,
    "background operation (HTTP: count, confirm, run)": operation,
}


@dataclass
class Outcome:
    seconds: float
    loss: _data.Loss
    note: str
    watched: _data.Watched


def measure(method: Callable[..., contextlib.AbstractContextManager[Run]], url: str, jobs: int, timeout: float) -> Outcome:
    """Fill the registry, requeue it all with ``method``, check nothing was lost, empty the database."""
    connection = _data.connect(url)
    try:
        connection.flushdb()
        ids = _data.fill_failed(connection, _data.QUEUE, jobs)
        with method(url, _data.QUEUE, timeout) as run, _data.RedisWatch(url) as watched:
            started = time.perf_counter()
            note = run()
            seconds = time.perf_counter() - started
        return Outcome(seconds, _data.check_requeued(connection, _data.QUEUE, ids), note, watched)
    finally:
        connection.flushdb()
        connection.close()


def table(jobs: int, results: dict[str, Outcome]) -> str:
    rq_seconds = next(iter(results.values())).seconds
    lines = [
        "| method | jobs | seconds | jobs/s | speed-up vs rq | max single Redis command, ms (SLOWLOG) | "
        "Redis commands (server-wide) | lost | duplicated | left in registry | note |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, out in results.items():
        w = out.watched
        lines.append(
            f"| {name} | {jobs:,} | {out.seconds:.2f} | {jobs / out.seconds:,.0f} | {rq_seconds / out.seconds:.1f}× | "
            f"{w.longest()} | {w.total_commands:,} | {out.loss.lost} | {out.loss.duplicated} | {out.loss.left_in_registry} | {out.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="failed jobs to requeue (default 100000)")
    parser.add_argument("--url", default=_data.DEFAULT_URL,
                        help=f"Redis database to use; it is emptied (FLUSHDB) before and after each run (default {_data.DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is given up (default 900)")
    args = parser.parse_args()
    _data.exit_cleanly_on_sigterm()

    with contextlib.closing(_data.connect(args.url)) as connection:
        print(f"# {_data.machine(connection)}")
    results = {}
    for name, method in METHODS.items():
        print(f"{name}…", file=sys.stderr, flush=True)
        results[name] = outcome = measure(method, args.url, args.jobs, args.timeout)
        print(f"  {outcome.seconds:.2f} s, {outcome.note}, {outcome.loss}", file=sys.stderr, flush=True)
    print(table(args.jobs, results))
    for name, outcome in results.items():
        top = ", ".join(f"{cmd} {n:,}" for cmd, n in outcome.watched.commands.most_common(8))
        print(f"\n{name}: Redis commands (server-wide, INFO commandstats): {top}")
    with contextlib.closing(_data.connect(args.url)) as connection:
        print(f"\n# after: {_data.machine(connection)}")


if __name__ == "__main__":
    main()
