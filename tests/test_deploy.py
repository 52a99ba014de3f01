"""What operators deploy, checked the way their tools would read it.

- compose.yaml: fully qualified images, no host port that meets a local Redis
  or RabbitMQ, every published port on loopback, the demo's shutdown time.
- The pins (deploy/constraints.txt, scripts/demo/constraints.txt) cover and
  satisfy what pyproject.toml and the demo ask for.
- deploy/prometheus: `promtool check rules`, `promtool test rules`, `promtool
  check config`; every metric name in the rules and in the Grafana dashboard
  (deploy/grafana/queuewatch.json) is one that /metrics really exports, read
  from the app over real RQ data in Redis database 14.
- deploy/kubernetes/queuewatch.yaml: parsed and checked for the structure the
  docs promise (kubeconform and kubectl are not available here), and its
  arguments parsed by the real CLI.
- `make demo`: every system shows live numbers within 60 s, and Ctrl-C
  leaves nothing running.
- Releases: two wheel builds with SOURCE_DATE_EPOCH are byte-identical; the
  sdists have identical contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import rq
import yaml
from packaging.requirements import Requirement

from conftest import ROOT, free_port, port_open, require_service, unavailable, wait_for

pytestmark = pytest.mark.redis_db(14)

LOCAL_SERVICE_PORTS = {6379, 6380, 26379, 5671, 5672, 15671, 15672, 25672, 4369}
PROMETHEUS = ROOT / "deploy" / "prometheus"


# --- compose.yaml --------------------------------------------------------------


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default}, with no variable set."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml with deploy/compose.monitoring.yaml over it (`-f compose.yaml -f deploy/compose.monitoring.yaml`)."""
    stack = yaml.safe_load(interpolate((ROOT / "compose.yaml").read_text()))
    monitoring = yaml.safe_load(interpolate((ROOT / "deploy" / "compose.monitoring.yaml").read_text()))
    assert set(monitoring["services"]).isdisjoint(stack["services"])
    stack["services"] |= monitoring["services"]
    return stack


def published(service: dict) -> list[tuple[str, int]]:
    """(host address, host port) of each published port (short syntax)."""
    result = []
    for entry in service.get("ports", []):
        parts = str(entry).split("/", 1)[0].rsplit(":", 2)
        assert len(parts) == 3, f"{entry!r}: publish on an address (127.0.0.1:PORT:PORT), never on every interface"
        result.append((parts[0], int(parts[1])))
    return result


def fully_qualified(image: str) -> bool:
    """registry/path:tag, where registry has a dot or is localhost: what Debian's podman resolves."""
    registry, slash, rest = image.partition("/")
    return bool(slash) and ("." in registry or registry == "localhost") and ":" in rest.rsplit("/", 1)[-1]


def test_compose_names_every_image_in_full(compose) -> None:
    for name, service in compose["services"].items():
        assert fully_qualified(service["image"]), f"{name}: {service['image']!r} is a short name"
        if "build" in service:
            assert service["image"].startswith("localhost/"), f"{name}: a built image is local"


def test_compose_publishes_only_the_dashboard_and_prometheus_on_loopback(compose) -> None:
    ports = {name: published(service) for name, service in compose["services"].items()}
    assert {name for name, p in ports.items() if p} == {"dashboard", "prometheus"}, ports
    for name, entries in ports.items():
        for address, port in entries:
            assert address == "127.0.0.1", (name, address)
            assert port not in LOCAL_SERVICE_PORTS, f"{name} publishes {port}, where a local Redis or RabbitMQ listens"
    assert "${QUEUEWATCH_PORT:-8000}" in (ROOT / "compose.yaml").read_text(), "the dashboard's port can be moved"


def test_compose_wires_the_dashboard_the_demo_and_prometheus_together(compose) -> None:
    services = compose["services"]
    dashboard = services["dashboard"]
    words = " ".join(map(str, dashboard["command"])) + " " + " ".join(f"{k}={v}" for k, v in dashboard["environment"].items())
    for db in range(5):
        assert f"redis://redis:6379/{db}" in words, "each of the demo's databases"
    assert "@rabbitmq:5672/" in words
    assert "guest:guest" not in " ".join(map(str, dashboard["command"])), "passwords go in the environment, not in `ps`"
    assert dashboard["environment"]["QUEUEWATCH_INSECURE_NO_AUTH"] == "1"  # 0.0.0.0 without users: refused otherwise
    assert ("queuewatch-data", "/data") in [tuple(v.split(":")[:2]) for v in dashboard["volumes"]]
    assert "queuewatch-data" in compose["volumes"]

    # Prometheus scrapes the dashboard by its service name, which the dashboard must answer to.
    scrape = yaml.safe_load((PROMETHEUS / "compose.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == ["dashboard:8000"]
    command = list(map(str, dashboard["command"]))
    assert command[command.index("--allowed-host") + 1] == "dashboard"
    for volume in services["prometheus"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists(), volume

    demo = services["demo"]
    assert Path(ROOT, demo["build"]["context"]).resolve() == ROOT / "scripts" / "demo"
    assert "run.py" in demo["command"] and "--no-dashboard" in demo["command"]
    grace = int(str(demo["stop_grace_period"]).rstrip("s"))
    run_py = (ROOT / "scripts" / "demo" / "run.py").read_text()
    stop_seconds = float(re.search(r"^STOP_SECONDS = ([\d.]+)", run_py, re.M).group(1))
    assert grace > stop_seconds + 5, "compose would SIGKILL the demo before it stopped its workers"


def dockerfile_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "scripts/demo/Dockerfile"])
def test_dockerfiles_build_offline_from_a_base_given_as_an_arg(dockerfile) -> None:
    lines = dockerfile_lines(ROOT / dockerfile)
    assert not any(line.lower().startswith("# syntax=") for line in lines), "BuildKit would fetch a frontend"
    first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    args = {m.group(1): m.group(2) for line in lines[:first_from] if (m := re.match(r"ARG (\w+)=(\S+)", line))}
    assert "PYTHON_IMAGE" in args and fully_qualified(args["PYTHON_IMAGE"]), args
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in lines if line.startswith("FROM "))
    assert any("--constraint" in line and "constraints.txt" in line for line in lines), "dependencies install pinned"


def test_the_image_build_context_lets_in_the_pins_and_the_probe() -> None:
    allowed = (ROOT / ".dockerignore").read_text().split()
    assert "!deploy/constraints.txt" in allowed and "!deploy/healthcheck.py" in allowed
    assert any("queuewatch-healthcheck.py" in line for line in dockerfile_lines(ROOT / "Dockerfile") if line.startswith("HEALTHCHECK") or "CMD" in line)


# --- pinned dependencies ----------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    result = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            result[name.lower().replace("_", "-")] = version
    return result


@pytest.mark.parametrize(
    "requirements, constraints",
    [("pyproject.toml", "deploy/constraints.txt"), ("scripts/demo/requirements.in", "scripts/demo/constraints.txt")],
)
def test_every_dependency_is_pinned_within_what_is_asked(requirements, constraints) -> None:
    if requirements == "pyproject.toml":
        asked = tomllib.loads((ROOT / requirements).read_text())["project"]["dependencies"]
    else:
        asked = [line for line in (ROOT / requirements).read_text().splitlines() if line and not line.startswith("#")]
    pinned = pins(ROOT / constraints)
    for text in asked:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in {constraints}: run make constraints"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} does not satisfy {text}"


# --- Prometheus and Grafana ---------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / "build" / "tools" / "bin" / "promtool")
    if not os.access(found, os.X_OK):
        unavailable("promtool is missing (make tools unpacks it from Debian's prometheus package)")
    return found


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"],
                                     ["check", "config", "compose.yml"]])  # fmt: skip
def test_promtool_accepts_the_rules_and_their_tests(command) -> None:
    done = subprocess.run([promtool(), *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@pytest.fixture
def exported_metrics(app, client, r) -> set[str]:
    """The metric names /metrics exports with samples, over a real RQ queue, worker and alert."""
    queue = rq.Queue("deploy-orders", connection=r)
    for _ in range(3):
        queue.enqueue("os.getcwd")
    worker = rq.Worker([queue], connection=r, name="deploy-worker")
    worker.register_birth()
    answer = client.put("/api/v1/alerts/rules/redis/rq/deploy-orders", json={"max_depth": 1, "for_seconds": 0})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    # What the sampler does each interval: evaluate the rules on a snapshot.
    app.extensions["queuewatch.alerts"].evaluate(app.extensions["queuewatch.monitor"].snapshot())
    text = client.get("/metrics").get_data(as_text=True)
    worker.register_death()
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(queuewatch_[a-z_]+|up)\b(?=\s*[{\[)\s,]|$)", expr))


def grafana_expressions() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "queuewatch.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_rules_and_the_dashboard_query_is_exported(exported_metrics) -> None:
    assert {"queuewatch_queue_depth", "queuewatch_alert_state", "queuewatch_workers"} <= exported_metrics
    for source, exprs in (("alerts.yml", rule_expressions()), ("queuewatch.json", grafana_expressions())):
        assert exprs
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"{source}: {expr!r} names no metric"
            assert "up" not in names or 'job="queuewatch"' in expr, f"{source}: {expr!r}: up{{job=\"queuewatch\"}} only"
            missing = names - exported_metrics - {"up"}
            assert not missing, f"{source}: {expr!r} queries {missing}, which /metrics does not export"
    assert any(metric_names(e) == {"up"} for e in rule_expressions()), "a rule for the dashboard itself being down"


def test_the_grafana_dashboard_is_importable() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "queuewatch.json").read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            assert set(re.findall(r"\$(\w+)", target["expr"])) <= variables, target["expr"]


# --- Kubernetes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "queuewatch.yaml").read_text()) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    return {doc["kind"]: doc for doc in docs}


def test_the_kubernetes_deployment_is_non_root_read_only_and_probed(manifests) -> None:
    deployment = manifests["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    [container] = spec["containers"]
    pod_security, security = spec["securityContext"], container["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    image_user = next(line.split()[1] for line in dockerfile_lines(ROOT / "Dockerfile") if line.startswith("USER "))
    assert str(pod_security["runAsUser"]) == image_user.split(":")[0], "the image's own user"
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    env = {e["name"]: e.get("value") for e in container["env"]}
    state = env["QUEUEWATCH_STATE"]
    data = next(path for path in mounts if state.startswith(path + "/"))
    assert {"persistentVolumeClaim", "emptyDir"} & set(volumes[mounts[data]]), "the state is on a volume"
    claim = volumes[mounts[data]].get("persistentVolumeClaim", {}).get("claimName")
    assert claim is None or manifests["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], "gunicorn's scratch files on a read-only root"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["QUEUEWATCH_BIND"].rsplit(":", 1)[1] == str(ports["http"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path and check["port"] in ports
        # kubelet would send the pod's IP as Host, which --allowed-host does not name: 400.
        assert {"name": "Host", "value": "localhost"} in check["httpHeaders"]

    service = manifests["Service"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert all(p["targetPort"] in ports or p["targetPort"] in ports.values() for p in service["spec"]["ports"])
    secret_refs = {ref["secretRef"]["name"] for ref in container.get("envFrom", [])}
    assert secret_refs <= {manifests["Secret"]["metadata"]["name"]}
    assert not any("@" in str(arg) for arg in container["args"]), "backend URLs (passwords) in the Secret, not in args"


def test_the_kubernetes_arguments_are_ones_the_cli_takes(manifests) -> None:
    from queuewatch.cli import serve

    [container] = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = [str(a) for a in container["args"]]
    assert args[0] == "serve"
    context = serve.make_context("serve", args[1:] + ["--insecure-no-auth"])  # parsed and checked, not run
    assert context.params["allowed_hosts"] and context.params["secure_cookies"] is True


# --- make demo ---------------------------------------------------------------------------


EVERY_SYSTEM = {("rq", "rq"), ("celery", "celery"), ("dramatiq", "dramatiq"), ("arq", "arq"),
                ("rabbitmq", "celery"), ("rabbitmq", "dramatiq"), ("rabbitmq", "amqp")}  # fmt: skip


def session_members(sid: int) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return found


def children_sessions(pid: int) -> set[int]:
    """Session ids of every descendant of ``pid`` (each demo child runs in its own session)."""
    sessions, frontier = set(), {pid}
    while frontier:
        parent = frontier.pop()
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
                frontier.add(int(child))
                with contextlib.suppress(OSError, IndexError):
                    sessions.add(int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[3]))
    return sessions


def test_make_demo_shows_every_system_live_within_a_minute_and_ctrl_c_stops_it_all(tmp_path) -> None:
    require_service(5672, "RabbitMQ")
    require_service(15672, "RabbitMQ's management API (make test enables it)")
    if shutil.which("make") is None or shutil.which("redis-server") is None:
        unavailable("make and redis-server are needed for make demo")
    port, redis_port = free_port(), free_port()
    vhost = f"qw-test-demo-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUEWATCH_", "MAKE"))}
    env |= {"QUEUEWATCH_BIND": f"127.0.0.1:{port}", "QUEUEWATCH_STATE": str(tmp_path / "state.sqlite3"),
            "DEMO_REDIS_PORT": str(redis_port), "DEMO_AMQP": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}  # fmt: skip
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "--no-print-directory", "demo", "ARGS=--poll 1"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.monotonic()
    try:
        def live() -> set:
            assert make.poll() is None, f"make demo exited {make.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            try:
                queues = json.load(opener.open(base + "/api/v1/queues", timeout=5))["queues"]
            except (OSError, ValueError):
                return set()
            seen = {(q["backend"], q["system"]) for q in queues if isinstance(q["depth"], int)}
            busy = {(q["backend"], q["system"]) for q in queues if (q["depth"] or 0) + (q["in_progress"] or 0) + (q["failed"] or 0) > 0}
            return EVERY_SYSTEM <= seen and EVERY_SYSTEM <= busy

        wait_for(live, 60, what="every system with live numbers", step=1)
        print(f"every system live {time.monotonic() - started:.0f} s after `make demo`")
        sessions = children_sessions(make.pid)
        assert len(sessions) >= 9, sessions  # redis-server, 7 workers and consumers, traffic, the dashboard

        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the terminal signals make's whole process group
        stopping = time.monotonic()
        make.wait(30)
        print(f"stopped in {time.monotonic() - stopping:.1f} s")
        left = [cmd for sid in sessions for cmd in session_members(sid)]
        assert not left, left
        assert not port_open(redis_port) and not port_open(port)
        with pytest.raises(urllib.error.HTTPError):
            auth = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}
            opener.open(urllib.request.Request(f"http://127.0.0.1:15672/api/vhosts/{vhost}", headers=auth), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)
        for sid in children_sessions(make.pid) if make.poll() is None else ():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)


# --- releases ----------------------------------------------------------------------------


def build(source: Path, out: Path) -> None:
    code = "from setuptools import build_meta as b; b.build_wheel(%r); b.build_sdist(%r)" % (str(out), str(out))
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    done = subprocess.run([sys.executable, "-c", code], cwd=source, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_builds_give_byte_identical_wheels_and_sdists_of_identical_contents(tmp_path) -> None:
    outputs = []
    for n in (1, 2):
        source = tmp_path / f"checkout-{n}"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "app", "adapters", "templates", "static"):
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(path, source / name)
        os.utime(source / "app" / "cli.py", (time.time() + n, time.time() + n))  # other mtimes, another path
        build(source, tmp_path / f"out-{n}")
        outputs.append(tmp_path / f"out-{n}")
    wheels = [next(out.glob("queuewatch-*.whl")).read_bytes() for out in outputs]
    assert hashlib.sha256(wheels[0]).hexdigest() == hashlib.sha256(wheels[1]).hexdigest()

    def members(out: Path) -> dict[str, bytes]:
        with tarfile.open(next(out.glob("queuewatch-*.tar.gz"))) as archive:
            return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}

    first, second = (members(out) for out in outputs)
    assert first == second and "queuewatch-0.1.0/pyproject.toml" in first
    assert not [name for name in first if "__pycache__" in name or name.endswith(".pyc")]


def test_the_version_is_the_projects_and_the_changelog_names_it() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    queuewatch = Path(sys.executable).with_name("queuewatch")
    done = subprocess.run([str(queuewatch), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == f"queuewatch, version {version}", done
    headings = re.findall(r"^## \[?([^\]\s]+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert version in headings[:2], headings  # the newest release (under any Unreleased heading)
