"""What adapters learn and should not forget across a restart.

Some adapters build knowledge in memory that their backend cannot give back
later: Celery's last-seen workers (a worker killed with kill -9 sends nothing
more) and its failure index. ``AdapterMemory`` loads it from the state store
when the app starts and saves it from the sampler's snapshots when it changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .monitor import Monitor, Snapshot

log = logging.getLogger(__name__)


class AdapterMemory:
    def __init__(self, monitor: Monitor, store: Any) -> None:
        self.monitor = monitor
        self.store = store
        self._saved: dict[str, object] = {}

    @staticmethod
    def key(backend: str, system: str) -> str:
        return f"adapter-state:{backend}:{system}"

    def load(self) -> None:
        """Give each adapter what it saved last time (at start-up, in every process)."""
        for backend in self.monitor.backends.values():
            for cls in backend.adapter_classes:
                try:
                    raw = self.store.get(self.key(backend.name, cls.system))
                    if raw:
                        backend.adapter(cls.system).load_memory(json.loads(raw))
                except Exception as exc:  # a bad or unreadable state must not stop start-up
                    log.warning("could not restore %s state of %s: %s", cls.system, backend.name, exc)

    def save(self, snapshot: Snapshot) -> None:
        """Store each present adapter's state when it changed (a sampler listener)."""
        for backend in self.monitor.backends.values():
            for adapter in backend.present():
                key = self.key(backend.name, adapter.system)
                version = adapter.memory_version
                if version is not None and self._saved.get(key) == version:
                    continue
                data = adapter.dump_memory()
                if data is None:
                    continue
                text = json.dumps(data, separators=(",", ":"))
                if version is None and self._saved.get(key) == text:
                    continue
                self.store.put(key, text)
                self._saved[key] = version if version is not None else text
