"""Failure triage on a large RQ failed registry: what a time budget buys, and what a full count costs.

Fills ``--other`` (1,000) and then ``--jobs`` (100,000) real RQ failed jobs
(``_data.fill_failed``: the rq library's own calls; one cause whose messages
differ in their numbers, so one group), then measures in this process,
against the real Redis:

- a filtered list (``triage.scan``, 1 s budget, want 50) for a text that only
  the *oldest* jobs match: how many rows the budget reads, and that it says partial;
- a grouping (``triage.groups``, 2 s budget): rows read, groups found, partial;
- a bulk operation's counting phase over the whole registry, for "all"
  (ids only) and for one group (every row read and fingerprinted): seconds and rows/s.

Each is run ``--repeat`` (3) times; the table shows the median. Uses database 13
by default, emptied before and after (``--url``).

    .venv/bin/python benchmarks/triage_scale.py [--jobs 100000] [--url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _data
from _report import table

from queuewatch.adapters.rq.adapter import RQAdapter
from queuewatch.failures.operations import Operations
from queuewatch.failures.runner import Runner
from queuewatch.adapters.store.sqlite_store import SQLiteStateStore
from queuewatch.failures.triage import Filter, groups, scan

QUEUE = "triage-bench"


class OneAdapter:
    def __init__(self, adapter: RQAdapter) -> None:
        self._adapter = adapter

    def adapter(self, backend: str, system: str) -> RQAdapter:
        return self._adapter

    def changed(self) -> None:
        pass


def count(ops: Operations, flt: Filter) -> tuple[float, int, int]:
    """Seconds, rows read and jobs matched for one operation's counting phase."""
    runner = Runner(ops)
    op = ops.create("requeue", [("redis", "rq", QUEUE)], flt, "bench")
    started = time.perf_counter()
    while runner.step():
        pass
    seconds = time.perf_counter() - started
    done = ops.get(op.id)
    ops.cancel(op.id, "bench")  # discard: nothing is requeued
    return seconds, done.examined, done.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--other", type=int, default=1_000, help="older jobs, written first")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=_data.DEFAULT_URL, help="emptied before and after (default: database 13)")
    args = parser.parse_args()
    connection = _data.connect(args.url)
    print(f"# {_data.machine(connection)}")
    connection.flushdb()
    try:
        # Some jobs first: they are the oldest, at the end of a newest-first walk.
        other = _data.fill_failed(connection, QUEUE, args.other)
        _data.fill_failed(connection, QUEUE, args.jobs, progress=True)
        total = args.jobs + args.other
        adapter = RQAdapter(backend="redis", client=connection)
        first = adapter.job(QUEUE, other[0])
        needle = first.id[:8]  # matches one old job: the walk must read (almost) everything to find it
        rows = []

        def median(run):  # type: ignore[no-untyped-def]
            results = [run() for _ in range(args.repeat)]
            return sorted(results, key=lambda r: r[0])[len(results) // 2]

        sec, found = median(lambda: (lambda s: (s.elapsed, s))(scan(adapter, QUEUE, Filter(text=needle), want=50)))
        rows.append(("filtered list, text of the oldest job (1 s budget)", f"{sec:.2f}", f"{found.examined:,}",
                     f"{found.examined / sec:,.0f}", f"{len(found.rows)} match; partial={found.partial}"))
        sec, grouping = median(lambda: (lambda g: (g.elapsed, g))(groups([(("redis", "rq", QUEUE), adapter)], Filter())))
        rows.append(("groups (2 s budget)", f"{sec:.2f}", f"{grouping.examined:,}", f"{grouping.examined / sec:,.0f}",
                     f"{len(grouping.groups)} group(s), largest {grouping.groups[0].group.count:,}; partial={grouping.partial}"))
        with tempfile.TemporaryDirectory() as state:
            ops = Operations(SQLiteStateStore(Path(state) / "s.sqlite3"), OneAdapter(adapter))  # type: ignore[arg-type]
            for label, flt in (("operation counting, all (ids only)", Filter()),
                               ("operation counting, one group (every row read)",
                                Filter(group=grouping.groups[0].group.fingerprint))):  # fmt: skip
                sec, examined, matched = median(lambda flt=flt: count(ops, flt))
                rows.append((label, f"{sec:.2f}", f"{examined:,}", f"{examined / sec:,.0f}", f"{matched:,} to act on"))
        print(f"\nRQ failed registry of {total:,} jobs (median of {args.repeat}):\n")
        print(table(("what", "seconds", "rows read", "rows/s", "answer"), rows, right=(1, 2, 3)))
    finally:
        connection.flushdb()
        connection.close()


if __name__ == "__main__":
    main()
