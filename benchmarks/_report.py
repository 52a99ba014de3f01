"""Shared by the benchmarks: how results are printed and what the dashboard's processes weigh.

``table`` prints a Markdown table (what every script puts on stdout, so a run
can be pasted into docs/benchmarks.md as it is), ``percentile`` is the
nearest-rank percentile the tables use, and ``dashboard_rss`` reads VmRSS of
every process of one ``queuewatch serve`` (gunicorn's arbiter and its workers)
from /proc.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A Markdown table; the columns whose indexes are in ``right`` are right-aligned (numbers)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("--:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(seconds: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of durations in seconds, in ms."""
    ordered = sorted(seconds)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dashboard_pids(port: int) -> list[int]:
    """The ``queuewatch serve`` bound to ``port`` and every process under it."""
    procs: dict[int, tuple[list[bytes], int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        procs[int(d.name)] = (cmdline, ppid)
    bind = f"127.0.0.1:{port}".encode()
    family = {pid for pid, (cmd, _) in procs.items() if bind in cmd and b"serve" in cmd}
    while grown := {pid for pid, (_, ppid) in procs.items() if ppid in family} - family:
        family |= grown
    return sorted(family)


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def dashboard_rss(port: int) -> dict[int, int]:
    """pid -> VmRSS in KiB, for every process of the ``queuewatch serve`` on ``port``."""
    return {pid: rss_kib(pid) for pid in dashboard_pids(port)}


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"
