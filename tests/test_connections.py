"""Production connections, each against a real server that the test starts.

- Redis over TLS (``rediss://`` with CA, client certificate and key in the
  query): Debian's redis-server with ``--tls-port`` and certificates made here
  with the openssl CLI; a certificate from another CA, or a host name the
  certificate does not name, is refused unless the URL says so.
- Redis ACL users (``redis://user:pass@…``) on a private redis-server.
- Redis Sentinel (``redis+sentinel://h:p,h:p/MASTER/DB``): a master, a replica
  and two sentinels on free ports; the master is killed and the dashboard's
  view of the queue comes back from the promoted replica.
- RabbitMQ over TLS (``amqps://`` and the management API over https): stunnel
  in front of the local RabbitMQ's 5672 and 15672.

Every served test also looks for its secrets (passwords, the key's file
contents) in the pages, the API and the server's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import redis
import rq

from conftest import free_port, require_service, start_queuewatch, unavailable, wait_for
from queuewatch.adapters.backends import RedisBackend
from queuewatch.adapters.errors import BackendUnavailable
from queuewatch.adapters.rabbitmq.management import ManagementAPI
from test_amqp_adapter import new_vhost

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with _http.open(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def api(base: str, path: str) -> dict:
    return json.loads(get(base + path)[1])


def queue_depth(base: str, backend: str, name: str) -> int | None:
    for queue in api(base, "/api/v1/queues")["queues"]:
        if queue["backend"] == backend and queue["name"] == name:
            return queue["depth"]
    return None


def backend_status(base: str, name: str) -> dict:
    return {b["name"]: b for b in api(base, "/api/v1/backends")["backends"]}[name]


def assert_secrets_hidden(base: str, log: Path, *secrets: str) -> None:
    """No secret in the overview, the backends API, /readyz, /metrics or the server's log."""
    seen = {path: get(base + path)[1] for path in ("/", "/api/v1/backends", "/api/v1/queues", "/readyz", "/metrics")}
    seen["the server log"] = log.read_text(errors="replace")
    for secret in secrets:
        for where, text in seen.items():
            assert secret not in text, f"{secret!r} appears in {where}"


def server_log(tmp_path: Path, base: str) -> Path:
    return tmp_path / f"queuewatch-{base.rsplit(':', 1)[1]}.log"


# --- private servers ------------------------------------------------------------


@contextlib.contextmanager
def process(cmd: list[str], log: Path, ready, what: str) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def]
    """A server process of the test's own, stopped (its whole group) afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                return bool(ready())
            except Exception:
                return False

        wait_for(up, 20, what=what, step=0.1)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def redis_server(tmp_path: Path, port: int, *args: str, ready=None, tag: str = "redis") -> contextlib.AbstractContextManager:  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path), *args]  # fmt: skip
    ready = ready or (lambda: redis.Redis(port=port, socket_timeout=1).ping())
    return process(cmd, tmp_path / f"{tag}-{port}.log", ready, f"{tag} on {port}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and another CA."""
    if shutil.which("openssl") is None:
        unavailable("the openssl CLI is not installed")
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=queuewatch test {ca}")
    for name, extensions in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                             ("client", "extendedKeyUsage=clientAuth\n")):  # fmt: skip
        (d / f"{name}.ext").write_text(extensions)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={'localhost' if name == 'server' else 'queuewatch'}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return {path.stem + path.suffix.replace(".", "_"): path for path in d.iterdir()}


@pytest.fixture
def tls_redis(tmp_path: Path, certs: dict[str, Path]) -> Iterator[int]:
    """A redis-server that speaks only TLS and wants a client certificate; its port."""
    port = free_port()

    def ready() -> bool:
        client = redis.Redis(host="localhost", port=port, ssl=True, ssl_ca_certs=str(certs["ca_crt"]),
                             ssl_certfile=str(certs["client_crt"]), ssl_keyfile=str(certs["client_key"]), socket_timeout=1)  # fmt: skip
        with contextlib.closing(client):
            return bool(client.ping())

    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs["server_crt"]),
           "--tls-key-file", str(certs["server_key"]), "--tls-ca-cert-file", str(certs["ca_crt"]),
           "--tls-auth-clients", "yes", "--bind", "127.0.0.1 127.0.0.2"]  # fmt: skip
    # redis-server takes the last --port and --bind given.
    with redis_server(tmp_path, port, *tls, ready=ready, tag="redis-tls"):
        yield port


def rediss_url(port: int, certs: dict[str, Path], *, host: str = "localhost", ca: str = "ca_crt", extra: str = "") -> str:
    query = f"ssl_ca_certs={certs[ca]}&ssl_certfile={certs['client_crt']}&ssl_keyfile={certs['client_key']}{extra}"
    return f"rediss://{host}:{port}/0?{query}"


# --- Redis over TLS ------------------------------------------------------------


def test_a_dashboard_on_redis_over_tls_shows_its_queues_and_keeps_its_state_there(tmp_path, certs, tls_redis) -> None:
    url = rediss_url(tls_redis, certs)
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        rq.Queue("tls-orders", connection=client).enqueue("os.getcwd")
    with start_queuewatch(tmp_path, "--redis", f"secure={url}", "--rabbitmq", "none", "--poll", "1", "--state", url) as (base, _):
        wait_for(lambda: queue_depth(base, "secure", "tls-orders") == 1, 20, what="the queue over TLS")
        status = backend_status(base, "secure")
        assert status["status"] == "up" and status["url"].startswith(f"rediss://localhost:{tls_redis}/0?")
        ready = get(base + "/readyz")
        assert ready[0] == 200, ready
        assert_secrets_hidden(base, server_log(tmp_path, base), certs["client_key"].read_text().splitlines()[1])
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        assert client.exists("queuewatch:settings"), "the state store wrote over TLS"


def probe(url: str) -> None:
    backend = RedisBackend(name="r", url=url, timeout=2)
    try:
        backend.probe()
    finally:
        backend.close()


def test_redis_certificates_are_checked_by_default(certs, tls_redis) -> None:
    probe(rediss_url(tls_redis, certs))  # the right CA and name: connects
    with pytest.raises(BackendUnavailable, match="(?i)certificate verify failed"):
        probe(rediss_url(tls_redis, certs, ca="other-ca_crt"))
    # 127.0.0.2 reaches the same server, but the certificate names localhost and 127.0.0.1 only.
    with pytest.raises(BackendUnavailable, match="(?i)(hostname|IP address) mismatch|doesn't match"):
        probe(rediss_url(tls_redis, certs, host="127.0.0.2"))
    probe(rediss_url(tls_redis, certs, host="127.0.0.2", extra="&ssl_check_hostname=false"))
    with pytest.raises(ValueError, match="rediss://"):
        probe(f"redis://localhost:{tls_redis}/0?ssl_ca_certs={certs['ca_crt']}")


# --- Redis ACL users --------------------------------------------------------------


def test_a_redis_acl_user_reads_the_queues_and_its_password_is_never_shown(tmp_path) -> None:
    port, password = free_port(), "Acl-pa55word-7c1e"
    with redis_server(tmp_path, port, tag="redis-acl"):
        admin = redis.Redis(port=port)
        admin.acl_setuser("dashboard", enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"])
        admin.acl_setuser("default", enabled=False)  # nothing without a user from now on
        user = redis.Redis(port=port, username="dashboard", password=password)
        rq.Queue("acl-orders", connection=user).enqueue("os.getcwd")
        good = f"redis://dashboard:{password}@127.0.0.1:{port}/0"
        bad = f"redis://dashboard:wrong-{password}@127.0.0.1:{port}/0"
        args = ("--redis", f"acl={good}", "--redis", f"wrong={bad}", "--rabbitmq", "none", "--poll", "1")
        with start_queuewatch(tmp_path, *args) as (base, _):
            wait_for(lambda: queue_depth(base, "acl", "acl-orders") == 1, 20, what="the queue as the ACL user")
            wrong = wait_for(lambda: (s := backend_status(base, "wrong"))["status"] == "down" and s, 20, what="the wrong password refused")
            assert "password" in (wrong["error"] or "").lower() or "auth" in (wrong["error"] or "").lower(), wrong
            assert backend_status(base, "acl")["url"] == f"redis://dashboard:***@127.0.0.1:{port}/0"
            assert_secrets_hidden(base, server_log(tmp_path, base), password)
        user.close()
        admin.close()


# --- Redis Sentinel -----------------------------------------------------------------


def sentinel_conf(tmp_path: Path, port: int, master_port: int, password: str) -> Path:
    conf = tmp_path / f"sentinel-{port}.conf"  # sentinels rewrite their file: one each, writable
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor qwmaster 127.0.0.1 {master_port} 1\n"
        f"sentinel auth-pass qwmaster {password}\n"
        "sentinel down-after-milliseconds qwmaster 1000\n"
        "sentinel failover-timeout qwmaster 10000\n"
    )
    return conf


def test_the_dashboard_follows_a_sentinel_failover(tmp_path) -> None:
    master_port, replica_port, s1, s2 = (free_port() for _ in range(4))
    password = "Sentinel-master-pa55-91"
    auth = ("--requirepass", password, "--masterauth", password)

    def ping(port: int) -> bool:
        return bool(redis.Redis(port=port, password=password, socket_timeout=1).ping())

    def sentinel_knows(port: int) -> bool:
        with contextlib.closing(redis.Redis(port=port, socket_timeout=1)) as s:
            master = s.sentinel_master("qwmaster")
            return master["num-slaves"] >= 1 and master["num-other-sentinels"] >= 1

    with contextlib.ExitStack() as stack:
        master = stack.enter_context(redis_server(tmp_path, master_port, *auth, ready=lambda: ping(master_port), tag="master"))
        stack.enter_context(redis_server(tmp_path, replica_port, *auth, "--replicaof", "127.0.0.1", str(master_port),
                                         ready=lambda: ping(replica_port), tag="replica"))  # fmt: skip
        for port in (s1, s2):
            cmd = ["redis-server", str(sentinel_conf(tmp_path, port, master_port, password)), "--sentinel"]
            stack.enter_context(process(cmd, tmp_path / f"sentinel-{port}.log", lambda p=port: redis.Redis(port=p).ping(), f"sentinel {port}"))
        wait_for(lambda: sentinel_knows(s1) and sentinel_knows(s2), 30, what="the sentinels to find the replica and each other", step=0.2)

        writer = redis.Redis(port=master_port, password=password)
        for _ in range(3):
            rq.Queue("ha-orders", connection=writer).enqueue("os.getcwd")
        assert writer.wait(1, 5000) == 1, "the replica has the jobs"
        writer.close()

        url = f"redis+sentinel://:{password}@127.0.0.1:{s1},127.0.0.1:{s2}/qwmaster/0"
        with start_queuewatch(tmp_path, "--redis", f"ha={url}", "--rabbitmq", "none", "--poll", "1") as (base, _):
            wait_for(lambda: queue_depth(base, "ha", "ha-orders") == 3, 20, what="the queue through the sentinels")
            assert backend_status(base, "ha")["url"] == f"redis+sentinel://:***@127.0.0.1:{s1},127.0.0.1:{s2}/qwmaster/0"

            os.killpg(master.pid, signal.SIGKILL)
            killed = time.monotonic()

            def promoted() -> bool:
                with contextlib.closing(redis.Redis(port=replica_port, password=password, socket_timeout=1)) as r:
                    return r.role()[0] in (b"master", "master")

            wait_for(promoted, 30, what="the sentinels to promote the replica", step=0.2)
            new_master = redis.Redis(port=replica_port, password=password)
            rq.Queue("ha-orders", connection=new_master).enqueue("os.getcwd")  # only the new master has this one
            new_master.close()
            wait_for(lambda: queue_depth(base, "ha", "ha-orders") == 4 and backend_status(base, "ha")["status"] == "up", 30,
                     what="the dashboard to read the new master")  # fmt: skip
            print(f"the dashboard showed the new master {time.monotonic() - killed:.1f} s after the old one died")
            assert_secrets_hidden(base, server_log(tmp_path, base), password)


def test_sentinel_urls_need_a_master_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="MASTER"):
        probe("redis+sentinel://127.0.0.1:26379")


# --- RabbitMQ over TLS -----------------------------------------------------------


@contextlib.contextmanager
def stunnel(tmp_path: Path, certs: dict[str, Path], routes: dict[int, int]) -> Iterator[None]:
    """Debian's stunnel terminating TLS on each loopback port of ``routes`` for the port it names."""
    binary = shutil.which("stunnel4") or shutil.which("stunnel")
    if binary is None:
        unavailable("stunnel4 is not installed (make tools installs it)")
    conf = tmp_path / "stunnel.conf"
    lines = ["foreground = yes", f"pid = {tmp_path / 'stunnel.pid'}", "debug = 4"]
    for accept, target in routes.items():
        lines += [f"[tls-{accept}]", f"accept = 127.0.0.1:{accept}", f"connect = 127.0.0.1:{target}",
                  f"cert = {certs['server_crt']}", f"key = {certs['server_key']}"]  # fmt: skip
    conf.write_text("\n".join(lines) + "\n")

    def listening() -> bool:
        return all(subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{p}"], capture_output=True).returncode == 0 for p in routes)

    with process([binary, str(conf)], tmp_path / "stunnel.log", listening, "stunnel"):
        yield


def amqps_url(port: int, vhost: str, certs: dict[str, Path]) -> str:
    """pika's form: ``ssl_options`` is a dict literal, percent-encoded (its commas would split a list of URLs)."""
    options = quote(repr({"ca_certs": str(certs["ca_crt"])}), safe="")
    return f"amqps://guest:guest@localhost:{port}/{vhost}?ssl_options={options}"


def test_rabbitmq_over_tls_with_the_management_api_over_https(tmp_path, certs) -> None:
    require_service(5672, "RabbitMQ")
    require_service(15672, "RabbitMQ's management API (make test enables it)")
    amqps_port, https_port = free_port(), free_port()
    with new_vhost("tls") as plain_url, stunnel(tmp_path, certs, {amqps_port: 5672, https_port: 15672}):
        vhost = plain_url.rsplit("/", 1)[1]
        url = amqps_url(amqps_port, vhost, certs)
        connection = pika.BlockingConnection(pika.URLParameters(url))  # the test's own publisher goes through TLS too
        channel = connection.channel()
        channel.queue_declare("tls-invoices", durable=True)
        for n in range(2):
            channel.basic_publish("", "tls-invoices", f"invoice {n}".encode())
        connection.close()

        # The management API's certificate is checked against the system's trust store: SSL_CERT_FILE names ours.
        args = ("--redis", "none", "--rabbitmq", f"tls={url}", "--rabbitmq-management", f"tls=https://localhost:{https_port}/",
                "--poll", "1")  # fmt: skip
        with start_queuewatch(tmp_path, *args, env={"SSL_CERT_FILE": str(certs["ca_crt"])}) as (base, _):
            wait_for(lambda: queue_depth(base, "tls", "tls-invoices") == 2, 30, what="the queue over amqps")
            status = backend_status(base, "tls")
            assert status["status"] == "up", status
            assert any(f"https://localhost:{https_port}/" in note and "Management API on" in note for note in status["notes"]), status
            assert status["url"].startswith(f"amqps://guest:***@localhost:{amqps_port}/")
            assert_secrets_hidden(base, server_log(tmp_path, base), "guest:guest")


def test_the_management_api_of_an_amqps_broker_is_looked_for_over_https() -> None:
    assert ManagementAPI.for_amqp_url("amqps://u:p@rabbit.example:5671/%2F").base_url == "https://rabbit.example:15671/"
    assert ManagementAPI.for_amqp_url("amqp://u:p@rabbit.example/%2F").base_url == "http://rabbit.example:15672/"
