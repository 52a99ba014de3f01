"""A local webhook receiver for the alert tests: an HTTP server on 127.0.0.1 in
a thread that keeps every JSON body posted to it (and can fail on purpose)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_next = 0  # answer this many posts with 500 first
        self.lock = threading.Lock()
        self.url = ""

    def events(self, kind: str) -> list[dict]:
        with self.lock:
            return [b for b in self.bodies if b.get("event") == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events(kind)) < count:
            assert time.monotonic() < deadline, f"waited for {count} {kind!r} notifications, got {self.bodies}"
            time.sleep(0.05)
        return self.events(kind)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                failing = receiver.fail_next > 0
                receiver.fail_next -= 1 if failing else 0
                if not failing:
                    receiver.bodies.append(json.loads(body))
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
