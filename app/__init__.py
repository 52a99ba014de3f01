"""queuewatch: one dashboard for RQ, Celery, Dramatiq and Arq on Redis and RabbitMQ.

``create_app`` builds the Flask app: defaults, then ``QUEUEWATCH_*`` from the
environment, then the caller's overrides (the CLI's flags, or a test's).
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from flask import Flask

from . import config

from .security import auth

from .security import csrf

from .views import jinja as filters

from .views import openapi
from queuewatch.snapshots.monitor import Monitor
from queuewatch.snapshots.adapter_memory import AdapterStates
from queuewatch.failures.operations import Operations, Runner
from queuewatch.snapshots.recorder import Recorder
from queuewatch.snapshots.sampler import Sampler
from queuewatch.adapters.store.sqlite_store import open_store, secret_key

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
    state = open_store(app.config["STATE"] or config.default_state_path())
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(state)

    monitor = Monitor(specs, poll=app.config["POLL"], options=config.backend_options(specs, app.config))
    recorder = Recorder(state, interval=app.config["POLL"])
    sampler = Sampler(monitor, interval=app.config["POLL"], store=state, recorder=recorder)
    app.extensions["queuewatch.state"] = state
    app.extensions["queuewatch.monitor"] = monitor
    app.extensions["queuewatch.recorder"] = recorder
    app.extensions["queuewatch.sampler"] = sampler
    for spec in config.split_specs(app.config.get("CELERY_RESULTS")):
        config.link_celery_results(monitor, spec)
    states = AdapterStates(monitor, state)
    states.load()
    sampler.on_snapshot(states.save)
    app.extensions["queuewatch.adapter_states"] = states

    operations = Operations(state, monitor, chunk=int(app.config["BULK_CHUNK"]))
    runner = Runner(operations)
    app.extensions["queuewatch.operations"] = operations
    app.extensions["queuewatch.runner"] = runner

    auth.init_app(app)  # before csrf: who you are (401) is answered before whether the form is ours (403)
    csrf.init_app(app)
    filters.init_app(app)
    from .views import api, health, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    from .views import audit as audit_views
    from .views import auth as auth_views

    app.register_blueprint(auth_views.bp)
    app.register_blueprint(audit_views.bp)
    app.register_blueprint(openapi.bp)

    from .alerts import service as alerting
    from .views import alerts as alert_views

    alerting.init_app(app, sampler)  # rules evaluated on the lease holder's snapshots; the banner on every page
    app.register_blueprint(alert_views.bp)
    app.register_blueprint(alert_views.api)
    from .views import operations as op_views
    from .views import triage as triage_views

    app.register_blueprint(op_views.bp)
    app.register_blueprint(op_views.api)
    app.register_blueprint(triage_views.bp)
    app.register_blueprint(triage_views.api)
    from . import views

    views.init_errors(app)  # errors of the blueprints that have no handlers of their own

    if app.config["SAMPLER"]:
        sampler.start()
        atexit.register(sampler.stop)
        runner.start()  # bulk operations: whoever holds an operation's lease works on it
        atexit.register(runner.stop)
    return app
