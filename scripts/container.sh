#!/usr/bin/env bash
# Build and run the queuewatch image with Debian's podman, with no container
# registry: the recipe of ../shared/CONTAINERS.md, kept in one place for
# `make image`, tests/test_container.py and a person at a shell.
#
#   scripts/container.sh env              print the environment podman needs (KEY=VALUE lines)
#   scripts/container.sh base             make the local base images if they are missing
#   scripts/container.sh build [TAG]      base images + the project's image (default localhost/queuewatch:dev)
#   scripts/container.sh demo-image [TAG] base images + scripts/demo's image (default localhost/queuewatch-demo:dev)
#   scripts/container.sh podman ARGS...   podman with that environment
#
# Everything podman keeps (images, layers, volumes, its configuration) lives
# under $QUEUEWATCH_CONTAINERS, by default ~/.cache/queuewatch/containers:
# outside the checkout, so CI's fresh clone reuses the base images and the
# layer cache of earlier runs on the same machine, and nothing of it can end up
# in a build context or a commit. `podman system reset --force` (with the
# environment of `env`) or deleting the folder removes it all.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CTR=${QUEUEWATCH_CONTAINERS:-${XDG_CACHE_HOME:-$HOME/.cache}/queuewatch/containers}
DEBIAN_IMAGE=localhost/debian:bookworm-slim
PYTHON_IMAGE=localhost/python:3.11-slim-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

configure() {
  mkdir -p "$CTR"/{storage,run,tmp,networks}
  # Written every time (cheap), so a changed recipe takes effect without a reset.
  cat > "$CTR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CTR/storage"
runroot = "$CTR/run"
EOF
  # runc: crun refuses this machine's hybrid cgroups. nofile: root cannot raise
  # rlimits here, so the shell's hard limit instead of podman's 1048576.
  cat > "$CTR/containers.conf" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CTR/run/events.log"
tmp_dir = "$CTR/run/libpod-tmp"
image_copy_tmp_dir = "$CTR/tmp"
[network]
network_config_dir = "$CTR/networks"
EOF
  export CONTAINERS_STORAGE_CONF=$CTR/storage.conf CONTAINERS_CONF=$CTR/containers.conf TMPDIR=$CTR/tmp
}

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "container.sh: $tool is missing (make tools installs it as root)" >&2; exit 3; }
  done
}

have_image() { podman image exists "$1"; }

base() {
  need podman runc
  if ! have_image "$DEBIAN_IMAGE"; then
    need debootstrap
    local start=$SECONDS rootfs="$CTR/rootfs"
    rm -rf "$rootfs"
    echo "container.sh: debootstrap bookworm from $MIRROR (about 30 s)" >&2
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$CTR/debootstrap.log" 2>&1 ||
      { tail -20 "$CTR/debootstrap.log" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$MIRROR" > "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin
    tar --numeric-owner -C "$rootfs" -c . | podman import -q --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
    echo "container.sh: $DEBIAN_IMAGE made in $((SECONDS - start)) s" >&2
  fi
  if ! have_image "$PYTHON_IMAGE"; then
    local start=$SECONDS ctx="$CTR/pybase"
    rm -rf "$ctx" && mkdir -p "$ctx/ca"
    # A machine whose TLS to PyPI passes through a local CA needs that CA inside
    # the image too, or pip in the build cannot verify PyPI.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/"
    fi
    cat > "$ctx/Containerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \\
 && update-ca-certificates >/dev/null \\
 && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/python
# A stand-in for python:3.x-slim: Debian's python3 in a venv first on PATH.
# Debian's pip 23 trusts certifi's bundle, not the system's: point it there.
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
EOF
    podman build -q --network=host -t "$PYTHON_IMAGE" "$ctx" >/dev/null
    echo "container.sh: $PYTHON_IMAGE made in $((SECONDS - start)) s" >&2
  fi
}

# --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
build() {
  local tag=${1:-localhost/queuewatch:dev}
  base
  podman build --network=host --format docker --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -t "$tag" "$ROOT"
  # Each changed build leaves the previous image untagged: keep a day of them (the layer cache), not years.
  podman image prune -f --filter until=24h >/dev/null
}

demo_image() {
  local tag=${1:-localhost/queuewatch-demo:dev}
  base
  podman build --network=host --format docker --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -t "$tag" "$ROOT/scripts/demo"
}

configure
command=${1:-}
shift || true
case "$command" in
  env) printf '%s\n' "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF" "CONTAINERS_CONF=$CONTAINERS_CONF" "TMPDIR=$TMPDIR" \
         "QUEUEWATCH_CONTAINERS=$CTR" "PYTHON_IMAGE=$PYTHON_IMAGE" ;;
  base) base ;;
  build) build "$@" ;;
  demo-image) demo_image "$@" ;;
  podman) need podman; exec podman "$@" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
