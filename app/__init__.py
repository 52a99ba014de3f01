"""queuewatch: one dashboard for RQ, Celery, Dramatiq and Arq on Redis and RabbitMQ.

``create_app`` builds the Flask app: defaults, then ``QUEUEWATCH_*`` from the
environment, then the caller's overrides (the CLI's flags, or a test's).
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from flask import Flask

from queuewatch.adapters.store import open_store, secret_key

from . import config, views
from .alerts import service as alerting
from .failures.inspections import HeldInspections
from .failures.operations import Operations
from .failures.runner import Runner
from .security import auth, csrf, headers, hosts
from .snapshots.adapter_memory import AdapterMemory
from .snapshots.monitor import Monitor
from .snapshots.recorder import Recorder
from .snapshots.sampler import Sampler

__version__ = "0.1.0"


def _asset_dir(name: str) -> str:
    """templates/ and static/ sit beside the package when installed, one level up in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return str(candidate)
    raise RuntimeError(f"queuewatch is installed without its {name}/ directory")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, template_folder=_asset_dir("templates"), static_folder=_asset_dir("static"))
    app.config.from_mapping(config.DEFAULTS)
    app.config.from_prefixed_env("QUEUEWATCH")
    if test_config:
        app.config.from_mapping(test_config)

    app.config["POLL"] = float(app.config["POLL"])
    if app.config["POLL"] <= 0:
        raise ValueError("--poll must be a positive number of seconds")
    specs = config.parse_backends(config.split_specs(app.config["REDIS"]), config.split_specs(app.config["RABBITMQ"]))
    store = open_store(app.config["STATE"] or config.default_state_path())
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(store)

    monitor = Monitor(specs, poll=app.config["POLL"], options=config.backend_options(specs, app.config))
    recorder = Recorder(store, interval=app.config["POLL"])
    sampler = Sampler(monitor, interval=app.config["POLL"], store=store, recorder=recorder)
    app.extensions["queuewatch.store"] = store
    app.extensions["queuewatch.monitor"] = monitor
    app.extensions["queuewatch.recorder"] = recorder
    app.extensions["queuewatch.sampler"] = sampler
    memory = AdapterMemory(monitor, store)
    memory.load()
    # Adapters that keep state an operator set (Celery's paused queues) keep it in the state store:
    # shared by every process, kept across restarts.
    for backend in monitor.backends.values():
        for cls in backend.adapter_classes:
            if hasattr(cls, "use_store"):
                backend.adapter(cls.system).use_store(store)
    sampler.on_snapshot(memory.save)
    app.extensions["queuewatch.adapter_memory"] = memory

    operations = Operations(store, monitor, chunk=int(app.config["BULK_CHUNK"]))
    runner = Runner(operations)
    app.extensions["queuewatch.operations"] = operations
    app.extensions["queuewatch.runner"] = runner
    app.extensions["queuewatch.inspections"] = HeldInspections()

    auth.init_app(app)  # before csrf: who you are (401) is answered before whether the form is ours (403)
    hosts.init_app(app, authenticated=app.extensions["queuewatch.auth"].required)
    csrf.init_app(app)
    headers.init_app(app)
    alerting.init_app(app, sampler)  # rules evaluated on the lease holder's snapshots; the banner on every page
    views.init_app(app)

    if app.config["SAMPLER"]:
        sampler.start()
        atexit.register(sampler.stop)
        runner.start()  # bulk operations: whoever holds an operation's lease works on it
        atexit.register(runner.stop)
    return app
