#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser).
# Install it when missing and we may (root with apt-get); otherwise say so.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] && exit 0
fi
echo "warning: /usr/bin/chromium is missing: install it with 'apt-get install chromium'" >&2
exit 0
