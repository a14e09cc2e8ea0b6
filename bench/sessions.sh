#!/bin/sh
# sessions.sh - what an idle SMTP session costs ferry in memory: opens
# many idle plaintext sessions (greeting and EHLO done) to one ferry, and
# many idle TLS sessions (EHLO, STARTTLS, handshake, EHLO again) to a
# fresh one, and prints the growth of the daemon's RSS and PSS per
# session.  Targets (issue 4): at most 8 KB per plaintext session and
# 48 KB per TLS session.
#
#   sh bench/sessions.sh [TLS_SESSIONS [PLAIN_SESSIONS]]
#   env: BENCH_TLS_SESSIONS (200), BENCH_PLAIN_SESSIONS (1000),
#        BENCH_TLS_TARGET_KB (48), BENCH_PLAIN_TARGET_KB (8), FERRY
#        (./ferry), BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1,
#        FERRY_EXTRA_CONF (e.g. tls_cert = ... for an RSA certificate).
#
# Owns only the measurement.  Before the sessions open, one session of
# the same kind is opened and closed, so lazily made tables (the TLS
# context, the first buffers) are in the baseline, not charged to the
# sessions.  The client (Python ssl) holds every session open while
# VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) are read,
# then closes them.  Sessions come from 127.0.0.1-127.0.0.254, so the
# per-client limit does not bite; max_connections is raised to fit and
# ulimit -n to twice the sessions.  Needs root.
# Exit: 0 both targets met, 1 a target missed or a session failed, 64
# usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

[ $# -le 2 ] ||
    { echo "usage: sh $0 [TLS_SESSIONS [PLAIN_SESSIONS]]" >&2; exit 64; }
n_tls=${1:-${BENCH_TLS_SESSIONS:-200}}
n_plain=${2:-${BENCH_PLAIN_SESSIONS:-1000}}
tls_target=${BENCH_TLS_TARGET_KB:-48}
plain_target=${BENCH_PLAIN_TARGET_KB:-8}
positive "$n_tls" "$n_plain" "$tls_target" "$plain_target"
SESSIONS_READY_WAIT=600		# tenths of a second for the client
SESSIONS_SETTLE=1		# seconds before reading memory
certs=$here/test/certs

prepare "ferry binds and drops privileges" ferry-sessions python3 ss

most=$n_plain
[ "$n_tls" -gt "$most" ] && most=$n_tls
# dash, bash and busybox sh all have ulimit -n.
# shellcheck disable=SC3045
ulimit -n $((2 * most + 256)) 2>/dev/null ||
    die "cannot raise the open files limit to $((2 * most + 256))"

# The client: hold.py PORT N tls|plain CA READYFILE; opens N sessions
# (plus one warm-up first, opened and closed), writes "ok N" or
# "failed WHY" to READYFILE, then holds them until SIGTERM.
write_client() {
	cat >"$dir/hold.py" <<'EOF'
import signal, socket, ssl, sys, time

port, n, kind, ca, ready = int(sys.argv[1]), int(sys.argv[2]), \
    sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2


def reply(s, buf):
    while True:
        while b'\r\n' not in buf[0]:
            d = s.recv(65536)
            if not d:
                raise EOFError('closed by the server')
            buf[0] += d
        line, buf[0] = buf[0].split(b'\r\n', 1)
        if line[3:4] != b'-':
            return int(line[:3])


def expect(s, buf, line, code):
    if line:
        s.sendall(line)
    got = reply(s, buf)
    if got != code:
        raise ValueError('%r: got %d, want %d' % (line, got, code))


def session(i):
    src = '127.0.0.%d' % (1 + i % 254)
    s = socket.create_connection(('127.0.0.1', port), timeout=60,
                                 source_address=(src, 0))
    buf = [b'']
    expect(s, buf, None, 220)
    expect(s, buf, b'EHLO idle.test\r\n', 250)
    if kind == 'tls':
        expect(s, buf, b'STARTTLS\r\n', 220)
        s = ctx.wrap_socket(s, server_hostname='127.0.0.1')
        expect(s, buf, b'EHLO idle.test\r\n', 250)
    return s


held = []
try:
    session(0).close()
    time.sleep(0.5)
    for i in range(n):
        held.append(session(i))
    msg = 'ok %d\n' % len(held)
except Exception as e:
    msg = 'failed after %d sessions: %s\n' % (len(held), e)
with open(ready + '.tmp', 'w') as f:
    f.write(msg)
import os
os.rename(ready + '.tmp', ready)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
EOF
}

# mem PID: "rss_kb pss_kb" of one process.
mem() {
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status")
	pss=$(awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup")
	echo "$rss $pss"
}

# measure KIND N: a fresh ferry, the warm-up, N idle sessions; appends
# "kind n rss0 pss0 rss1 pss1" to $dir/sessions.res.
measure() {
	kind=$1 count=$2
	fd=$dir/$kind
	mkdir "$fd" || die "mkdir $fd"
	free_port
	ferry_start "$fd" "$port" <<EOF
smarthost = [127.0.0.1]:$dead_port
smarthost_tls = none
tls_cert = $certs/server.pem
tls_key = $certs/server.key
max_connections = $((count + 16))
max_connections_per_client = $((count + 16))
smtpd_timeout = 1h
EOF
	# The baseline comes after a warm-up: a client run with N = 0
	# opens one session and closes it.
	python3 "$dir/hold.py" "$port" 0 "$kind" "$certs/ca.pem" \
	    "$fd/warm" &
	client_pid=$!
	wait_file "$fd/warm"
	kill "$client_pid"
	wait "$client_pid" 2>/dev/null
	sleep "$SESSIONS_SETTLE"
	base=$(mem "$ferry_pid")
	python3 "$dir/hold.py" "$port" "$count" "$kind" "$certs/ca.pem" \
	    "$fd/ready" &
	client_pid=$!
	wait_file "$fd/ready"
	read -r status got _ <"$fd/ready"
	[ "$status" = ok ] || { kill "$client_pid"; cat "$fd/ready" >&2;
	    die "$kind: the client failed"; }
	sleep "$SESSIONS_SETTLE"
	open=$(ss -Htn state established "sport = :$port" | wc -l)
	after=$(mem "$ferry_pid")
	kill "$client_pid"
	wait "$client_pid" 2>/dev/null
	client_pid=
	ferry_stop
	echo "$kind $got $open $base $after" >>"$dir/sessions.res"
}

# wait_file PATH: until the client writes it (dies if the client exits
# first, or after SESSIONS_READY_WAIT).
wait_file() {
	i=0
	while [ ! -f "$1" ]; do
		kill -0 "$client_pid" 2>/dev/null || die "the client exited"
		i=$((i + 1))
		[ $i -le $SESSIONS_READY_WAIT ] || die "the client hangs"
		sleep 0.1
	done
}

# The EXIT trap: the client first (it holds the sessions), then lib.sh's.
stop_client() {
	[ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null
	client_pid=
}
client_pid=
trap 'stop_client; cleanup' EXIT

write_client
free_port; dead_port=$port
echo "$me: $n_plain idle plaintext sessions, then $n_tls idle TLS sessions" \
    "(TLS 1.2, $(basename "$certs")/server.pem), each to a fresh ferry"
load_before
measure plain "$n_plain"
measure tls "$n_tls"
awk -v pt="$plain_target" -v tt="$tls_target" '
    { kind = $1; n = $2; open = $3; r0 = $4; p0 = $5; r1 = $6; p1 = $7
      tgt = kind == "tls" ? tt : pt
      printf "%-6s %5d sessions (%d established): RSS %d -> %d KB, " \
	  "PSS %d -> %d KB\n", kind, n, open, r0, r1, p0, p1
      per_r = (r1 - r0) / n; per_p = (p1 - p0) / n
      printf "%-6s %.1f KB RSS, %.1f KB PSS per session; target <= %d KB: " \
	  "%s\n", kind, per_r, per_p, tgt, per_r <= tgt ? "met" : "MISSED"
      if (per_r > tgt) bad = 1 }
    END { exit bad }' "$dir/sessions.res"
rc=$?
load_after
[ $rc -eq 0 ] && ok=1
[ -n "$ok" ]
