"""The image's HEALTHCHECK: is the queuewatch of this container serving?

It asks the dashboard where it really listens, not where it would listen by
default: the bind comes from the running ``queuewatch`` process itself (its
``--bind`` flag, else its ``QUEUEWATCH_BIND``, else the CLI's default), read
from /proc. So ``serve --bind 127.0.0.1:8423`` is probed on 8423, and with
host networking a different service on :8000 cannot answer for it. It then
checks that the listening socket is one of that process's own open files, and
that ``/healthz`` says ``ok``.

Standard library only (python:*-slim has no curl); any HTTP proxy settings
are ignored. Exit 0 healthy, 1 not, as HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT_BIND = "127.0.0.1:8000"  # app/cli.py's default for --bind


def queuewatch_process() -> int | None:
    """The oldest process running the queuewatch command (PID 1 unless an init runs first)."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(os.path.basename(arg.decode(errors="replace")) == "queuewatch" for arg in argv[:2]):
            return pid
    return None


def bind_of(pid: int) -> str:
    """Where that process was told to listen: --bind beats QUEUEWATCH_BIND beats the default."""
    argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    for i, arg in enumerate(argv):
        if arg == "--bind" and i + 1 < len(argv):
            bind = argv[i + 1]
        elif arg.startswith("--bind="):
            bind = arg.split("=", 1)[1]
        else:
            continue
        return bind
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"QUEUEWATCH_BIND="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return DEFAULT_BIND


def probe_address(bind: str) -> tuple[str, int]:
    """The address to connect to for a bind: a wildcard is reached on loopback."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state on ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def owns_listener(pid: int, port: int) -> bool:
    """Whether the process (gunicorn's arbiter: it opened the socket) holds the listening socket."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def main() -> int:
    pid = queuewatch_process()
    if pid is None:
        print("unhealthy: no queuewatch process", file=sys.stderr)
        return 1
    bind = bind_of(pid)
    host, port = probe_address(bind)
    if not owns_listener(pid, port):
        print(f"unhealthy: queuewatch (pid {pid}) does not hold a socket listening on port {port} ({bind})", file=sys.stderr)
        return 1
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as answer:
            body = answer.read(64)
            healthy = answer.status == 200 and body.strip() == b"ok"
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{'healthy' if healthy else 'unhealthy'}: {url}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
