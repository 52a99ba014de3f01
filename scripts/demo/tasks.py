"""Demo RQ job functions: some succeed, some fail, one runs for a long time.

The worker imports this module by name (``tasks.send_email`` ...), so it must
run with this directory on its import path (``rq worker --path scripts/demo``,
or from inside the directory, as the compose service does).
"""

import time
from decimal import Decimal


def send_email(to, subject, *, template="plain"):
    """Pretend to send an email."""
    return {"to": to, "subject": subject, "template": template, "sent": True}


def render_report(name, rows):
    """Pretend to render a report of a few rows."""
    return f"{name}: {len(rows)} rows"


def charge_card(customer_id, amount):
    """Fail like a payment provider that declines the card."""
    # A Decimal argument pickles as a global reference, which shows off the
    # dashboard's opcode-walking payload reader (it never unpickles).
    raise ValueError(f"card declined for customer {customer_id}: {Decimal(amount)}")


def lookup_user(user_id):
    """Fail with a KeyError, as a lookup in a stale cache would."""
    users = {"u-1": "ada", "u-2": "grace"}
    return users[user_id]


def export_archive(seconds):
    """Sleep so that the dashboard has an in-progress job to show."""
    time.sleep(seconds)
    return f"exported after {seconds} s"
