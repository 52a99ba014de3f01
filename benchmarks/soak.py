"""Memory soak: the dashboard's RSS with everything loaded and viewers polling, sampled over minutes.

Fills one database with everything issue 9 names at once: Q real RQ queues
(waiting and failed jobs each) and W workers registered by rq's own
``Worker.register_birth`` (as ``overview_scale.py`` does), plus a failed
registry of N real RQ failed jobs in queue ``bench`` (``_data.fill_failed``).
Starts one real ``queuewatch serve``, then opens V viewers' browser tabs
(``viewers.py``'s tabs: each refreshes its htmx fragments and its history every
poll interval) and samples VmRSS of every process of the dashboard every
``--interval`` seconds for ``--minutes``. Viewer *i* has three tabs open: the
overview, the ``bench`` queue's page at the first, middle or last page of its
failed registry (by *i*), and the workers page. Each ``--path`` adds one tab
per viewer that GETs that URL (as htmx) every tick, for pages added later
(failure grouping, filtered failed lists).

Prints the RSS series, its least-squares slope (MiB per minute, over all
samples and over the second half), the largest RSS, and the latency and
errors of every request during the soak.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--viewers 10] [--path '/queues/redis/rq/bench?…'] [--url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import _data
import _report
import _server
from overview_scale import fill
from viewers import LATENCY_HEADERS, Requests, Tab, all_latency, latency_rows, overview_tab, path_tab, queue_tab, viewers, workers_tab


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=_data.DEFAULT_URL,
                        help=f"Redis database to use; it is emptied (FLUSHDB) before and after (default {_data.DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=30, help="seconds between RSS samples (default 30)")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="failed jobs in queue bench (default 1000000)")
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--poll", type=float, default=5.0, help="the dashboard's --poll; tabs refresh as often, at least 1 s apart (default 5)")
    parser.add_argument("--path", action="append", default=[], help="another URL every viewer polls as htmx each tick (repeatable)")
    args = parser.parse_args()
    _data.exit_cleanly_on_sigterm()
    interval = max(1.0, args.poll)
    last_page = str((args.jobs - 1) // 50 * 50)
    cursors = [None, str(args.jobs // 2 // 50 * 50), last_page]

    def tabs_of(i: int) -> list[Tab]:
        return [overview_tab(), queue_tab(_data.QUEUE, cursors[i % 3]), workers_tab(), *(path_tab(p) for p in args.path)]

    tabs = [tab for i in range(args.viewers) for tab in tabs_of(i)]
    samples: list[tuple[float, dict[int, int], int, int, str]] = []  # minute, rss by pid, requests, errors, load
    requests = Requests()
    with contextlib.closing(_data.connect(args.url)) as connection:
        print(f"```\n# {_data.machine(connection)}\n```\n")
        try:
            _report.progress(f"filling {args.queues:,} queues and {args.workers:,} workers…")
            fill(connection, args.queues, args.workers, waiting=3, failed=2)
            _report.progress(f"filling {args.jobs:,} failed jobs…")
            _data.fill_failed(connection, _data.QUEUE, args.jobs, progress=True)
            keys, memory = connection.dbsize(), connection.info("memory")["used_memory"]
            port = _server.free_port()
            with tempfile.TemporaryDirectory() as state:
                with _server.serve(_server.queuewatch_command(args.url, port, state, poll=args.poll), port, "/healthz"):
                    time.sleep(2 * interval)
                    idle = _report.dashboard_rss(port)
                    with viewers(port, tabs, interval, requests) as last_opened:
                        time.sleep(max(0.0, last_opened - time.monotonic()))
                        start = time.monotonic()
                        end = start + args.minutes * 60
                        while True:
                            now = time.monotonic()
                            done = requests.done[:]
                            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                            samples.append(((now - start) / 60, _report.dashboard_rss(port), len(done), sum(r.status != 200 for r in done), load))
                            total = sum(samples[-1][1].values())
                            _report.progress(f"  {samples[-1][0]:5.1f} min: {total / 1024:.1f} MiB, {len(done):,} requests, load {load}")
                            if now >= end - 1:
                                break
                            time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
                    soaked = requests.between(start, time.monotonic())
        finally:
            connection.flushdb()

        pids = sorted({pid for _, rss, *_ in samples for pid in rss})
        print(f"Loaded: {args.jobs:,} failed jobs in queue `{_data.QUEUE}`, {args.queues:,} queues (3 waiting, 2 failed jobs each), "
              f"{args.workers:,} workers; {keys:,} keys, Redis used_memory {memory / 2**20:,.0f} MiB (server-wide). "
              f"`queuewatch serve --poll {args.poll:g}`; {args.viewers} viewers × {len(tabs_of(0))} tabs = {len(tabs)} tabs, "
              f"refreshing every {interval:g} s. Extra paths: {', '.join(args.path) or 'none'}.\n")  # fmt: skip
        print(f"Dashboard RSS {args.poll * 2:g} s after start, before any viewer: **{sum(idle.values()) / 1024:.1f} MiB** "
              f"({', '.join(f'pid {p}: {_report.mib(v)}' for p, v in idle.items())})\n")  # fmt: skip
        print(_report.table(
            ["minute", "RSS MiB (all processes)", *(f"pid {p} MiB" for p in pids), "requests so far", "errors so far", "load average"],
            ([f"{m:.1f}", _report.mib(sum(rss.values())), *(_report.mib(rss.get(p, 0)) for p in pids), f"{n:,}", e, load]
             for m, rss, n, e, load in samples),
            right=range(0, 3 + len(pids) + 1),
        ))  # fmt: skip
        series = [(m, sum(rss.values()) / 1024) for m, rss, *_ in samples]
        half = [p for p in series if p[0] >= args.minutes / 2]
        largest = max(series, key=lambda p: p[1])
        print(f"\nSlope: **{slope(series):+.2f} MiB/min** over all {len(series)} samples, {slope(half):+.2f} MiB/min over the second half; "
              f"first {series[0][1]:.1f} MiB, last {series[-1][1]:.1f} MiB, largest {largest[1]:.1f} MiB "
              f"({largest[1] * 1.048576:.1f} MB) at minute {largest[0]:.1f}.\n")  # fmt: skip
        print(f"Requests during the soak ({len(soaked):,} in {args.minutes:g} min):\n")
        print(_report.table(LATENCY_HEADERS, [*latency_rows(soaked), all_latency(soaked)], right=range(1, 5)))
        print(f"\n```\n# after: {_data.machine(connection)}\n```")


if __name__ == "__main__":
    main()
