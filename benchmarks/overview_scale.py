"""The overview at scale: Redis round trips per snapshot, page latency and memory, at 1,000 queues and 500 workers.

Fills a database with Q real RQ queues (``--waiting`` waiting and ``--failed``
failed jobs each, written with the rq library, pipelined) and W workers
registered by rq's own ``Worker.register_birth``, then runs a real
``queuewatch serve --poll 0.5`` and measures:

(a) Redis round trips per snapshot refresh, for 1, 100 and Q queues, counted
    inside the dashboard's own process: a ``sitecustomize`` on its
    PYTHONPATH (this run only) logs each request redis-py writes and then
    waits for, a single command (``Connection.send_command``) or a whole
    pipeline (``Pipeline._execute_pipeline``), with its command count and
    database. A sampler tick is everything from one ``SMEMBERS rq:queues``
    pipeline (the start of RQ's overview) to the next; no page is requested
    meanwhile. (A proxy on the wire cannot tell: Redis starts answering a
    10,000-command pipeline before the client has finished sending it.)
(b) Latency of the overview page (``GET /``: its first page of 100 queues), of a
    searched and sorted page, of one row's sparkline history and of the
    every-queue history request at Q queues, R requests each over one keep-alive connection,
    without the instrumentation. The sampler takes the shared snapshot every
    0.5 s; the client sleeps 0.6 s between requests, so every request renders
    a snapshot newer than the previous request's. To say where the time goes,
    also the page with the sampler asleep (``--poll 3600``: rendering only)
    and ``take_snapshot()`` timed in this process (the sampler's read only).
(c) The dashboard's memory (VmRSS of every process of ``queuewatch serve``)
    after (b).

    .venv/bin/python benchmarks/overview_scale.py [--queues 1000] [--workers 500] [--url redis://127.0.0.1:6379/1]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import _data
import _server
import redis
from failed_pages import Client
from rq import Queue, Worker

DEFAULT_URL = "redis://127.0.0.1:6379/1"
FUNCTION = "billing.tasks.send_invoice"
POLL = 0.5
PAUSE = 0.6  # > POLL: each request sees a newer snapshot than the one before


def queue_name(n: int) -> str:
    return f"overview-{n:04d}"


def fill(connection: redis.Redis, queues: int, workers: int, waiting: int, failed: int) -> None:
    """Real RQ data: ``queues`` queues with waiting and failed jobs, ``workers`` registered workers."""
    connection.flushdb()
    names = [queue_name(n) for n in range(queues)]
    with connection.pipeline() as pipe:
        for name in names:
            Queue(name, connection=connection).enqueue_many(
                [Queue.prepare_data(FUNCTION, args=(f"INV-{name}-{i}",)) for i in range(waiting)], pipeline=pipe)
        pipe.execute()
    for name in names:
        _data.fill_failed(connection, name, failed)  # one pipeline per queue
    for n in range(workers):
        served = [Queue(names[n % queues], connection=connection), Queue(names[(n + workers) % queues], connection=connection)]
        Worker(served, name=f"worker-{n:03d}.billing", connection=connection).register_birth()


# -- (a) round trips -----------------------------------------------------------

# Put on the dashboard's PYTHONPATH for (a) only: logs every request redis-py
# writes to Redis and then waits for (a command, or a whole pipeline), with
# the number of commands it carries. Benchmark instrumentation, never shipped.
SITECUSTOMIZE = """
import os, threading, time
from redis.client import Pipeline
from redis.connection import AbstractConnection

_log = open(os.environ["QW_BENCH_ROUND_TRIPS"], "a", buffering=1)
_lock = threading.Lock()

def _record(db, commands, first, kind="command"):
    name = " ".join(str(a if not isinstance(a, bytes) else a.decode("utf-8", "replace"))[:60] for a in first[:2])
    with _lock:
        _log.write(f"{time.monotonic():.6f}\\t{os.getpid()}\\t{db}\\t{kind}\\t{commands}\\t{name}\\n")

_send_command = AbstractConnection.send_command
def send_command(self, *args, **kwargs):
    _record(self.db, 1, args)
    return _send_command(self, *args, **kwargs)
AbstractConnection.send_command = send_command

_execute_pipeline = Pipeline._execute_pipeline
def execute_pipeline(self, connection, commands, raise_on_error):
    _record(connection.db, len(commands), commands[0][0] if commands else (), "pipeline")
    return _execute_pipeline(self, connection, commands, raise_on_error)
Pipeline._execute_pipeline = execute_pipeline

_execute_transaction = Pipeline._execute_transaction
def execute_transaction(self, connection, commands, raise_on_error):
    _record(connection.db, len(commands) + 2, ("MULTI",), "pipeline")
    return _execute_transaction(self, connection, commands, raise_on_error)
Pipeline._execute_transaction = execute_transaction
"""


@dataclass(frozen=True)
class Trip:
    at: float  # time.monotonic() when it was sent
    pipeline: bool
    commands: int
    first: str  # "SMEMBERS rq:queues"


@dataclass(frozen=True)
class Tick:
    round_trips: int
    pipelines: int
    commands: int
    shape: str  # the round trips, in order: "SMEMBERS rq:queues (2 cmds), ..., EXISTS×4, SCAN"


def read_trips(path: Path, db: int) -> list[Trip]:
    trips = []
    for line in path.read_text().splitlines():
        at, _pid, trip_db, kind, commands, first = line.split("\t", 5)
        if int(trip_db) == db:
            name, _, key = first.partition(" ")
            trips.append(Trip(float(at), kind == "pipeline", int(commands), f"{name.upper()} {key}".strip()))
    return trips


def ticks(trips: list[Trip]) -> list[Tick]:
    """Split the round trips at each RQ overview start (SMEMBERS rq:queues); whole ticks only."""
    starts = [i for i, t in enumerate(trips) if t.first == "SMEMBERS rq:queues" and t.pipeline]
    out = []
    for a, b in zip(starts, starts[1:]):
        part = trips[a:b]
        shape = Counter(f"{t.first[:40]} (pipeline, {t.commands:,} cmds)" if t.pipeline else t.first.split(" ")[0] for t in part)
        out.append(Tick(len(part), sum(t.pipeline for t in part), sum(t.commands for t in part),
                        ", ".join(f"{k}×{v}" if v > 1 else k for k, v in shape.items())))  # fmt: skip
    return out


def measure_round_trips(url: str, connection: redis.Redis, queues: int, workers: int, args: argparse.Namespace) -> list[Tick]:
    fill(connection, queues, workers, args.waiting, args.failed)
    port = _server.free_port()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "QW_BENCH_ROUND_TRIPS")}
    with tempfile.TemporaryDirectory() as state:
        log = Path(state, "round-trips.tsv")
        Path(state, "sitecustomize.py").write_text(SITECUSTOMIZE)
        os.environ["PYTHONPATH"] = state
        os.environ["QW_BENCH_ROUND_TRIPS"] = str(log)
        try:
            with _server.serve(_server.queuewatch_command(url, port, state, poll=POLL), port, "/healthz"):
                time.sleep(3)  # start-up reads and the first ticks
                window = (time.monotonic(), time.monotonic() + args.window)
                time.sleep(args.window)
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        db = connection.connection_pool.connection_kwargs.get("db", 0)
        found = ticks([t for t in read_trips(log, db) if window[0] <= t.at <= window[1]])
    if not found:
        raise RuntimeError("no complete sampler tick was recorded")
    print(f"  {queues:,} queues: {len(found)} ticks, {found[0].round_trips} round trips in the first", file=sys.stderr, flush=True)
    return found


def snapshot_seconds(url: str, times: int) -> list[float]:
    """In this process, without HTTP: how long the dashboard's snapshot read (``take_snapshot``) takes."""
    from queuewatch.adapters.backends import connect
    from queuewatch.snapshots.monitor import take_snapshot

    backend = connect("redis", name="redis", url=url)
    try:
        take_snapshot([backend])  # discovery, connections
        out = []
        for _ in range(times):
            started = time.perf_counter()
            take_snapshot([backend])
            out.append(time.perf_counter() - started)
        return out
    finally:
        backend.close()


# -- (b) latency, (c) memory ---------------------------------------------------


def processes_of(port: int) -> dict[int, str]:
    """The pids of the ``queuewatch serve`` bound to ``port`` and its children, with their VmRSS lines."""
    procs = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            procs[int(d.name)] = (cmdline, ppid)
        except (OSError, IndexError, ValueError):
            continue
    root = {pid for pid, (cmd, _) in procs.items() if f"127.0.0.1:{port}".encode() in cmd and b"serve" in cmd}
    family = set(root)
    while grown := {pid for pid, (_, ppid) in procs.items() if ppid in family} - family:
        family |= grown
    return {pid: rss_kib(pid) for pid in sorted(family)}


def rss_kib(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return line.split()[1]
    return "0"


def percentile(times: list[float], p: float) -> float:
    ordered = sorted(times)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


HISTORY = "/api/v1/history?minutes=60&points=60&fields=depth"
# The overview pages its queue table (100 rows by default); a searched and sorted page, as an operator narrows it.
SEARCHED = "/?q=overview-09&sort=-failed&page=2&per=50"
# One queue's sparkline, as the overview asks for each row on screen (no longer every queue's history at once).
SPARKLINE = "/api/v1/queues/redis/rq/overview-0042/history?minutes=60&points=60"
EXPECT = {"/": 'data-queue="redis/rq/overview-0099"', SEARCHED: "Showing 51–100 of 100 matching queues"}


def measure_page(url: str, queues: int, requests: int, poll: float, paths: list[str]) -> tuple[dict[str, list[float]], dict[int, str]]:
    """Time GETs of each path (after one untimed warm-up), PAUSE apart; then the server's memory."""
    port = _server.free_port()
    with tempfile.TemporaryDirectory() as state:
        with _server.serve(_server.queuewatch_command(url, port, state, poll=poll), port, "/healthz"):
            client = Client(port)
            try:
                timed: dict[str, list[float]] = {}
                for path in paths:
                    client.get(path)
                    times = timed[path] = []
                    expected = EXPECT.get(path, "").format(queues=queues).encode()
                    for _ in range(requests):
                        time.sleep(PAUSE)
                        seconds, status, body = client.get(path)
                        if status != 200 or expected not in body:
                            raise RuntimeError(f"GET {path}: HTTP {status}, {len(body)} bytes")
                        times.append(seconds)
                    print(f"  --poll {poll:g} GET {path}: p50 {percentile(times, 50):.1f} ms", file=sys.stderr, flush=True)
            finally:
                client.close()
            memory = processes_of(port)
    return timed, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a Redis database this script may empty (FLUSHDB)")
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--waiting", type=int, default=3, help="waiting jobs per queue")
    parser.add_argument("--failed", type=int, default=2, help="failed jobs per queue")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of sampler ticks recorded per size")
    args = parser.parse_args()
    _data.exit_cleanly_on_sigterm()
    connection = _data.connect(args.url)
    print(f"```\n# {_data.machine(connection)}\n```\n")
    try:
        sizes = sorted({1, min(100, args.queues), args.queues})
        rows = [(n, measure_round_trips(args.url, connection, n, args.workers, args)) for n in sizes]
        fill(connection, args.queues, args.workers, args.waiting, args.failed)
        snapshots = snapshot_seconds(args.url, 20)
        live, memory = measure_page(args.url, args.queues, args.requests, POLL, ["/", SEARCHED, SPARKLINE, HISTORY])
        idle, _ = measure_page(args.url, args.queues, 20, 3600, ["/", SEARCHED])
    finally:
        connection.flushdb()
    print(f"Redis round trips per sampler tick ({args.workers:,} workers; counted inside the dashboard process, database {connection.connection_pool.connection_kwargs.get('db', 0)} only):\n")
    print("| queues | ticks recorded | round trips per tick (min–max) | of which pipelines | commands per tick (min–max) |")
    print("|--:|--:|--:|--:|--:|")
    for n, found in rows:
        trips, pipes, cmds = ([getattr(t, f) for t in found] for f in ("round_trips", "pipelines", "commands"))
        print(f"| {n:,} | {len(found)} | {min(trips)}–{max(trips)} | {min(pipes)}–{max(pipes)} | {min(cmds):,}–{max(cmds):,} |")
    print()
    print("Round trips of a tick, in order (a pipeline shows its first command and its size):\n")
    for n, found in rows:
        for shape, seen in Counter(t.shape for t in found).most_common():
            print(f"- {n:,} queues, {seen} of {len(found)} ticks: {shape}")
    print(f"\nOverview at {args.queues:,} queues and {args.workers:,} workers, {PAUSE} s between requests:\n")
    print("| request | sampler | requests | p50 ms | p95 ms | max ms | mean ms |")
    print("|---|---|--:|--:|--:|--:|--:|")
    rows_b = [("GET / (overview page, HTML: first 100 queues)", f"--poll {POLL:g}: a new snapshot every {POLL:g} s", live["/"]),
              (f"GET {SEARCHED} (searched, sorted, page 2)", f"--poll {POLL:g}", live[SEARCHED]),
              (f"GET {SPARKLINE} (one row's sparkline, as the overview now asks)", f"--poll {POLL:g}", live[SPARKLINE]),
              (f"GET {HISTORY} (every queue's history; the overview no longer asks for it)", f"--poll {POLL:g}", live[HISTORY]),
              ("GET / (overview page, HTML), render only", "--poll 3600: one snapshot, no reads meanwhile", idle["/"]),
              (f"GET {SEARCHED}, render only", "--poll 3600", idle[SEARCHED]),
              ("take_snapshot() in-process, no HTTP (the sampler's read)", "-", snapshots)]  # fmt: skip
    for label, sampler, times in rows_b:
        print(f"| {label} | {sampler} | {len(times)} | {percentile(times, 50):.1f} | {percentile(times, 95):.1f} "
              f"| {max(times) * 1000:.1f} | {statistics.mean(times) * 1000:.1f} |")  # fmt: skip
    total = sum(int(v) for v in memory.values())
    print(f"\nDashboard RSS after the --poll {POLL:g} run: {total / 1024:.1f} MiB in {len(memory)} process(es) "
          f"({', '.join(f'pid {p}: {int(v) / 1024:.1f} MiB' for p, v in memory.items())})")  # fmt: skip
    print(f"\n```\n# after: {_data.machine(connection)}\n```")


if __name__ == "__main__":
    main()
