"""Ask every system of every backend at once, each within a time bound, for reads a page makes of
all of them (find a job by id, periodic work): a backend that is down is not asked, one that does
not answer in time is listed, never waited for."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from queuewatch.adapters.base import Adapter
from queuewatch.adapters.errors import AdapterError
from queuewatch.snapshots.monitor import Monitor

T = TypeVar("T")


def ask_everywhere(mon: Monitor, ask: Callable[[Adapter], T], seconds: float, *, asks_too: Callable[[Adapter], bool] = lambda a: True,
                   shared: str | None = None) -> tuple[list[tuple[str, str, T]], list[dict[str, Any]]]:  # fmt: skip
    """((backend, system, answer) of each that answered, [{"backend", "system", "error"}] of the rest).
    ``shared``: a key under which viewers share each backend's answer for one poll interval."""
    unreachable: list[dict[str, Any]] = []
    targets = []
    for status in mon.snapshot().backends:
        if status.status != "up":
            unreachable.append({"backend": status.name, "system": None, "error": status.error or "down"})
            continue
        targets += [(status.name, system, adapter) for system in status.systems
                    if asks_too(adapter := mon.adapter(status.name, system))]  # fmt: skip
    if not targets:
        return [], unreachable

    def one(name: str, system: str, adapter: Adapter) -> T:
        if shared is None:
            return mon.call(name, lambda: ask(adapter), seconds)
        return mon.read(name, (shared, name, system), lambda: ask(adapter), timeout=seconds)

    pool = ThreadPoolExecutor(max_workers=min(16, len(targets)), thread_name_prefix="qw-ask")
    try:
        futures = {pool.submit(one, *target): target[:2] for target in targets}
        done, pending = wait(futures, timeout=seconds + 0.5)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    answers = []
    for future in done:
        name, system = futures[future]
        try:
            answers.append((name, system, future.result()))
        except AdapterError as exc:
            unreachable.append({"backend": name, "system": system, "error": str(exc)[:300]})
    unreachable += [{"backend": futures[f][0], "system": futures[f][1], "error": f"did not answer within {seconds:g} s"}
                    for f in pending]  # fmt: skip
    return answers, unreachable
