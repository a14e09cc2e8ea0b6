#!/bin/sh
# make run: ferry in the foreground on a development default -- loopback
# ports, the queue and the local socket under ./run/, logs on stderr.
# The config is written once to run/relay.conf; edit it freely after.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/run"
mkdir -p "$run"
chmod 0755 "$run"
if [ ! -f "$run/relay.conf" ]; then
	cat > "$run/relay.conf" <<CONF
# Written by 'make run'; see relay.conf.example for every key.
hostname = localhost
listen_smtp = 127.0.0.1:2525 [::1]:2525
listen_submission =
local_socket = $run/submit.sock
queue_dir = $run/queue
relay_networks = 127.0.0.0/8 ::1/128
log = stderr
# Nothing leaves this development instance: mail waits (deferred) for a
# smarthost on 127.0.0.1:10025 -- start one (e.g. smtp-sink -u nobody
# 127.0.0.1:10025 100) and run 'ferry flush', or point this elsewhere.
smarthost = [127.0.0.1]:10025
CONF
fi
if [ "$(id -u)" = 0 ] && ! id ferry >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin ferry
fi
echo "ferry: SMTP on 127.0.0.1:2525, queue in $run/queue" >&2
echo "ferry: try: FERRY_CONFIG=$run/relay.conf ./ferry sendmail root < /etc/hostname" >&2
exec "$top/ferry" -c "$run/relay.conf" serve
