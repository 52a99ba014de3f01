"""The demo's Arq functions and worker settings (``arq arq_jobs.WorkerSettings``),
in the demo's Redis database 3. Results are kept an hour, failures included."""

from __future__ import annotations

import os

from arq.connections import RedisSettings

from behaviour import behave_async

REDIS = os.environ.get("DEMO_REDIS", "redis://127.0.0.1:6380").rstrip("/") + "/3"


async def resize_image(ctx, kind, n):
    return await behave_async(kind, n)


async def notify_user(ctx, kind, n):
    return await behave_async(kind, n)


class WorkerSettings:
    functions = [resize_image, notify_user]
    redis_settings = RedisSettings.from_dsn(REDIS)
    keep_result = 3600
    max_tries = 1
    max_jobs = 4
    health_check_interval = 5
