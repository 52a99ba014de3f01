"""The ``queuewatch`` command: ``queuewatch`` alone is ``queuewatch serve``.

Serves the app under gunicorn: one process with a pool of threads for
viewers by default, or ``--workers N`` processes. Each process runs a sampler;
a lease in the state store lets one of them sample (app/sampler.py). Every
flag is also a ``QUEUEWATCH_*`` environment variable.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from . import config


def _check_bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return value


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="queuewatch")
@click.pass_context
def main(ctx: click.Context) -> None:
    """queuewatch: a dashboard for RQ, Celery, Dramatiq and Arq queues on Redis and RabbitMQ."""
    if ctx.invoked_subcommand is None:
        # Run `serve` as its own command line so its QUEUEWATCH_* variables are
        # read (ctx.invoke would fill in bare defaults).
        serve.main(args=[], prog_name=f"{ctx.info_name} serve")


@main.command()
@click.option("--bind", envvar="QUEUEWATCH_BIND", default="127.0.0.1:8000", show_default=True,
              callback=lambda _c, _p, v: _check_bind(v), help="HOST:PORT to serve on.")
@click.option("--redis", "redis_urls", envvar="QUEUEWATCH_REDIS", multiple=True, metavar="[NAME=]URL",
              help=f"A Redis database to watch (repeatable; 'none' for none). Default {config.DEFAULT_REDIS}.")
@click.option("--rabbitmq", "rabbitmq_urls", envvar="QUEUEWATCH_RABBITMQ", multiple=True, metavar="[NAME=]URL",
              help="A RabbitMQ vhost to watch (repeatable; 'none' for none). Default amqp://guest:…@localhost:5672/%2F.")
@click.option("--state", envvar="QUEUEWATCH_STATE", metavar="PATH_OR_URL",
              help="The dashboard's own store (settings, history): a SQLite file, or a redis:// URL that "
                   f"replicas share. Default {config.default_state_path()}.")
@click.option("--poll", envvar="QUEUEWATCH_POLL", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between snapshots and page refreshes.")
@click.option("--threads", envvar="QUEUEWATCH_THREADS", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Request threads per worker process.")
@click.option("--workers", envvar="QUEUEWATCH_WORKERS", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes. One samples at a time; each reads snapshots for its own viewers.")
@click.option("--log-level", envvar="QUEUEWATCH_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(bind: str, redis_urls: tuple[str, ...], rabbitmq_urls: tuple[str, ...], state: str | None,
          poll: float, threads: int, workers: int, log_level: str) -> None:  # fmt: skip
    """Serve the dashboard under gunicorn, with the sampler."""
    overrides: dict[str, Any] = {"POLL": poll, "SAMPLER": True}
    if redis_urls:
        overrides["REDIS"] = config.split_specs(redis_urls)
    if rabbitmq_urls:
        overrides["RABBITMQ"] = config.split_specs(rabbitmq_urls)
    if state:
        scheme = state.split("://", 1)[0].lower() if "://" in state else ""
        if scheme not in ("", "redis", "rediss"):
            raise click.UsageError(f"--state {state!r}: expected a SQLite file path or a redis:// URL")
        overrides["STATE"] = state
    try:
        config.parse_backends(overrides.get("REDIS", config.DEFAULTS["REDIS"]),
                              overrides.get("RABBITMQ", config.DEFAULTS["RABBITMQ"]))  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from gunicorn.app.base import BaseApplication

    from . import create_app

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": bind,
                # Each process has its own snapshot for its viewers; the
                # sampler's lease makes one of them sample for all.
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "timeout": 60,
                "graceful_timeout": 10,
                "loglevel": log_level,
                "errorlog": "-",
                "accesslog": "-" if log_level == "debug" else None,
                "proc_name": "queuewatch",
            }
            # gunicorn >= 25 opens a control socket under $HOME by default: two
            # dashboards on one host would fight over it, and we do not use it.
            if "control_socket_disable" in self.cfg.settings:
                settings["control_socket_disable"] = True
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(overrides)

    click.echo(f"queuewatch serving on http://{bind}/", err=True)
    Server().run()
