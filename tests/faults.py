"""A loopback TCP proxy that fails the way networks do, for the tests.

``FaultProxy(target_port)`` listens on a free loopback port and forwards every
connection to ``127.0.0.1:target_port``. While it runs, a test can:

- ``stall()``: connections stay open but nothing moves either way (new ones are
  accepted and then held too) — a broker behind a dead router, a full
  conntrack table, a paused VM;
- ``cut()``: every connection is closed at once and new ones are refused
  (reset) — a broker that died or a link that dropped;
- ``slow(seconds)``: every chunk waits that long before it is forwarded;
- ``heal()``: back to forwarding (held bytes flow again).

No mock: the client library talks to the real Redis or RabbitMQ through it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.mode = "pass"  # pass | stall | cut | slow
        self.delay = 0.0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- what a test does ----------------------------------------------------------

    def stall(self) -> None:
        self.mode = "stall"

    def slow(self, seconds: float) -> None:
        self.mode, self.delay = "slow", seconds

    def heal(self) -> None:
        self.mode, self.delay = "pass", 0.0

    def cut(self) -> None:
        """Close every connection now (with a reset) and refuse new ones until ``heal``."""
        self.mode = "cut"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the proxy -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                _reset(client)
                continue
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if self.mode == "stall":
                    time.sleep(0.02)  # hold everything: the kernel buffers fill, nothing is read
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    if self.mode == "stall":
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "slow":
                        time.sleep(self.delay)
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                with contextlib.suppress(ValueError):
                    self._pairs.remove((client, upstream))


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dead peer's kernel would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def fault_proxy(target_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port)
    try:
        yield proxy
    finally:
        proxy.close()
