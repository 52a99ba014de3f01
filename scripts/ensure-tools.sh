#!/usr/bin/env bash
# The tools of the deployment tests, from Debian's packages, when missing and
# we may install them (root with apt-get); otherwise say so (the tests then
# skip locally and fail in CI):
#   podman, runc, debootstrap  tests/test_container.py builds and runs the image
#   stunnel4                   tests/test_connections.py: RabbitMQ over TLS
#   promtool                   tests/test_deploy.py checks deploy/prometheus/alerts.yml
# promtool comes out of Debian's `prometheus` package unpacked into
# build/tools/bin (a fresh clone gets it again in about a second): installing
# the package would also install and try to start a Prometheus server.
set -u
cd "$(dirname "$0")/.."

missing=()
for pair in podman:podman runc:runc debootstrap:debootstrap stunnel4:stunnel4; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
promtool=build/tools/bin/promtool
have_promtool() { command -v promtool >/dev/null || [ -x "$promtool" ]; }

may_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if [ ${#missing[@]} -eq 0 ] && have_promtool; then
  exit 0
fi
if ! may_install; then
  echo "warning: missing ${missing[*]} ${promtool##*/}: install podman runc debootstrap stunnel4 prometheus (for promtool)" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian's ${missing[*]} for the deployment tests" >&2
  # podman also brings iptables (made the default alternative) and newer passwd/login.
  apt-get install -y -qq "${missing[@]}" >/dev/null || echo "warning: could not install ${missing[*]}" >&2
fi
if ! have_promtool; then
  echo "unpacking promtool from Debian's prometheus package into build/tools/bin" >&2
  work=$(mktemp -d)
  if (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1) && dpkg-deb -x "$work"/prometheus_*.deb "$work/root"; then
    mkdir -p "$(dirname "$promtool")" && cp "$work/root/usr/bin/promtool" "$promtool"
  else
    echo "warning: could not fetch Debian's prometheus package for promtool" >&2
  fi
  rm -rf "$work"
fi
exit 0
