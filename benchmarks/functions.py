"""Per-function metrics: what one sampler tick costs at 1,000 functions, and the store's size.

Writes RQ-format finished jobs (the fields rq 2.x writes: description, enqueued_at,
started_at, ended_at, a finished-registry member scored like rq's) for 1,000 distinct
functions over 10 queues, one job per function per tick, then runs the functions
service's tick (``FunctionMetrics.collect``) as the sampler would, and reports per tick
the Redis commands (INFO commandstats) and milliseconds, and the SQLite bytes per
stored point (from which the size of 1,000 functions with every tier full follows).

    .venv/bin/python benchmarks/functions.py --redis redis://127.0.0.1:6397/14 [--ticks 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis

from queuewatch import create_app
from queuewatch.snapshots.history import TIERS

FUNCTIONS, QUEUES = 1_000, 10


def rq_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def commands(client: redis.Redis) -> int:
    return sum(int(v["calls"]) for k, v in client.info("commandstats").items() if k.startswith("cmdstat_"))


def write_jobs(client: redis.Redis, tick: int) -> None:
    now = datetime.now(timezone.utc)
    with client.pipeline(transaction=False) as pipe:
        for f in range(FUNCTIONS):
            queue, job_id = f"bench{f % QUEUES}", f"bench-{tick}-{f}"
            started = now - timedelta(milliseconds=10 + f % 500)
            pipe.hset(f"rq:job:{job_id}", mapping={"description": f"bench.tasks.f{f}({tick})", "status": "finished",
                                                    "origin": queue, "enqueued_at": rq_time(started - timedelta(seconds=1)),
                                                    "started_at": rq_time(started), "ended_at": rq_time(now)})  # fmt: skip
            pipe.expire(f"rq:job:{job_id}", 500)
            pipe.zadd(f"rq:finished:{queue}", {job_id: int(time.time()) + 500})
            pipe.sadd("rq:queues", f"rq:queue:{queue}")
        pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6397/14")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    state = Path(tempfile.mkdtemp()) / "state.sqlite3"
    app = create_app({"REDIS": [args.redis], "RABBITMQ": ["none"], "STATE": str(state), "POLL": args.poll})
    monitor, service, store = (app.extensions[k] for k in ("queuewatch.monitor", "queuewatch.functions", "queuewatch.store"))
    step = int(args.poll * 1000)
    t = int(time.time() * 1000) // step * step - args.ticks * step
    costs, spent, counted = [], [], 0
    for tick in range(args.ticks):
        write_jobs(client, tick)
        monitor.refresh()
        before, started = commands(client), time.perf_counter()
        counted += service.collect(t + tick * step)
        spent.append((time.perf_counter() - started) * 1000)
        costs.append(commands(client) - before - 1)  # less the INFO itself
    points = sum(len(rows) for rows in store.points("fn.raw", None, 0, 2**62).values())
    size = store.size_bytes()
    full = sum(t.keep_ms // (t.step_ms or step) for t in TIERS)
    print(f"{FUNCTIONS:,} functions on {QUEUES} queues, {args.ticks} ticks, {counted:,} jobs counted")
    print(
        f"per tick: {statistics.median(costs):.0f} Redis commands (median; max {max(costs)}), "
        f"{statistics.median(spent):.0f} ms (median; max {max(spent):.0f} ms) for the whole tick (Redis reads, SQLite writes)"
    )
    print(
        f"store: {size / 1e6:.2f} MB for {points:,} raw series-points ({size / max(1, points):.0f} bytes each, file overhead included)"
    )
    print(
        f"every tier full at a {args.poll:g} s poll: {full:,} points per busy function -> about "
        f"{full * size / max(1, points) * FUNCTIONS / 1e6:,.0f} MB for {FUNCTIONS:,} functions"
    )
    monitor.close()
    client.flushdb()


if __name__ == "__main__":
    main()
