"""End-to-end latency of a failed-jobs page, shallow and deep, on a large RQ failed registry.

Fills the registry with N real RQ failed jobs, starts a real ``queuewatch
serve --poll 0.5`` and times, over one keep-alive HTTP connection, the queue
page (HTML) and the API's failed list at offsets 0, 1,000, 50,000, 500,000
(when the registry is that large) and the last page: R requests each,
p50/p95/max in ms, plus the longest single Redis command of the dashboard's
clients meanwhile (SLOWLOG) and the registry range reads Redis served (one per
page actually read from Redis).

The dashboard shares identical reads among viewers for one poll interval, so
the client sleeps 0.6 s (> the 0.5 s poll) between requests: every timed
request reads Redis. Each page and endpoint is requested once, untimed, first.

With ``--rq-dashboard PATH`` (an ``rq-dashboard`` executable installed in its
own environment), rq-dashboard serves the same database and its failed-jobs
data is timed at the same offsets (``--rq-dashboard-offsets`` to choose), one
fresh rq-dashboard per page: its deep pages take minutes, so each request has
a timeout (``--rq-dashboard-timeout``, 120 s) after which the page is reported
as timed out and that server is stopped, and a page gets no further requests
once it has used ``--rq-dashboard-budget`` seconds (at least one is made).

    .venv/bin/python benchmarks/failed_pages.py [--jobs 100000] [--url redis://127.0.0.1:6379/13]
    .venv/bin/python benchmarks/failed_pages.py --jobs 1000000 --rq-dashboard /tmp/rqd-venv/bin/rq-dashboard
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import _data
import _report
import _server

PAGE = 50
PAUSE = 0.6  # seconds between requests: longer than the dashboard's --poll 0.5
Count = Callable[[bytes], int]  # a response body -> the job rows it holds


class Client:
    """One keep-alive HTTP connection; reconnects (untimed) if the server closed it."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[float, int, bytes]:
        """(seconds, status, body) of one GET."""
        try:
            return self._timed_get(path, headers or {})
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.connect()
            return self._timed_get(path, headers or {})

    def _timed_get(self, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        return time.perf_counter() - started, response.status, body

    def close(self) -> None:
        self.conn.close()


@dataclass
class Row:
    page: str
    offset: int
    returned: int  # job rows in the answer
    times: list[float]
    watched: _data.Watched
    note: str = ""  # "timed out after 120 s", …

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile, in ms."""
        return _report.percentile(self.times, p) if self.times else float("nan")


def time_page(client: Client, url: str, label: str, offset: int, path: str, count: Count, expected: int | None,
              requests: int) -> Row:  # fmt: skip
    """Warm ``path`` once, then time ``requests`` GETs of it, PAUSE apart; each must hold ``expected`` rows."""
    returned = _rows(client.get(path), path, count, expected)
    times = []
    with _data.RedisWatch(url) as watched:
        for _ in range(requests):
            time.sleep(PAUSE)
            result = client.get(path)
            _rows(result, path, count, expected)
            times.append(result[0])
    row = Row(label, offset, returned, times, watched)
    _report.progress(f"  {label} @ {offset:,}: p50 {row.percentile(50):.1f} ms")
    return row


def _rows(result: tuple[float, int, bytes], path: str, count: Count, expected: int | None) -> int:
    _, status, body = result
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    rows = count(body)
    if expected is not None and rows != expected:
        raise RuntimeError(f"GET {path}: {rows} rows, expected {expected}")
    return rows


def rows_on_page(jobs: int, offset: int) -> int:
    return max(0, min(PAGE, jobs - offset))


def html_rows(body: bytes) -> int:
    return body.count(b'data-job-id="')


def json_jobs(body: bytes) -> int:
    return len(json.loads(body)["jobs"])


def queuewatch_rows(url: str, jobs: int, offsets: list[int], requests: int) -> list[Row]:
    port = _server.free_port()
    queue = quote(_data.QUEUE, safe="")
    rows = []
    with tempfile.TemporaryDirectory() as state:
        with _server.serve(_server.queuewatch_command(url, port, state, poll=0.5), port, "/healthz"):
            client = Client(port)
            try:
                for offset in offsets:
                    n = rows_on_page(jobs, offset)
                    html = f"/queues/redis/rq/{queue}?cursor={offset}"
                    api = f"/api/v1/queues/redis/rq/{queue}/failed?cursor={offset}&limit={PAGE}"
                    rows.append(time_page(client, url, "queuewatch queue page (HTML)", offset, html, html_rows, n, requests))
                    rows.append(time_page(client, url, "queuewatch API failed list", offset, api, json_jobs, n, requests))
            finally:
                client.close()
    return rows


def rq_dashboard_rows(executable: str, url: str, offsets: list[int], requests: int, timeout: float, budget: float) -> list[Row]:
    """rq-dashboard's failed-jobs JSON (what its failed page loads), PAGE per page, its default order.

    One fresh rq-dashboard per page, warmed with page 1 (untimed): a request
    that times out leaves the server working on it, and it must not slow the
    next page down. The number of rows is reported, not enforced: rq-dashboard
    0.9.0 returns more than PAGE rows past page 1 (see docs/benchmarks.md).
    """
    rows = []
    queue = quote(_data.QUEUE, safe="")
    for offset in offsets:
        page = offset // PAGE + 1
        path = f"/0/data/jobs/{queue}/failed/{PAGE}/asc/{page}.json"
        label = f"rq-dashboard 0.9.0 failed-jobs JSON, page {page:,}"
        port = _server.free_port()
        command = [executable, "--redis-url", url, "--bind", "127.0.0.1", "--port", str(port)]
        with _server.serve(command, port, "/"):
            client = Client(port, timeout=timeout)
            try:
                client.get(f"/0/data/jobs/{queue}/failed/{PAGE}/asc/1.json")
                times, returned, note = [], 0, ""
                with _data.RedisWatch(url) as watched:
                    began = time.perf_counter()
                    while len(times) < requests and not (times and time.perf_counter() - began > budget):
                        time.sleep(PAUSE)
                        try:
                            result = client.get(path)
                        except TimeoutError:
                            note = f"timed out after {timeout:.0f} s ({len(times)} of {requests} requests answered before)"
                            break
                        returned = _rows(result, path, json_jobs, None)
                        times.append(result[0])
                    if not note and len(times) < requests:
                        note = f"{len(times)} of {requests} requests: stopped after the {budget:.0f} s budget"
            finally:
                client.close()
        row = Row(label, offset, returned, times, watched, note)
        _report.progress(f"  {label} @ {offset:,}: " + (note or f"p50 {row.percentile(50):.1f} ms"))
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    def ms(row: Row, value: float) -> str:
        return f"{value:.1f}" if row.times else "-"

    headers = ["page", "offset", "rows returned", "requests", "p50 ms", "p95 ms", "max ms",
               "max single Redis command, ms (SLOWLOG)", "registry reads (ZRANGE + ZREVRANGE calls)", "note"]  # fmt: skip
    return _report.table(headers, (
        [row.page, f"{row.offset:,}", f"{row.returned:,}" if row.times else "-", len(row.times),
         ms(row, row.percentile(50)), ms(row, row.percentile(95)), ms(row, max(row.times, default=0) * 1000),
         row.watched.longest(), f"{row.watched.commands['zrange'] + row.watched.commands['zrevrange']:,}", row.note]
        for row in rows
    ), right=range(1, 9))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="failed jobs in the registry (default 100000)")
    parser.add_argument("--url", default=_data.DEFAULT_URL,
                        help=f"Redis database to use; it is emptied (FLUSHDB) before and after (default {_data.DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--rq-dashboard", metavar="PATH", help="also time this rq-dashboard executable on the same data")
    parser.add_argument("--rq-dashboard-requests", type=int, default=5,
                        help="timed requests per rq-dashboard page at most (default 5: its deep pages are slow)")  # fmt: skip
    parser.add_argument("--rq-dashboard-offsets", type=lambda v: [int(o) for o in v.split(",")],
                        help="offsets to time rq-dashboard at, comma-separated (default: the same as queuewatch's)")  # fmt: skip
    parser.add_argument("--rq-dashboard-timeout", type=float, default=120, help="seconds before one rq-dashboard request is given up (default 120)")
    parser.add_argument("--rq-dashboard-budget", type=float, default=60,
                        help="no further rq-dashboard requests of a page once it has used this many seconds (default 60)")  # fmt: skip
    args = parser.parse_args()
    _data.exit_cleanly_on_sigterm()

    last = (args.jobs - 1) // PAGE * PAGE
    offsets = sorted({o for o in (0, 1_000, 50_000, 500_000) if o < args.jobs} | {last})
    with contextlib.closing(_data.connect(args.url)) as connection:
        print(f"# {_data.machine(connection)}")
        try:
            connection.flushdb()
            _report.progress(f"filling {args.jobs:,} failed jobs…")
            began = time.perf_counter()
            _data.fill_failed(connection, _data.QUEUE, args.jobs, progress=True)
            filled = time.perf_counter() - began
            memory = connection.info("memory")["used_memory"]
            _report.progress(f"  filled in {filled:.0f} s ({args.jobs / filled:,.0f} jobs/s); Redis used_memory {memory / 2**20:,.0f} MiB")
            rows = queuewatch_rows(args.url, args.jobs, offsets, args.requests)
            if args.rq_dashboard:
                rows += rq_dashboard_rows(args.rq_dashboard, args.url, args.rq_dashboard_offsets or offsets, args.rq_dashboard_requests,
                                          args.rq_dashboard_timeout, args.rq_dashboard_budget)  # fmt: skip
        finally:
            connection.flushdb()
        print(f"# filled {args.jobs:,} jobs in {filled:.0f} s ({args.jobs / filled:,.0f} jobs/s, not timed below); "
              f"Redis used_memory after the fill {memory / 2**20:,.0f} MiB (server-wide)\n")
        print(table(rows))
        print(f"\n# after: {_data.machine(connection)}")


if __name__ == "__main__":
    main()
