"""Enqueue a mix of demo RQ jobs so the dashboard has something to show.

Run it, then start a worker on the same Redis:

    python scripts/demo/seed.py --url redis://localhost:6379/0
    rq worker default emails reports --path scripts/demo \
        --url redis://localhost:6379/0 --with-scheduler

The worker drains ``default`` and ``emails`` first (some jobs raise ValueError
or KeyError and land in the failed registry), then starts a long
``export_archive`` job on ``reports`` while the other report jobs wait behind
it, so there is an in-progress job and a non-empty queue to look at. One report
is scheduled an hour ahead.

rq is a dev/test dependency of queuewatch, never a runtime one.
"""

import argparse
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from redis import Redis, RedisError
from rq import Queue, Retry

import tasks


def seed(connection, *, sleep_seconds, repeat=1):
    """Enqueue the demo jobs ``repeat`` times; return a count per queue."""
    default = Queue("default", connection=connection)
    emails = Queue("emails", connection=connection)
    reports = Queue("reports", connection=connection)
    enqueued = Counter()

    def enqueue(queue, func, *args, **options):
        queue.enqueue(func, *args, result_ttl=86400, **options)
        enqueued[queue.name] += 1

    for round_ in range(repeat):
        for user_id in ("u-1", "u-2"):
            enqueue(default, tasks.lookup_user, user_id)
        for user_id in ("u-404", "u-405", "u-406"):
            enqueue(default, tasks.lookup_user, user_id)
        for customer_id, amount in (("c-17", "19.99"), ("c-42", "250.00"), ("c-99", "5.00")):
            enqueue(default, tasks.charge_card, customer_id, Decimal(amount))
        # Retried twice before it fails for good, so it shows an attempt count.
        enqueue(default, tasks.charge_card, "c-7", Decimal("12.50"), retry=Retry(max=2))

        for n in range(6):
            enqueue(
                emails,
                tasks.send_email,
                f"user{round_}-{n}@example.com",
                f"Your order #{1000 + n}",
                template="order-confirmation",
            )

    # One long job holds the worker, so the remaining reports stay queued.
    enqueue(
        reports,
        tasks.export_archive,
        sleep_seconds,
        job_timeout=sleep_seconds + 60,
    )
    today = datetime.now(timezone.utc).date()
    rows = [{"day": today - timedelta(days=d), "signups": 40 + d} for d in range(7)]
    for name in ("daily-signups", "weekly-revenue", "churn", "latency-p99"):
        enqueue(reports, tasks.render_report, name, rows)

    reports.enqueue_in(timedelta(hours=1), tasks.render_report, "monthly-summary", [])
    enqueued["reports (scheduled)"] += 1
    return enqueued


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://localhost:6379/0", help="Redis URL (default: %(default)s)")
    parser.add_argument(
        "--sleep",
        type=int,
        default=900,
        help="seconds the in-progress export job runs (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="enqueue the default/emails mix this many times (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    connection = Redis.from_url(args.url)
    try:
        try:
            connection.ping()
        except RedisError as exc:
            print(f"seed: cannot reach {args.url}: {exc}", file=sys.stderr)
            return 1
        enqueued = seed(connection, sleep_seconds=args.sleep, repeat=args.repeat)
    finally:
        connection.close()
    for queue_name, count in sorted(enqueued.items()):
        print(f"seed: {count:4d} job(s) -> {queue_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
