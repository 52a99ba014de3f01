"""AdapterMemory: what adapters learned is saved when it changed and given back at start (pure logic)."""

from __future__ import annotations

from queuewatch.snapshots.adapter_memory import AdapterMemory


class Learner:
    system = "celery"

    def __init__(self) -> None:
        self.version, self.loaded, self.dumps = 1, None, 0

    def dump_memory(self):
        self.dumps += 1
        return {"seen": self.version}

    def load_memory(self, data) -> None:
        self.loaded = data

    @property
    def memory_version(self):
        return self.version


class OneBackend:
    name = "redis"
    adapter_classes = (Learner,)

    def __init__(self) -> None:
        self.learner = Learner()

    def present(self):
        return [self.learner]

    def adapter(self, system):
        return self.learner


class Store(dict):
    def put(self, key, value) -> None:
        self[key] = value


class Monitor:
    def __init__(self) -> None:
        self.backends = {"redis": OneBackend()}


def test_state_is_saved_only_when_it_changed_and_restored_at_start() -> None:
    monitor, store = Monitor(), Store()
    states = AdapterMemory(monitor, store)
    learner = monitor.backends["redis"].learner
    states.save(None)
    states.save(None)
    assert store == {"adapter-state:redis:celery": '{"seen":1}'} and learner.dumps == 1
    learner.version = 2
    states.save(None)
    assert store["adapter-state:redis:celery"] == '{"seen":2}'
    restarted = Monitor()
    AdapterMemory(restarted, store).load()
    assert restarted.backends["redis"].learner.loaded == {"seen": 2}


def test_an_unreadable_saved_state_does_not_stop_start_up() -> None:
    monitor, store = Monitor(), Store({"adapter-state:redis:celery": "{not json"})
    AdapterMemory(monitor, store).load()
    assert monitor.backends["redis"].learner.loaded is None
