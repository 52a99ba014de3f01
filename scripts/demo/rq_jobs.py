"""The demo's RQ jobs (``rq worker --path scripts/demo`` imports them by name)."""

from behaviour import behave


def send_email(kind, n):
    return behave(kind, n)


def charge_card(kind, n):
    return behave(kind, n)


def render_report(kind, n):
    return behave(kind, n)
