"""Job functions that the tests' real RQ workers run (imported by the worker).

Kept free of test-only imports: RQ 1.16 workers in their own environment import
this file too.
"""

import os


def add(a, b):
    return a + b


def fail(*args, **kwargs):
    raise ValueError(f"boom {args!r}")


def fail_with(message):
    raise RuntimeError(message)


def fail_unless_exists(path, *args, **kwargs):
    """Fails until the test creates ``path``: the first run fails, a requeued run succeeds."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    return f"ran with {args!r} {kwargs!r}"


def record(path, value):
    """Append ``value`` to ``path``: proves a job ran, and how many times."""
    with open(path, "a") as f:
        f.write(f"{value}\n")
    return value


def sleep(seconds):
    import time

    time.sleep(seconds)


def block_until(path, timeout=60):
    """Runs until the test creates ``path`` (or ``timeout`` seconds): a job the test can watch in progress."""
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path)
