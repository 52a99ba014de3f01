"""Packaging: the compose stack, the container recipe, and the wheel.

The wheel tests build the project the way a user or the Dockerfile would, then
install it into a fresh virtual environment and serve it from there, so a
file missing from package-data fails here rather than in production.
"""

import json
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# What the wheel is built from; mirrors the allow-list in .dockerignore, so
# this test also proves the Docker build context is enough to build it.
WHEEL_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE*",
    "MANIFEST.in",
    "app",
    "adapters",
    "templates",
    "static",
)


# --- compose.yaml ---------------------------------------------------------


def published_ports(service):
    """(host_ip, published, target) for each port of a compose service."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            ports.append(
                (
                    entry.get("host_ip", ""),
                    int(published) if published is not None else None,
                    int(entry["target"]),
                )
            )
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            host_ip, published, target = parts
        elif len(parts) == 2:
            host_ip, (published, target) = "", parts
        else:
            host_ip, published, target = "", None, parts[0]
        ports.append((host_ip, int(published) if published else None, int(target)))
    return ports


def as_words(value):
    """A compose command or environment, whichever form it has, as one string."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return " ".join(f"{key}={val}" for key, val in value.items())
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def mounts(service):
    """(source, target) for each volume of a compose service; source is None when anonymous."""
    result = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            result.append((volume.get("source"), volume["target"]))
        else:
            parts = volume.split(":")
            result.append((parts[0], parts[1]) if len(parts) > 1 else (None, parts[0]))
    return result


def urls_in(text, schemes):
    """The URLs in text whose scheme is one of schemes, split."""
    pattern = r"\b(?:%s)://\S+" % "|".join(re.escape(scheme) for scheme in schemes)
    return [urlsplit(match.rstrip("'\",")) for match in re.findall(pattern, text)]


def test_compose_file_names_the_services():
    # ${VAR:-default} as compose reads it with no variable set.
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", (REPO / "compose.yaml").read_text())
    compose = yaml.safe_load(text)
    assert "version" not in compose, "the Compose spec has no version key"
    services = compose["services"]
    assert {"redis", "rabbitmq", "dashboard", "demo"} <= set(services)

    # Fully qualified: Debian's podman does not resolve short names.
    assert services["redis"]["image"].startswith("docker.io/library/redis:")

    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("docker.io/library/rabbitmq:")
    assert "management" in rabbitmq["image"]
    # Published on the host they would meet a local RabbitMQ (tests/test_deploy.py checks every port).
    assert not published_ports(rabbitmq) and not published_ports(services["redis"])

    dashboard = services["dashboard"]
    build = dashboard["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert Path(REPO, context).resolve() == REPO
    assert (8000, 8000) in {(published, target) for _, published, target in published_ports(dashboard)}

    settings = f"{as_words(dashboard.get('command'))} {as_words(dashboard.get('environment'))}"
    redis_hosts = {url.hostname for url in urls_in(settings, ["redis", "rediss"])}
    amqp_hosts = {url.hostname for url in urls_in(settings, ["amqp", "amqps"])}
    assert "redis" in redis_hosts, settings
    assert "rabbitmq" in amqp_hosts, settings

    depends_on = dashboard["depends_on"]
    for backend in ("redis", "rabbitmq"):
        assert depends_on[backend]["condition"] == "service_healthy"
        assert services[backend]["healthcheck"]["test"]

    data_sources = [source for source, target in mounts(dashboard) if target == "/data"]
    assert data_sources, "the dashboard keeps its state on a volume at /data"
    assert data_sources[0] in (compose.get("volumes") or {}), "the /data volume is a named volume"

    worker = services["demo"]
    worker_command = as_words(worker.get("command") or worker.get("entrypoint"))
    assert "run.py" in worker_command
    assert "redis" in {url.hostname for url in urls_in(worker_command, ["redis"])}
    assert "rabbitmq" in {url.hostname for url in urls_in(worker_command, ["amqp"])}
    assert {"redis", "rabbitmq"} <= set(worker["depends_on"])


# --- Dockerfile ---------------------------------------------------------------


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) pairs, with continuations joined and comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        if logical:
            keyword, _, arguments = logical.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def stages(instructions):
    """Split instructions into build stages, each starting at its FROM."""
    result = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def exec_form(arguments):
    """The argument list of an exec-form (JSON array) instruction."""
    words = json.loads(arguments)
    assert isinstance(words, list), arguments
    return words


def test_dockerfile_runs_as_non_root_with_gunicorn_entrypoint():
    instructions = dockerfile_instructions((REPO / "Dockerfile").read_text())
    global_args = {}
    for keyword, arguments in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in arguments:
            name, _, default = arguments.partition("=")
            global_args[name] = default

    build_stages = stages(instructions)
    assert len(build_stages) >= 2, "a builder stage and a runtime stage"
    base_images = [
        re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), stage[0][1].split()[0])
        for stage in build_stages
    ]
    assert all(image == "docker.io/library/python:3.12-slim" for image in base_images), base_images

    final = build_stages[-1]
    final_keywords = [keyword for keyword, _ in final]

    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user

    entrypoints = [arguments for keyword, arguments in final if keyword == "ENTRYPOINT"]
    assert entrypoints and exec_form(entrypoints[-1]) == ["queuewatch"]
    commands = [arguments for keyword, arguments in final if keyword == "CMD"]
    assert commands and exec_form(commands[-1])[0] == "serve"

    healthchecks = [arguments for keyword, arguments in final if keyword == "HEALTHCHECK"]
    assert healthchecks and "NONE" not in healthchecks[-1].split()
    # The probe is deploy/healthcheck.py (it asks the running dashboard where it listens).
    assert "queuewatch-healthcheck.py" in healthchecks[-1]
    assert "/healthz" in (REPO / "deploy" / "healthcheck.py").read_text()
    # python:*-slim ships no curl or wget.
    assert not re.search(r"\b(curl|wget)\b", healthchecks[-1])

    exposed = [port.split("/")[0] for keyword, arguments in final if keyword == "EXPOSE" for port in arguments.split()]
    assert "8000" in exposed

    env = " ".join(arguments for keyword, arguments in final if keyword == "ENV")
    assert re.search(r"\bQUEUEWATCH_BIND=0\.0\.0\.0:8000\b", env), env
    assert re.search(r"\bQUEUEWATCH_STATE=/data/", env), env
    assert "VOLUME" in final_keywords

    # The runtime stage installs wheels; compilers stay in the builder.
    final_runs = " ".join(arguments for keyword, arguments in final if keyword == "RUN")
    assert not re.search(r"\b(gcc|build-essential|g\+\+|clang)\b", final_runs)


# --- the wheel ------------------------------------------------------------------


def setuptools_is_recent():
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    return tuple(int(part) for part in re.findall(r"\d+", version)[:1]) >= (69,)


def copy_wheel_inputs(destination):
    """Copy what the wheel is built from, so the build leaves no build/ or egg-info in the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
    for pattern in WHEEL_INPUTS:
        for source in REPO.glob(pattern):
            target = destination / source.name
            if source.is_dir():
                shutil.copytree(source, target, ignore=ignore)
            else:
                shutil.copy2(source, target)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    copy_wheel_inputs(source)
    out_dir = tmp_path_factory.mktemp("wheelhouse")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out_dir), str(source)]
    attempts = []
    if setuptools_is_recent():
        # Offline and fast; --check-build-dependencies makes an unmet
        # `setuptools>=69` an error instead of a build with the wrong version.
        attempts.append(pip_wheel + ["--no-build-isolation", "--check-build-dependencies"])
    attempts.append(pip_wheel)  # build isolation: fetches setuptools from the index

    outputs = []
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        outputs.append(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
        if result.returncode == 0:
            break
    else:
        pytest.fail("could not build the wheel:\n" + "\n".join(outputs))

    wheels = sorted(out_dir.glob("queuewatch-*.whl"))
    assert len(wheels) == 1, outputs[-1]
    return wheels[0]


def test_wheel_contains_templates_static_and_lua(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped_htmx = archive.read("queuewatch/static/vendor/htmx.min.js")

    for required in (
        "queuewatch/cli.py",
        "queuewatch/templates/base.html",
        "queuewatch/static/vendor/htmx.min.js",
        "queuewatch/static/queuewatch.css",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    assert any(re.fullmatch(r"queuewatch/adapters/(.+/)?[^/]+\.lua", name) for name in names), sorted(names)
    assert shipped_htmx == (REPO / "static/vendor/htmx.min.js").read_bytes()
    # Only the package: no tests, demo scripts or top-level source folders.
    assert not [name for name in names if name.split("/")[0] in ("tests", "scripts", "app", "adapters")]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Bypass any HTTP(S)_PROXY in the environment: the server is on loopback.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url):
    """(status, body) of a GET; HTTP errors are answers, not exceptions."""
    try:
        with _http.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_installed_wheel_serves_pages_with_assets(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"

    # The wheel's dependencies come from this interpreter's site-packages, so
    # the test needs no network. Directories named in a .pth file are added to
    # sys.path after the venv's own, and .pth files inside them (such as an
    # editable install's finder for the checkout) are not processed.
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(venv_site, "_queuewatch_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "--quiet", str(wheel)],
        check=True, timeout=120,
    )

    env = {key: value for key, value in os.environ.items() if not key.startswith("QUEUEWATCH_")}
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "XDG_RUNTIME_DIR", "VIRTUAL_ENV"):
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    # gunicorn >= 25.1 puts a control socket under $HOME; keep it private.
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()

    probe = subprocess.run(
        [str(python), "-c", "import queuewatch, queuewatch.cli; print(queuewatch.__file__); print(queuewatch.cli.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert probe.returncode == 0, probe.stderr
    for path in probe.stdout.split():
        assert Path(path).resolve().is_relative_to(venv.resolve()), f"{path} is not from the fresh venv"

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                str(venv / "bin" / "queuewatch"), "serve",
                "--bind", f"127.0.0.1:{port}",
                "--redis", "redis://127.0.0.1:6379/15",
                "--rabbitmq", "amqp://guest:guest@127.0.0.1:5672/%2F",
                "--state", str(tmp_path / "state.sqlite3"),
                "--poll", "2",
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
            start_new_session=True,  # so gunicorn's workers can be reaped as a group
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"queuewatch serve exited:\n{log_path.read_text(errors='replace')}"
            try:
                status, body = http_get(f"{base_url}/healthz")
            except OSError:
                status = None
            if status == 200:
                assert body.strip() == b"ok"
                break
            assert time.monotonic() < deadline, f"/healthz not up in 20 s:\n{log_path.read_text(errors='replace')}"
            time.sleep(0.2)

        status, page = http_get(f"{base_url}/")
        html = page.decode("utf-8", errors="replace")
        assert status == 200, html
        assert "queuewatch" in html.lower()
        assert "/static/vendor/htmx.min.js" in html
        assert not re.search(r"<script[^>]+src=[\"']?(?:https?:)?//", html), "scripts load from a CDN"

        status, htmx = http_get(f"{base_url}/static/vendor/htmx.min.js")
        assert status == 200 and htmx == (REPO / "static/vendor/htmx.min.js").read_bytes()
        status, css = http_get(f"{base_url}/static/queuewatch.css")
        assert status == 200 and css.strip()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)
        else:
            # Workers that outlived their arbiter would keep the port.
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_pages_load_no_assets_from_a_cdn():
    """Dashboards run air-gapped: templates only reference /static."""
    external = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.IGNORECASE)
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "templates").rglob("*.html"))
        if external.search(path.read_text())
    ]
    assert not offenders, offenders
