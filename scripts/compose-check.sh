#!/usr/bin/env bash
# Bring compose.yaml up with podman-compose in a private network namespace,
# show what the dashboard sees, and take it down: the check docs/deploy.md
# records. Not part of `make test` (it takes a few minutes).
#
# No registry is reachable here, so the images compose.yaml names for Redis
# and RabbitMQ are stand-ins built from Debian's redis-server and
# rabbitmq-server on the local base (scripts/container.sh), tagged with those
# names. `unshare --net` gives the stack a network of its own: its bridge and
# published ports never meet the machine's own Redis and RabbitMQ.
#
#   scripts/compose-check.sh            # up, check, down
#   KEEP=1 scripts/compose-check.sh     # leave it up (then: scripts/compose-check.sh down)
set -euo pipefail
cd "$(dirname "$0")/.."
ctr=scripts/container.sh
eval "$($ctr env | sed 's/^/export /')"

if [ "${1:-}" = down ]; then
  pid=$(cat "$QUEUEWATCH_CONTAINERS/compose-netns.pid")
  nsenter --net=/proc/"$pid"/ns/net podman-compose -p qwcheck down -v -t 20
  kill "$pid"
  exit 0
fi

command -v podman-compose >/dev/null || { echo "podman-compose is missing: apt-get install podman-compose" >&2; exit 3; }
$ctr build localhost/queuewatch:dev >/dev/null
$ctr demo-image localhost/queuewatch-demo:dev >/dev/null

standin() {  # tag, packages, extra Containerfile lines
  local tag=$1 packages=$2 extra=$3
  local dir="$QUEUEWATCH_CONTAINERS/standin-${tag//[^a-z0-9]/-}"
  podman image exists "$tag" && return
  mkdir -p "$dir"
  printf 'FROM localhost/debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends %s && rm -rf /var/lib/apt/lists/*\n%s\n' \
    "$packages" "$extra" > "$dir/Containerfile"
  podman build -q --network=host --format docker -t "$tag" "$dir" >/dev/null
  echo "compose-check: stand-in $tag built from Debian's $packages" >&2
}
standin docker.io/library/redis:7-alpine redis-server \
  'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]'
standin docker.io/library/rabbitmq:4-management rabbitmq-server \
  'RUN rabbitmq-plugins enable --offline rabbitmq_management >/dev/null && echo "loopback_users = none" > /etc/rabbitmq/rabbitmq.conf
CMD ["rabbitmq-server"]'

# A private network namespace that lives as long as this sleep (unshare --fork
# ignores SIGTERM itself: the sleep is what is killed to end it).
unshare --net --fork --kill-child sleep infinity &
sleep 0.5
netns=$(tr -d ' \n' < /proc/$!/task/$!/children)
# However this script ends (unless KEEP), the namespace ends with it.
trap '[ -n "${KEEP:-}" ] || kill "$netns" 2>/dev/null || true' EXIT
echo "$netns" > "$QUEUEWATCH_CONTAINERS/compose-netns.pid"
in_ns() { nsenter --net=/proc/"$netns"/ns/net "$@"; }
in_ns ip link set lo up
start=$SECONDS
in_ns podman-compose -p qwcheck up -d 2>&1 | grep -vi systemd | tail -20
echo "compose-check: up in $((SECONDS - start)) s; waiting for every system" >&2
for _ in $(seq 1 120); do
  if in_ns python3 - <<'EOF' 2>/dev/null; then break; fi
import json, sys, urllib.request
queues = json.load(urllib.request.urlopen("http://127.0.0.1:8000/api/v1/queues", timeout=3))["queues"]
seen = {(q["backend"], q["system"]) for q in queues}
sys.exit(0 if len(seen) >= 7 else 1)
EOF
  sleep 2
done
echo "compose-check: $((SECONDS - start)) s after up:" >&2
in_ns python3 - <<'EOF'
import json, urllib.request
get = lambda path: json.load(urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=5))
for b in get("/api/v1/backends")["backends"]:
    print(f"backend {b['name']:9} {b['status']:5} systems={','.join(b['systems'])} {b['error'] or ''}")
for q in get("/api/v1/queues")["queues"]:
    print(f"  {q['backend']:9} {q['system']:9} {q['name']:14} waiting={q['depth']} in_progress={q['in_progress']} "
          f"scheduled={q['scheduled']} failed={q['failed']} workers={q['workers']}")
EOF
in_ns podman ps --format '{{.Names}} {{.Status}}'
# The machine's own RabbitMQ management port is not there from inside: 000.
in_ns curl -s -o /dev/null -w 'the machine'"'"'s 127.0.0.1:15672 from the namespace: %{http_code}\n' http://127.0.0.1:15672/ || true
if [ -z "${KEEP:-}" ]; then
  for service in demo dashboard rabbitmq redis; do  # one at a time, to see how each stops (137: SIGKILLed)
    t=$SECONDS
    in_ns podman stop -t 20 "qwcheck_${service}_1" >/dev/null 2>&1 || true
    echo "compose-check: $service stopped in $((SECONDS - t)) s, exit code $(in_ns podman inspect -f '{{.State.ExitCode}}' "qwcheck_${service}_1")" >&2
  done
  start=$SECONDS
  in_ns podman-compose -p qwcheck down -v -t 20 2>&1 | grep -vi systemd | tail -5
  echo "compose-check: down in $((SECONDS - start)) s" >&2
  in_ns podman network rm -f qwcheck_default >/dev/null 2>&1 || true  # podman-compose 1.0.3 leaves it
  in_ns podman ps -a --format '{{.Names}} {{.Status}}'
fi
