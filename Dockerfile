#
# queuewatch dashboard image.
#
#   podman build --format docker -t queuewatch .     # or: docker build -t queuewatch .
#   docker run --rm -p 127.0.0.1:8000:8000 -e QUEUEWATCH_INSECURE_NO_AUTH=1 queuewatch serve \
#       --redis redis://my-redis:6379/0 --rabbitmq amqp://user:pass@my-rabbit:5672/%2F
#
# That run publishes the dashboard on the host's loopback only, without users
# (QUEUEWATCH_INSECURE_NO_AUTH=1: the container itself listens on 0.0.0.0).
# Anywhere else give it users instead: -e QUEUEWATCH_USER_ADMIN='admin:HASH'
# (HASH from `queuewatch hash-password`), and --allowed-host NAME for the name
# it is reached by. docs/deploy.md has compose, Kubernetes and TLS examples.
#
# Build with --format docker under podman/buildah: the OCI image format has no
# HEALTHCHECK, and podman drops it silently. Without a registry, see
# scripts/container.sh (it passes --build-arg PYTHON_IMAGE=a local base).
#
# The builder stage turns the project and its dependencies into wheels, with
# the versions pinned in deploy/constraints.txt (`make constraints` renews
# them); the runtime stage installs only those wheels, so no compiler or build
# tool ends up in the final image.

ARG PYTHON_IMAGE=docker.io/library/python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY deploy/constraints.txt /constraints.txt
# The build tools first, pinned, so the project's wheel is built without
# build isolation (which would fetch whatever setuptools is newest).
RUN pip install --constraint /constraints.txt setuptools wheel
# .dockerignore lets in only what the wheel is built from.
COPY . .
RUN pip wheel --constraint /constraints.txt --no-build-isolation --wheel-dir /wheels . \
 && rm -f /wheels/setuptools-*.whl /wheels/wheel-*.whl


FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Wheels are bind-mounted from the builder rather than copied, so they do not
# stay behind in a layer of the final image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels queuewatch

COPY deploy/healthcheck.py /usr/local/lib/queuewatch-healthcheck.py

# A real home directory: gunicorn >= 25.1 puts its control socket in
# ~/.gunicorn/ unless told otherwise.
RUN groupadd --system --gid 10001 queuewatch \
 && useradd --system --uid 10001 --gid queuewatch \
        --create-home --home-dir /home/queuewatch --shell /usr/sbin/nologin queuewatch \
 && mkdir /data \
 && chown queuewatch:queuewatch /data

# The dashboard's own store (alert rules, history, audit log). The directory
# is created and chowned before VOLUME so a new named volume inherits the
# ownership.
VOLUME ["/data"]

# Inside a container the loopback default (127.0.0.1:8000) is unreachable from
# the host, so listen on all interfaces.
# A non-loopback bind without users refuses to start (exit 2): give the
# container users (QUEUEWATCH_USERS=/path/users.toml or QUEUEWATCH_USER_<NAME>)
# or, only behind something that authenticates, QUEUEWATCH_INSECURE_NO_AUTH=1.
ENV QUEUEWATCH_BIND=0.0.0.0:8000 \
    QUEUEWATCH_STATE=/data/queuewatch.sqlite3

USER 10001:10001
WORKDIR /data
EXPOSE 8000

# The probe asks the running queuewatch where it listens (its --bind, else
# QUEUEWATCH_BIND), checks that socket is its own and that /healthz says ok:
# deploy/healthcheck.py. No systemd in the container host: run
# `podman healthcheck run NAME` to check by hand.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/queuewatch-healthcheck.py"]

ENTRYPOINT ["queuewatch"]
CMD ["serve"]
