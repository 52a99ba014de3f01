# syntax=docker/dockerfile:1
#
# queuewatch dashboard image.
#
#   docker build -t queuewatch .
#   docker run --rm -p 127.0.0.1:8000:8000 queuewatch serve \
#       --redis redis://my-redis:6379/0 --rabbitmq amqp://user:pass@my-rabbit:5672/%2F
#
# The builder stage turns the project and its dependencies into wheels; the
# runtime stage installs only those wheels, so no compiler or build tool ends
# up in the final image.

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# .dockerignore lets in only what the wheel is built from.
COPY . .
RUN pip wheel --wheel-dir /wheels .


FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Wheels are bind-mounted from the builder rather than copied, so they do not
# stay behind in a layer of the final image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels queuewatch

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
# A non-loopback bind without users refuses to start: give the container
# users (QUEUEWATCH_USERS=/path/users.toml or QUEUEWATCH_USER_<NAME>) or, only
# behind something that authenticates, QUEUEWATCH_INSECURE_NO_AUTH=1.
ENV QUEUEWATCH_BIND=0.0.0.0:8000 \
    QUEUEWATCH_STATE=/data/queuewatch.sqlite3

USER queuewatch
WORKDIR /data
EXPOSE 8000

# python:*-slim has no curl; use the standard library, ignoring any HTTP proxy
# settings. The port follows QUEUEWATCH_BIND so the check survives a changed
# bind.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('QUEUEWATCH_BIND', '0.0.0.0:8000').rpartition(':')[2]; r = u.build_opener(u.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4); sys.exit(r.status != 200)"]

ENTRYPOINT ["queuewatch"]
CMD ["serve"]
