"""Shared by the benchmarks: real RQ data, what Redis did meanwhile, and the loss check.

``fill_failed`` writes N failed jobs with the rq library itself (``Job.create``,
``FailedJobRegistry.add`` and ``Result.create_failure``, the calls an RQ 2.x
worker makes when a job raises), pipelined in batches. ``RedisWatch`` reports
the longest single Redis command run by the clients of the benchmark database
during a block (from SLOWLOG) and the commands the server ran (from INFO
commandstats). ``check_requeued`` says how many jobs a requeue lost or
duplicated.

rq is a test and benchmark dependency of queuewatch, never a runtime one.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result

DEFAULT_URL = "redis://127.0.0.1:6379/13"
QUEUE = "bench"
BATCH = 5_000
FUNCTION = "billing.tasks.send_invoice"
WORKER = "worker-7f3c.billing-1"
FAILURE_TTL = 365 * 24 * 3600  # RQ's default: nothing expires while we measure

TRACEBACK = """\
Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.11/site-packages/rq/worker/base.py", line 1349, in perform_job
    rv = job.perform()
  File "/srv/app/.venv/lib/python3.11/site-packages/rq/job.py", line 1339, in perform
    self._result = self._execute()
  File "/srv/app/billing/tasks.py", line 88, in send_invoice
    response = mailer.send(to=email, template=template, invoice=invoice_id)
  File "/srv/app/billing/mailer.py", line 41, in send
    raise MailerUnavailable(f"{{self.url}} answered 503 after {{attempts}} attempts")
billing.mailer.MailerUnavailable: https://mail.internal/v2/send answered 503 after 3 attempts (invoice {n})"""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` (servers, Redis config) still runs."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def fill_failed(connection: redis.Redis, queue: str, count: int, batch: int = BATCH, progress: bool = False) -> list[str]:
    """Put ``count`` failed jobs in ``queue``'s failed registry, as an RQ worker would. Returns their ids.

    With ``progress``, says on stderr every 100,000 jobs how far it is and how fast it goes.
    """
    registry = FailedJobRegistry(queue, connection=connection)
    ids: list[str] = []
    start = datetime.now(timezone.utc)
    began = time.perf_counter()
    for first in range(0, count, batch):
        if progress and first and first % 100_000 == 0:
            rate = first / (time.perf_counter() - began)
            print(f"  {first:,} of {count:,} jobs, {rate:,.0f} jobs/s", file=sys.stderr, flush=True)
        with connection.pipeline() as pipe:
            for n in range(first, min(first + batch, count)):
                job = Job.create(
                    FUNCTION,
                    args=(f"INV-{n:08d}", f"customer{n % 9973}@example.com"),
                    kwargs={"template": "invoice-reminder", "attempt": 3},
                    connection=connection,
                    origin=queue,
                    status=JobStatus.FAILED,
                    timeout=180,
                )
                job.enqueued_at = start + timedelta(milliseconds=n)
                job.started_at = job.enqueued_at + timedelta(milliseconds=40)
                job.ended_at = job.last_heartbeat = job.started_at + timedelta(milliseconds=900)
                job.worker_name = WORKER
                registry.add(job, ttl=FAILURE_TTL, exc_string=TRACEBACK.format(n=n), pipeline=pipe)
                Result.create_failure(
                    job, FAILURE_TTL, exc_string=TRACEBACK.format(n=n), worker_name=WORKER, pipeline=pipe,
                    execution_id=uuid.uuid4().hex, execution_started_at=job.started_at,
                    execution_ended_at=job.ended_at,
                )  # fmt: skip
                ids.append(job.id)
            pipe.sadd(Queue.redis_queues_keys, Queue(queue, connection=connection).key)
            pipe.execute()
    return ids


@dataclass(frozen=True)
class Loss:
    lost: int  # original ids not in the queue
    duplicated: int  # queue entries beyond one per original id
    left_in_registry: int


def check_requeued(connection: redis.Redis, queue: str, ids: list[str]) -> Loss:
    """Compare the queue list with the ids that were failed: each must be there exactly once."""
    waiting = Counter(i.decode() for i in connection.lrange(f"rq:queue:{queue}", 0, -1))
    found = set(ids) & waiting.keys()
    return Loss(len(set(ids)) - len(found), sum(waiting.values()) - len(found), connection.zcard(f"rq:failed:{queue}"))


def command_calls(connection: redis.Redis) -> Counter[str]:
    """Calls per command since the server started (INFO commandstats; every database, every client)."""
    return Counter({name.removeprefix("cmdstat_"): stats["calls"] for name, stats in connection.info("commandstats").items()})


# Reads the new SLOWLOG entries inside Redis and returns, per client address, the
# longest one, so a busy benchmark does not ship every entry to Python.
# ARGV[1] = id of the newest entry already seen, ARGV[2] = the log's length.
# Returns {newest id, 1 if no entry was dropped before we read it, addr, usec, command, ...}.
_DRAIN = """
local seen, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local count, entries = 256, nil
while true do
  entries = redis.call('SLOWLOG', 'GET', count)
  local oldest = entries[#entries]
  if #entries < count or (oldest and oldest[1] <= seen) or count >= cap then break end
  count = math.min(count * 4, cap)
end
local newest, complete, worst = seen, 0, {}
for _, e in ipairs(entries) do
  local id, usec, addr = e[1], e[3], e[5]
  if id <= seen then complete = 1 break end
  if id > newest then newest = id end
  if worst[addr] == nil or usec > worst[addr][1] then worst[addr] = {usec, e[4][1]} end
end
if #entries < count then complete = 1 end
local out = {newest, complete}
for addr, w in pairs(worst) do
  out[#out + 1] = addr
  out[#out + 1] = w[1]
  out[#out + 1] = w[2]
end
return out
"""


@dataclass
class Watched:
    """What Redis did during a ``RedisWatch`` block."""

    max_ms: float = 0.0
    slowest: str = ""  # the command name of the longest one
    complete: bool = True  # False if SLOWLOG overflowed between two reads
    commands: Counter[str] = field(default_factory=Counter)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())

    def longest(self) -> str:
        """``"14.96 EVALSHA"``, or ``"< 0.1"`` when no command reached the log's threshold."""
        if not self.slowest:
            return f"< {RedisWatch.SLOWER_THAN_US / 1000:g}"
        return f"{self.max_ms:.2f} {self.slowest}" + ("" if self.complete else " (SLOWLOG overflowed: may be low)")


class RedisWatch:
    """Longest single command of this database's clients, and server-wide command counts, during a block.

    Lowers ``slowlog-log-slower-than`` to 100 µs and raises ``slowlog-max-len``
    for the block, and restores both after. Not 0: Redis 7 also logs every
    command a Lua script runs, inside the script's own measured time, which
    made each 1,000-job requeue script ~60 % slower and the run up to 4× slower
    (see docs/benchmarks.md). A command under 100 µs cannot be the longest one
    that matters; if nothing reaches it, the maximum is reported as 0.

    Every 0.1 s it notes which clients are connected to the benchmark database
    (CLIENT LIST) and folds the new SLOWLOG entries in, keeping only those
    clients' entries: other databases on the same server, commands inside
    scripts (counted in their EVALSHA) and this watcher are left out.
    """

    POLL = 0.1
    SLOWER_THAN_US = 100
    MAX_LEN = 100_000
    OWN_COMMANDS = ("slowlog", "client", "info", "config", "script")  # the watcher's (and its EVALSHAs, counted)

    def __init__(self, url: str) -> None:
        self.url = url
        self.result = Watched()

    def __enter__(self) -> Watched:
        self._conn = connect(self.url)
        self._saved = self._conn.config_get("slowlog-*")
        try:
            self._db = self._conn.connection_pool.connection_kwargs.get("db", 0)
            self._own_addr = self._conn.client_info()["addr"]
            self._conn.config_set("slowlog-max-len", self.MAX_LEN)
            self._conn.config_set("slowlog-log-slower-than", self.SLOWER_THAN_US)
            self._conn.slowlog_reset()
            self._drain_sha = self._conn.script_load(_DRAIN)
            self._seen_id, self._polls, self._error = -1, 0, None
            self._clients: set[str] = set()
            self._before = command_calls(self._conn)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="redis-watch", daemon=True)
            self._thread.start()
        except BaseException:
            self._restore()
            raise
        return self.result

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop.set()
            self._thread.join()
            if self._error is not None:
                raise RuntimeError("reading SLOWLOG failed") from self._error
            self._poll()
            after = command_calls(self._conn)
            after["evalsha"] -= self._polls
            self.result.commands = Counter(
                {name: after[name] - self._before[name] for name in after
                 if after[name] > self._before[name] and not name.startswith(self.OWN_COMMANDS)}
            )  # fmt: skip
        finally:
            self._restore()

    def _restore(self) -> None:
        self._conn.config_set("slowlog-log-slower-than", self._saved["slowlog-log-slower-than"])
        self._conn.config_set("slowlog-max-len", self._saved["slowlog-max-len"])
        self._conn.close()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.POLL):
                self._poll()
        except Exception as exc:  # reported by __exit__, in the benchmark's thread
            self._error = exc

    def _poll(self) -> None:
        self._clients.update(c["addr"] for c in self._conn.client_list() if int(c["db"]) == self._db)
        self._clients.discard(self._own_addr)
        newest, complete, *worst = self._conn.evalsha(self._drain_sha, 0, self._seen_id, self.MAX_LEN)
        self._polls += 1
        self._seen_id = newest
        self.result.complete &= bool(complete)
        for i in range(0, len(worst), 3):
            addr, usec, command = worst[i].decode(), worst[i + 1], worst[i + 2].decode()
            if addr in self._clients and usec / 1000 > self.result.max_ms:
                self.result.max_ms, self.result.slowest = usec / 1000, command.upper()


def machine(connection: redis.Redis) -> str:
    """One line saying where the numbers come from: machine, versions, load, and queuewatch's commit."""
    server = connection.info("server")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Redis {server['redis_version']}, "
        f"rq {version('rq')}, redis-py {version('redis')}, queuewatch {_commit()}, load average {load}"
    )


def _commit() -> str:
    """The checkout's commit, and whether files differ from it (the numbers measure the files)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")
