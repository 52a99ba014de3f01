"""Control of RQ's live work through its own channels, never ``import rq``.

RQ workers listen on a pub/sub channel named after them (``rq:pubsub:NAME``, under
rq 3.0's prefix too) for JSON commands (rq/command.py, 1.16 through 3.0):
``{"command": "stop-job", "job_id": ...}`` kills the work horse running that job,
which then ends ``stopped`` in the failed registry while the worker lives on;
``{"command": "shutdown"}`` makes the worker finish its job and exit (a warm
shutdown, SIGINT). PUBLISH answers how many listeners got the message: none means
the worker is gone, and the operator is told so.

RQ cannot pause one queue. ``rq suspend`` sets ``rq:suspended`` and every RQ worker
on the Redis stops taking jobs until ``rq resume`` deletes it: offered as the
backend-level ``suspend_workers``.
"""

from __future__ import annotations

import json
from typing import Any

from queuewatch.adapters.errors import NotFound, Unsupported
from queuewatch.adapters.redis_errors import redis_errors


class RQControl:
    """The mixin RQAdapter takes: stop, worker shutdown, suspend. Needs ``client``, ``keys``, ``job``."""

    client: Any
    keys: Any
    label: str
    backend: str

    # Methods here that only refuse, with the reason: the pages offer no button for them.
    unsupported_controls = frozenset({"pause"})

    # What the operator reads when a stopped job is still running after the wait.
    stop_hint = ("RQ stops a job by killing the work horse that runs it: a worker without one "
                 "(rq.worker.SimpleWorker, or a worker started with --worker-class that does not fork) ignores stop-job.")  # fmt: skip

    def _channel(self, worker: str) -> str:
        return f"{self.keys.root}pubsub:{worker}"

    def _command(self, worker: str, command: dict[str, str]) -> int:
        """Publish a command to a worker; how many listeners received it."""
        with redis_errors():
            return int(self.client.publish(self._channel(worker), json.dumps(command)))

    def stop(self, queue: str, job_id: str) -> str | None:
        """Send stop-job to the worker running the job. NotFound when it is not running."""
        detail = self.job(queue, job_id)  # type: ignore[attr-defined]
        if detail.state != "in_progress":
            raise NotFound(f"RQ job {job_id!r} is {(detail.state or 'in no known state').replace('_', ' ')}, not running")
        if not detail.worker:
            raise Unsupported(f"RQ has not recorded yet which worker runs job {job_id!r}: try again in a moment")
        if not self._command(detail.worker, {"command": "stop-job", "job_id": job_id}):
            raise Unsupported(f"RQ worker {detail.worker!r} that runs job {job_id!r} is not listening on "
                              f"{self._channel(detail.worker)}: the worker is gone and the job is orphaned")  # fmt: skip
        return detail.worker

    def control_worker(self, name: str, action: str, n: int = 1) -> None:
        """``shutdown``: the worker finishes its current job and exits."""
        if action != "shutdown":
            raise Unsupported(f"RQ workers take no {action.replace('_', ' ')} command (only shutdown)")
        with redis_errors():
            registered = self.client.sismember(self.keys.workers, f"{self.keys.worker_prefix}{name}")
        if not registered:
            raise NotFound(f"no RQ worker named {name!r} is registered")
        if not self._command(name, {"command": "shutdown"}):
            raise NotFound(f"RQ worker {name!r} is not listening on {self._channel(name)}: it is no longer running")

    def pause(self, queue: str, paused: bool) -> bool:
        raise Unsupported(f"RQ cannot pause one queue: `rq suspend` suspends every RQ worker on this Redis "
                          f"(POST /api/v1/backends/{self.backend}/rq/suspend)")  # fmt: skip

    @property
    def _suspended_key(self) -> str:
        return f"{self.keys.root}suspended"

    def workers_suspended(self) -> bool:
        """Whether ``rq suspend`` is in force on this Redis (one EXISTS)."""
        with redis_errors():
            return bool(self.client.exists(self._suspended_key))

    def suspend_workers(self, suspended: bool) -> bool:
        """``rq suspend`` / ``rq resume``: every RQ worker on this Redis stops (or starts again)
        taking jobs; a job running now runs to its end. Returns the state."""
        with redis_errors():
            if suspended:
                self.client.set(self._suspended_key, 1)
            else:
                self.client.delete(self._suspended_key)
        return suspended
