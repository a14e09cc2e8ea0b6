#!/bin/sh
# make run: ferry in the foreground on a development default -- loopback
# ports, the queue and the local socket under ./run/, logs on stderr.
# The config is written once to run/relay.conf; edit it freely after.
# A self-signed certificate (run/cert.pem, run/key.pem) is made on the
# first run, so STARTTLS (2525), submission (2587) and implicit TLS
# (2465) work at once; clients must be told to accept it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/run"
mkdir -p "$run"
chmod 0755 "$run"
if [ ! -f "$run/cert.pem" ] || [ ! -f "$run/key.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -nodes -days 3650 -subj "/CN=localhost" \
	    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
	    -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
	# The daemon re-reads it on SIGHUP as the ferry user.
	chmod 0640 "$run/key.pem"
	if id ferry >/dev/null 2>&1; then chgrp ferry "$run/key.pem"; fi
fi
if [ ! -f "$run/relay.conf" ]; then
	cat > "$run/relay.conf" <<CONF
# Written by 'make run'; see relay.conf.example for every key.
hostname = localhost
listen_smtp = 127.0.0.1:2525 [::1]:2525
listen_submission = 127.0.0.1:2587
listen_smtps = 127.0.0.1:2465
tls_cert = $run/cert.pem
tls_key = $run/key.pem
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
	chgrp ferry "$run/key.pem"
fi
echo "ferry: SMTP on 127.0.0.1:2525 (STARTTLS), submission 2587," \
    "smtps 2465; queue in $run/queue" >&2
echo "ferry: try: FERRY_CONFIG=$run/relay.conf ./ferry sendmail root < /etc/hostname" >&2
exec "$top/ferry" -c "$run/relay.conf" serve
