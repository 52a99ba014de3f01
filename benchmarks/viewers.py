"""Redis load with one viewer and with fifty: what every open browser tab costs the monitored Redis.

Fills a database with Q real RQ queues (waiting and failed jobs, written with
the rq library) and W workers registered by rq's ``Worker.register_birth``,
starts one real ``queuewatch serve`` and counts, from Redis's MONITOR, every
command the clients of that database run (nothing else uses it meanwhile; other
databases and the commands inside Lua scripts are left out), for
``--seconds`` each:

  idle        no viewer: the sampler alone
  1 viewer    one operator with two tabs open: the overview and queue 0's page
  50 viewers  fifty operators, each with the same two tabs
  50 viewers, each on its own queue
              fifty operators with the overview and queue *i*'s page (more
              distinct pages: more distinct reads, whatever the sharing)

Each tab behaves like the browser (static/queuewatch.js, static/charts.js):
it loads its page and its history once, then every poll interval (at least
1 s) fetches the htmx fragments the page refreshes (``HX-Request: true``)
and asks the history API for the points newer than the last one it has:

  overview    GET / (fragment: the overview body), GET /alerts/banner,
              GET /api/v1/history?series=<the page's queues>&fields=depth
              &minutes=60&points=60&since=… (the sparklines of the rows shown)
  queue page  GET /queues/B/S/Q?fragment=counts, GET …?fragment=failed,
              GET /alerts/banner, GET /api/v1/queues/B/S/Q/history?minutes=60&since=…

Tabs start at random moments within one interval (real tabs are not in step),
each over its own keep-alive connection; counting starts two intervals after
the last tab opened, so page loads are not counted. Prints commands per second
per phase, the ratio to one viewer, the commands that make them up, and the
dashboard's latency per request under 50 viewers.

    .venv/bin/python benchmarks/viewers.py [--queues 100] [--workers 10] [--poll 5] [--url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import random
import re
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import _data
import _report
import _server
import redis
from failed_pages import Client
from overview_scale import fill, queue_name

HX = {"HX-Request": "true"}
BANNER = "/alerts/banner"
SPARKLINES = "/api/v1/history?fields=depth&minutes=60&points=60"
SERIES = re.compile(rb'data-series="([^"]+)"')


# -- browser tabs --------------------------------------------------------------


@dataclass(frozen=True)
class Tab:
    """One open page: what it loads once, the fragments it refreshes every tick, and its history request."""

    name: str
    page: str
    fragments: tuple[tuple[str, str], ...]  # (label, path), fetched with HX-Request: true
    history: str | None = None  # JSON; ``&since=<last point>`` is added once there is one
    history_label: str = ""
    sparklines: bool = False  # ``history`` gets ``&series=`` the rows of the loaded page, as static/charts.js asks


def overview_tab() -> Tab:
    return Tab("overview", "/", (("overview body (GET / as htmx)", "/"), ("alert banner", BANNER)),
               SPARKLINES, "sparklines (GET /api/v1/history?series=…&since=…)", sparklines=True)  # fmt: skip


def queue_tab(queue: str, cursor: str | None = None, backend: str = "redis", system: str = "rq") -> Tab:
    here = f"/queues/{backend}/{system}/{quote(queue, safe='')}"
    failed = f"{here}?fragment=failed" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
    page = here + (f"?cursor={quote(cursor, safe='')}" if cursor else "")
    return Tab(f"queue {queue}" + (f" @ {cursor}" if cursor else ""), page,
               (("queue counts fragment", f"{here}?fragment=counts"), ("queue failed fragment", failed), ("alert banner", BANNER)),
               f"/api/v1/queues/{backend}/{system}/{quote(queue, safe='')}/history?minutes=60", "queue history (GET …/history?since=…)")  # fmt: skip


def workers_tab() -> Tab:
    return Tab("workers", "/workers", (("workers table (GET /workers as htmx)", "/workers"), ("alert banner", BANNER)))


def path_tab(path: str) -> Tab:
    """Any other URL, refreshed like a fragment (pages added after this script was written)."""
    return Tab(path, path, ((f"GET {path} (as htmx)", path),))


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() when it was answered
    label: str
    seconds: float
    status: int  # 0: no answer (timeout, connection error)


@dataclass
class Requests:
    """Every request the tabs made, in order; appended to from many threads."""

    done: list[Request] = field(default_factory=list)

    def add(self, request: Request) -> None:
        self.done.append(request)  # list.append is atomic under the GIL

    def between(self, start: float, end: float) -> list[Request]:
        return [r for r in self.done if start <= r.at <= end]


def _last_point(body: bytes) -> str | None:
    """What the browser sends as ``since`` next: the newest point of a queue's history, or for the
    sparklines the oldest of their series' newest points (static/charts.js)."""
    answer = json.loads(body)
    if "queues" not in answer:
        return max((p["t"] for p in answer.get("points", [])), default=None)
    lasts = [max(p["t"] for p in q["points"]) for q in answer["queues"] if q["points"]]
    return min(lasts, default=None)


def _sparklines_url(base: str, page: bytes) -> str:
    """The overview's one sparkline request for the rows of its page: ``series=b/s/q,…``, each part percent-encoded."""
    keys = [html.unescape(k.decode()) for k in SERIES.findall(page)]
    series = ",".join("/".join(quote(part, safe="") for part in key.split("/", 2)) for key in keys)
    return f"{base}&series={quote(series, safe='')}"


def browse(port: int, tab: Tab, interval: float, delay: float, stop: threading.Event, requests: Requests) -> None:
    """One browser tab: open the page after ``delay``, then refresh it every ``interval`` until ``stop``."""
    if stop.wait(delay):
        return
    client = Client(port, timeout=60)
    last: str | None = None
    history_url = tab.history

    def get(label: str, path: str, headers: dict[str, str] | None = None) -> bytes | None:
        try:
            seconds, status, body = client.get(path, headers)
        except OSError:
            requests.add(Request(time.monotonic(), label, float("nan"), 0))
            client.close()
            return None
        requests.add(Request(time.monotonic(), label, seconds, status))
        return body if status == 200 else None

    def history() -> None:
        nonlocal last
        if history_url is None:
            return
        path = history_url + (f"&since={quote(last, safe='')}" if last else "")
        body = get(tab.history_label if last else f"{tab.history_label} (first load)", path, {"Accept": "application/json"})
        if body is not None:
            last = _last_point(body) or last

    try:
        next_tick = time.monotonic()
        page = get(f"{tab.name} page load", tab.page)
        if tab.sparklines and history_url is not None:
            history_url = _sparklines_url(history_url, page or b"")
        history()
        while True:
            next_tick += interval
            while next_tick < time.monotonic():  # a tick that came while the last one was still loading is skipped
                next_tick += interval
            if stop.wait(next_tick - time.monotonic()):
                break
            for label, path in tab.fragments:
                get(label, path, HX)
            history()
    finally:
        client.close()


@contextlib.contextmanager
def viewers(port: int, tabs: list[Tab], interval: float, requests: Requests, seed: int = 9) -> Iterator[float]:
    """Open every tab (each at a random moment within one interval) until the block ends; yields when the last opened."""
    rng = random.Random(seed)
    stop = threading.Event()
    delays = [rng.uniform(0, interval) for _ in tabs]
    threads = [threading.Thread(target=browse, args=(port, tab, interval, delay, stop, requests), daemon=True)
               for tab, delay in zip(tabs, delays)]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        yield time.monotonic() + max(delays, default=0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(70)


# -- commands Redis runs for one database ---------------------------------------


class DbCommands:
    """Counts the commands Redis runs for the clients of one database, read from MONITOR on a raw socket.

    MONITOR shows every client's commands as ``+<time> [<db> <addr>] "CMD" …``;
    only lines for ``db`` count, and not ``[<db> lua]`` (commands inside a
    script: their EVALSHA is counted). Parsed by hand, not by redis-py, so
    the reader keeps up while other databases are busy.
    """

    def __init__(self, url: str, keep: tuple[str, ...] = ("scan",)) -> None:
        kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
        self._sock = socket.create_connection((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)))
        if kwargs.get("password"):
            user = [kwargs["username"]] if kwargs.get("username") else []
            self._send("AUTH", *user, kwargs["password"])
        self._prefix = f"[{kwargs.get('db', 0)} ".encode()
        self._lua = f"[{kwargs.get('db', 0)} lua]".encode()
        self._counts: Counter[str] = Counter()
        self._keep = keep  # commands of which the first few lines of a phase are kept, to say who ran them
        self._samples: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._send("MONITOR")
        self._thread = threading.Thread(target=self._read, name="monitor", daemon=True)
        self._thread.start()

    def _send(self, *args: str) -> None:
        self._sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))

    def _read(self) -> None:
        buffer = b""
        prefix, lua = self._prefix, self._lua
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(1 << 18):
                lines = (buffer + chunk).split(b"\r\n")
                buffer = lines.pop()
                found = []
                for line in lines:
                    at = line.find(b" [")
                    if at < 0 or not line.startswith(prefix, at + 1) or line.startswith(lua, at + 1):
                        continue
                    start = line.find(b'] "', at) + 3
                    name = line[start:line.find(b'"', start)].decode().lower()
                    found.append(name)
                    if name in self._keep and len(self._samples.setdefault(name, [])) < 3:
                        self._samples[name].append(line[1:200].decode(errors="replace"))
                with self._lock:
                    self._counts.update(found)

    def take(self) -> tuple[Counter[str], dict[str, list[str]]]:
        """The commands counted since the last ``take``, and the first lines of the kept ones."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            samples, self._samples = self._samples, {}
        return counts, samples

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


# -- the run ---------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    tabs: int
    seconds: float
    commands: Counter[str]
    requests: list[Request]
    rss_kib: int
    samples: dict[str, list[str]]

    @property
    def per_second(self) -> float:
        return sum(self.commands.values()) / self.seconds


def measure(name: str, port: int, tabs: list[Tab], interval: float, seconds: float, counter: DbCommands) -> Phase:
    requests = Requests()
    with viewers(port, tabs, interval, requests) as last_opened:
        time.sleep(max(0.0, last_opened - time.monotonic()) + 2 * interval)  # page loads and first histories
        counter.take()
        start = time.monotonic()
        time.sleep(seconds)
        commands, samples = counter.take()
        end = time.monotonic()
        rss = sum(_report.dashboard_rss(port).values())
    phase = Phase(name, len(tabs), end - start, commands, requests.between(start, end), rss, samples)
    _report.progress(f"  {name}: {phase.per_second:,.1f} commands/s, {len(phase.requests):,} requests")
    return phase


def latency_rows(requests: list[Request]) -> Iterator[list[object]]:
    by_label: dict[str, list[Request]] = {}
    for r in requests:
        by_label.setdefault(r.label, []).append(r)
    for label, done in sorted(by_label.items()):
        ok = [r.seconds for r in done if r.status == 200]
        failed = Counter(r.status for r in done if r.status != 200)
        errors = ", ".join(f"{n} × {'no answer' if s == 0 else f'HTTP {s}'}" for s, n in failed.items()) or "0"
        if ok:
            yield [label, len(done), f"{_report.percentile(ok, 50):.1f}", f"{_report.percentile(ok, 95):.1f}",
                   f"{max(ok) * 1000:.1f}", errors]  # fmt: skip
        else:
            yield [label, len(done), "-", "-", "-", errors]


def all_latency(requests: list[Request]) -> list[object]:
    ok = [r.seconds for r in requests if r.status == 200]
    errors = sum(r.status != 200 for r in requests)
    return ["**every request**", len(requests), f"{_report.percentile(ok, 50):.1f}", f"{_report.percentile(ok, 95):.1f}",
            f"{max(ok) * 1000:.1f}", str(errors)]  # fmt: skip


LATENCY_HEADERS = ["request", "requests", "p50 ms", "p95 ms", "max ms", "errors"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=_data.DEFAULT_URL,
                        help=f"Redis database to use; it is emptied (FLUSHDB) before and after (default {_data.DEFAULT_URL})")  # fmt: skip
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--waiting", type=int, default=5, help="waiting jobs per queue (default 5)")
    parser.add_argument("--failed", type=int, default=200, help="failed jobs per queue (default 200)")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--poll", type=float, default=5.0, help="the dashboard's --poll; tabs refresh as often, at least 1 s apart (default 5, the dashboard's default)")
    parser.add_argument("--seconds", type=float, default=60, help="seconds counted per phase (default 60)")
    args = parser.parse_args()
    _data.exit_cleanly_on_sigterm()
    interval = max(1.0, args.poll)

    def one(i: int) -> list[Tab]:
        """One operator's two tabs: the overview and queue ``i``'s page."""
        return [overview_tab(), queue_tab(queue_name(i))]

    phases: list[Phase] = []
    with contextlib.closing(_data.connect(args.url)) as connection:
        print(f"```\n# {_data.machine(connection)}\n```\n")
        try:
            _report.progress(f"filling {args.queues:,} queues, {args.workers:,} workers…")
            fill(connection, args.queues, args.workers, args.waiting, args.failed)
            port = _server.free_port()
            counter = DbCommands(args.url)
            with tempfile.TemporaryDirectory() as state, contextlib.closing(counter):
                with _server.serve(_server.queuewatch_command(args.url, port, state, poll=args.poll), port, "/healthz"):
                    phases.append(measure("idle (sampler only)", port, [], interval, args.seconds, counter))
                    phases.append(measure("1 viewer", port, one(0), interval, args.seconds, counter))
                    same = [tab for _ in range(args.viewers) for tab in one(0)]
                    phases.append(measure(f"{args.viewers} viewers, same pages", port, same, interval, args.seconds, counter))
                    spread = [tab for i in range(args.viewers) for tab in one(i % args.queues)]
                    phases.append(measure(f"{args.viewers} viewers, each on its own queue", port, spread, interval, args.seconds, counter))
        finally:
            connection.flushdb()

        base = phases[1].per_second
        print(f"{args.queues:,} queues ({args.waiting} waiting, {args.failed} failed jobs each), {args.workers:,} workers; "
              f"`queuewatch serve --poll {args.poll:g}`, tabs refresh every {interval:g} s; {args.seconds:g} s counted per phase. "
              f"Commands from MONITOR, database {connection.connection_pool.connection_kwargs.get('db', 0)} only:\n")  # fmt: skip
        print(_report.table(
            ["phase", "tabs open", "seconds counted", "Redis commands", "commands/s", "× one viewer", "requests answered", "dashboard RSS MiB"],
            ([p.name, p.tabs, f"{p.seconds:.1f}", f"{sum(p.commands.values()):,}", f"{p.per_second:,.1f}", f"{p.per_second / base:.2f}×",
              f"{len(p.requests):,}", _report.mib(p.rss_kib)] for p in phases),
            right=range(1, 8),
        ))  # fmt: skip
        print("\nCommands per phase (top 10):\n")
        for p in phases:
            print(f"- {p.name}: " + ", ".join(f"{name} {n:,}" for name, n in p.commands.most_common(10)))
        print("\nFirst MONITOR lines of SCAN per phase (who ran them, with what):\n")
        for p in phases:
            for line in p.samples.get("scan", []):
                print(f"- {p.name}: `{line}`")
        for p in phases[1:]:
            print(f"\nDashboard latency, {p.name} ({p.tabs} tabs, {len(p.requests):,} requests in {p.seconds:.0f} s):\n")
            print(_report.table(LATENCY_HEADERS, [*latency_rows(p.requests), all_latency(p.requests)], right=range(1, 5)))
        print(f"\n```\n# after: {_data.machine(connection)}\n```")


if __name__ == "__main__":
    main()
