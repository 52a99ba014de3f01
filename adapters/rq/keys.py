"""The names of RQ's Redis keys, under one prefix.

RQ 3.0 reads its prefix from ``RQ_KEY_PREFIX`` (default ``rq``) when it is
imported; 1.16 and 2.x always use ``rq``. Every name below is the prefix, a
colon, and what rq itself appends, spelled as each version spells it (the
dependencies set really is ``rq:job::ID:dependencies``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# rq 3.0 refuses any other character in a prefix: it is spliced into templates and Lua.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:{}-]+")
# Registries by the word rq uses in their keys. "wip" is the started registry
# (1.16 through 3.0; "started" is read too, for data older than that); "ready"
# is rq 3.0's transient stop between deferred and queued.
REGISTRIES = ("wip", "started", "scheduled", "deferred", "ready", "failed", "finished", "canceled")


@dataclass(frozen=True)
class Keys:
    """Key names for one prefix."""

    prefix: str = "rq"

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(f"RQ key prefix {self.prefix!r}: only letters, digits and _ . : - {{ }} are allowed")

    @property
    def root(self) -> str:
        """What every key starts with: ``rq:``."""
        return self.prefix + ":"

    @property
    def queues(self) -> bytes:
        return f"{self.root}queues".encode()

    @property
    def workers(self) -> bytes:
        return f"{self.root}workers".encode()

    @property
    def queue_prefix(self) -> str:
        return f"{self.root}queue:"

    @property
    def job_prefix(self) -> str:
        return f"{self.root}job:"

    @property
    def worker_prefix(self) -> str:
        return f"{self.root}worker:"

    def queue(self, name: str) -> str:
        return f"{self.root}queue:{name}"

    def intermediate(self, name: str) -> str:
        return f"{self.root}queue:{name}:intermediate"

    def registry(self, kind: str, queue: str) -> str:
        return f"{self.root}{kind}:{queue}"

    def job(self, job_id: str) -> str:
        return f"{self.root}job:{job_id}"

    def results(self, job_id: str) -> str:
        return f"{self.root}results:{job_id}"

    def executions(self, job_id: str) -> str:
        """rq 2.x/3.x: a job's running executions (zset of execution ids)."""
        return f"{self.root}executions:{job_id}"

    def execution(self, job_id: str, execution_id: str) -> str:
        return f"{self.root}execution:{job_id}:{execution_id}"

    def worker_executions(self, worker: str) -> str:
        """rq 3.0: the ``jobid:execid`` members a worker is running (it no longer writes ``current_job``)."""
        return f"{self.root}worker:{worker}:executions"

    @property
    def groups(self) -> str:
        return f"{self.root}groups"

    def group(self, name: str) -> str:
        return f"{self.root}group:{name}"

    @property
    def cron_schedulers(self) -> str:
        return f"{self.root}cron_schedulers"

    def cron_scheduler(self, name: str) -> str:
        return f"{self.root}cron_scheduler:{name}"

    @property
    def cron_jobs(self) -> str:
        return f"{self.root}cron_jobs"

    def cron_job_history(self, name: str) -> str:
        return f"{self.root}cron_job:{name}:jobs"
