#!/usr/bin/env bash
# Start the local Redis and RabbitMQ the dashboard and its tests talk to, if
# they are installed but not running. Never installs or reconfigures anything.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open 6379; then
  :
elif command -v redis-server >/dev/null; then
  echo "starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
else
  echo "warning: no Redis on 127.0.0.1:6379 and redis-server is not installed" >&2
fi

if port_open 5672; then
  :
elif command -v rabbitmq-server >/dev/null; then
  echo "starting rabbitmq-server (takes a few seconds)" >&2
  rabbitmq-server -detached >/dev/null 2>&1
else
  echo "warning: no RabbitMQ on 127.0.0.1:5672 and rabbitmq-server is not installed" >&2
fi

for _ in $(seq 1 60); do
  { port_open 6379 || ! command -v redis-server >/dev/null; } &&
  { port_open 5672 || ! command -v rabbitmq-server >/dev/null; } && break
  sleep 1
done

# The management plugin gives queue listing, unacked counts, rates and
# dead-letter arguments; the tests cover the dashboard with it on (and, by
# pointing at a closed port, off). Enabling is idempotent.
if port_open 5672 && ! port_open 15672 && command -v rabbitmq-plugins >/dev/null; then
  if rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management ||
     rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1; then
    for _ in $(seq 1 30); do port_open 15672 && break; sleep 1; done
    port_open 15672 || echo "warning: the RabbitMQ management API did not come up on 15672" >&2
  else
    echo "warning: could not enable rabbitmq_management (the dashboard works without it)" >&2
  fi
fi

{ port_open 6379 || ! command -v redis-server >/dev/null; } &&
{ port_open 5672 || ! command -v rabbitmq-server >/dev/null; } && exit 0
echo "warning: services did not come up within 60 s" >&2
exit 0
