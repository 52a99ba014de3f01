"""A real ``queuewatch serve`` (or another dashboard) in a subprocess, for the benchmarks.

``serve`` starts the command on a free port, waits until a URL answers, yields
the base URL, and always stops the process (and everything it started) on the
way out, even on error.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def queuewatch_command(redis_url: str, port: int, state_dir: str, poll: float) -> list[str]:
    return [
        str(BIN / "queuewatch"), "serve", "--redis", redis_url, "--rabbitmq", "none",
        "--state", os.path.join(state_dir, "s.sqlite3"), "--bind", f"127.0.0.1:{port}",
        "--poll", str(poll), "--log-level", "warning",
    ]  # fmt: skip


@contextlib.contextmanager
def serve(command: list[str], port: int, ready_path: str, timeout: float = 60.0) -> Iterator[str]:
    """Run ``command`` (which must listen on ``port``) until the block ends; yield its base URL."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_ready(process, port, ready_path, timeout, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, path: str, timeout: float, log: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read().decode()[-3000:]}")  # type: ignore[attr-defined]
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{process.args[0]} did not answer {path} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (gunicorn shuts down gracefully), SIGKILL it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
