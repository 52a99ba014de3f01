"""The ``queuewatch`` command: ``queuewatch`` alone is ``queuewatch serve``.

Serves the app under gunicorn: one process with a pool of threads for
viewers by default, or ``--workers N`` processes. Each process runs a sampler;
a lease in the state store lets one of them sample (app/snapshots/sampler.py). Every
flag is also a ``QUEUEWATCH_*`` environment variable.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import click

from . import config
from .security import auth


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
@click.option("--users", envvar="QUEUEWATCH_USERS", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Users: TOML or JSON lines of name, role (viewer/operator/admin), password_hash (queuewatch hash-password).")
@click.option("--tokens", envvar="QUEUEWATCH_TOKENS", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="API tokens: TOML or JSON lines of name, role, token_hash (queuewatch make-token).")
@click.option("--trust-user-header", envvar="QUEUEWATCH_TRUST_USER_HEADER", metavar="HEADER",
              help="Take the user name from this header (e.g. X-Forwarded-User), only from --trusted-proxy addresses.")
@click.option("--trust-role-header", envvar="QUEUEWATCH_TRUST_ROLE_HEADER", metavar="HEADER",
              help="Take the role from this header (else --trust-default-role).")
@click.option("--trust-default-role", envvar="QUEUEWATCH_TRUST_DEFAULT_ROLE", default="viewer", show_default=True,
              type=click.Choice(["viewer", "operator", "admin"]))
@click.option("--trusted-proxy", "trusted_proxies", envvar="QUEUEWATCH_TRUSTED_PROXIES", multiple=True, metavar="ADDRESS",
              help="Address of the authenticating proxy (repeatable). Default 127.0.0.1 and ::1.")
@click.option("--session-idle", envvar="QUEUEWATCH_SESSION_IDLE", type=click.FloatRange(min=0.01), default=12.0,
              show_default=True, metavar="HOURS", help="A login session unused this long ends (logging out ends it at once).")
@click.option("--secure-cookies", envvar="QUEUEWATCH_SECURE_COOKIES", is_flag=True,
              help="Mark the session cookie Secure (behind a TLS-terminating proxy).")
@click.option("--read-only", envvar="QUEUEWATCH_READ_ONLY", is_flag=True, help="Refuse every change with 403.")
@click.option("--allowed-host", "allowed_hosts", envvar="QUEUEWATCH_ALLOWED_HOSTS", multiple=True, metavar="NAME",
              help="A host name the dashboard answers to, besides loopback names and the bind address (repeatable; "
                   "*.example.com patterns; * for any). Other Host headers get 400: DNS rebinding.")
@click.option("--insecure-no-auth", envvar="QUEUEWATCH_INSECURE_NO_AUTH", is_flag=True,
              help="Serve without authentication on a non-loopback address (only behind something that authenticates).")
@click.option("--rabbitmq-management", "rabbitmq_management", envvar="QUEUEWATCH_RABBITMQ_MANAGEMENT", multiple=True,
              metavar="[NAME=]URL", help="RabbitMQ management API, when not at http://<amqp host>:15672/ with the AMQP credentials.")
@click.option("--rabbitmq-queue", "rabbitmq_queues", envvar="QUEUEWATCH_RABBITMQ_QUEUES", multiple=True,
              metavar="[NAME=]QUEUE", help="A RabbitMQ queue to watch even without the management API (repeatable).")
@click.option("--rabbitmq-dlq", "rabbitmq_dlqs", envvar="QUEUEWATCH_RABBITMQ_DLQS", multiple=True,
              metavar="[NAME=]QUEUE", help="A RabbitMQ dead-letter queue to watch without the management API (repeatable).")
@click.option("--dramatiq-namespace", envvar="QUEUEWATCH_DRAMATIQ_NAMESPACE", default="dramatiq", show_default=True,
              help="Dramatiq's Redis key namespace.")
@click.option("--celery-results", "celery_results", envvar="QUEUEWATCH_CELERY_RESULTS", multiple=True,
              metavar="[BROKER=]URL", help="Celery's Redis result backend, when it is not the broker's database "
                                          "(repeatable; BROKER names the broker backend, default all).")
@click.option("--bulk-chunk", envvar="QUEUEWATCH_BULK_CHUNK", type=click.IntRange(1, 10_000), default=1_000, show_default=True,
              help="Jobs per step of a background requeue or delete: one atomic call each, one step of the progress bar.")
@click.option("--webhook-allow-internal", envvar="QUEUEWATCH_WEBHOOK_ALLOW_INTERNAL", is_flag=True,
              help="Allow webhook targets on link-local and cloud-metadata addresses (refused by default).")
@click.option("--webhook", "webhooks", envvar="QUEUEWATCH_WEBHOOK", multiple=True, metavar="[slack=]URL",
              help="Post alert notifications here (repeatable; generic JSON, or slack= for Slack's payload). "
                   "More targets can be added on the alerts page.")
def serve(bind: str, redis_urls: tuple[str, ...], rabbitmq_urls: tuple[str, ...], state: str | None,
          poll: float, threads: int, workers: int, log_level: str, users: str | None, tokens: str | None,
          trust_user_header: str | None, trust_role_header: str | None, trust_default_role: str,
          trusted_proxies: tuple[str, ...], session_idle: float, secure_cookies: bool, read_only: bool, allowed_hosts: tuple[str, ...],
          insecure_no_auth: bool,
          webhooks: tuple[str, ...] = (), celery_results: tuple[str, ...] = (), rabbitmq_management: tuple[str, ...] = (),
          rabbitmq_queues: tuple[str, ...] = (), rabbitmq_dlqs: tuple[str, ...] = (),
          dramatiq_namespace: str = "dramatiq", bulk_chunk: int = 1_000, webhook_allow_internal: bool = False) -> None:  # fmt: skip
    """Serve the dashboard under gunicorn, with the sampler."""
    overrides: dict[str, Any] = {"POLL": poll, "SAMPLER": True, "BIND": bind, "USERS": users, "TOKENS": tokens,
                                 "TRUST_USER_HEADER": trust_user_header, "TRUST_ROLE_HEADER": trust_role_header,
                                 "TRUST_DEFAULT_ROLE": trust_default_role, "SESSION_COOKIE_SECURE": secure_cookies,
                                 "SESSION_IDLE_SECONDS": session_idle * 3600,
                                 "READ_ONLY": read_only, "INSECURE_NO_AUTH": insecure_no_auth,
                                 "BULK_CHUNK": bulk_chunk, "WEBHOOK_ALLOW_INTERNAL": webhook_allow_internal}  # fmt: skip
    if trusted_proxies:
        overrides["TRUSTED_PROXIES"] = config.split_specs(trusted_proxies)
    if allowed_hosts:
        overrides["ALLOWED_HOSTS"] = config.split_specs(allowed_hosts)
    try:
        env_credentials = {k[len("QUEUEWATCH_"):]: v for k, v in os.environ.items() if k.startswith(("QUEUEWATCH_USER_", "QUEUEWATCH_TOKEN_"))}
        credentials = auth.load_credentials(users, tokens, env_credentials)
    except (OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    problem = auth.exposure_problem(bind, credentials.any or bool(trust_user_header), insecure_no_auth)
    if problem:
        raise click.UsageError(problem)
    if webhooks:
        from queuewatch.alerts.webhooks import parse_webhook

        overrides["WEBHOOK"] = config.split_specs(webhooks)
        try:
            [parse_webhook(spec) for spec in overrides["WEBHOOK"]]
        except ValueError as exc:
            raise click.UsageError(f"--webhook: {exc}") from exc
    if celery_results:
        overrides["CELERY_RESULTS"] = config.split_specs(celery_results)
    overrides["DRAMATIQ_NAMESPACE"] = dramatiq_namespace
    for key, values in (("RABBITMQ_MANAGEMENT", rabbitmq_management), ("RABBITMQ_QUEUES", rabbitmq_queues),
                        ("RABBITMQ_DLQS", rabbitmq_dlqs)):  # fmt: skip
        if values:
            overrides[key] = config.split_specs(values)
    if redis_urls:
        overrides["REDIS"] = config.split_specs(redis_urls)
    if rabbitmq_urls:
        overrides["RABBITMQ"] = config.split_specs(rabbitmq_urls)
    if state:
        scheme = state.split("://", 1)[0].lower() if "://" in state else ""
        if scheme not in ("", "redis", "rediss", "unix", "redis+sentinel"):
            raise click.UsageError(f"--state {state!r}: expected a SQLite file path or a redis:// URL")
        overrides["STATE"] = state
    try:
        specs = config.parse_backends(overrides.get("REDIS", config.DEFAULTS["REDIS"]),
                                      overrides.get("RABBITMQ", config.DEFAULTS["RABBITMQ"]))  # fmt: skip
        config.backend_options(specs, overrides)
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

    click.echo(startup_summary(bind, specs, overrides.get("STATE") or str(config.default_state_path()), credentials,
                               bool(trust_user_header), insecure_no_auth, read_only), err=True)  # fmt: skip
    Server().run()


def startup_summary(bind: str, specs: list[config.BackendSpec], state: str, credentials: auth.Credentials,
                    header_auth: bool, insecure: bool, read_only: bool) -> str:  # fmt: skip
    """What a first run watches and where to look, said once at start (passwords as ***)."""
    from queuewatch.adapters.connections import redact_url

    host, _, port = bind.rpartition(":")
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host in ("::", "[::]") else host
    lines = [f"queuewatch: open http://{shown}:{port}/"]
    for spec in specs:
        lines.append(f"  watching {spec.kind} {spec.name}: {redact_url(spec.url)}")
    if not specs:
        lines.append("  watching nothing: pass --redis URL and/or --rabbitmq URL")
    lines.append(f"  own store (settings, history, audit): {redact_url(state) if '://' in state else state}")
    if credentials.any or header_auth:
        who = [f"{len(credentials.users)} users"] * bool(credentials.users) + [f"{len(credentials.tokens)} API tokens"] * bool(
            credentials.tokens) + ["the proxy's user header"] * header_auth  # fmt: skip
        lines.append("  login: " + ", ".join(who))
    elif insecure:
        lines.append("  login: none (--insecure-no-auth: whatever is in front of it must authenticate)")
    else:
        lines.append("  login: none needed (no users configured; loopback only)")
    if read_only:
        lines.append("  read-only: no action changes a queue")
    return "\n".join(lines)


@main.command("hash-password")
@click.option("--password", envvar="QUEUEWATCH_PASSWORD", help="The password (else asked for, without echo).")
def hash_password(password: str | None) -> None:
    """Print a password hash for a users file or QUEUEWATCH_USER_<NAME>=role:HASH."""
    from werkzeug.security import generate_password_hash

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(generate_password_hash(password))


@main.command("make-token")
@click.argument("name")
@click.argument("role", type=click.Choice(auth.ROLES))
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), metavar="DAYS",
              help="The token stops working after this many days (the tokens file line says when).")
def make_token(name: str, role: str, expires_in_days: float | None) -> None:
    """Make an API token: prints the token (give it to the client) and the line for the tokens file."""
    import time

    token = auth.make_token()
    record = {"name": name, "role": role, "token_hash": auth.hash_token(token)}
    if expires_in_days:
        record["expires"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires_in_days * 86400))
    click.echo(f"token: {token}")
    click.echo("tokens file line: " + json.dumps(record))
