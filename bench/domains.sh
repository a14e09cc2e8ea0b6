#!/bin/sh
# domains.sh - ferry delivering to many domains behind a slow DNS: 200
# messages, one each to d1.test ... d200.test, every DNS answer 50 ms
# late; how long from the first message accepted until all are at the
# sink.  Target: under 2 s (lookups and deliveries run in parallel).
#
#   sh bench/domains.sh [MESSAGES]
#   env: DOMAINS_N (200 messages, one domain each), DOMAINS_DELAY_MS (50),
#        DOMAINS_DELIVERIES (20: ferry's max_deliveries, its default),
#        DOMAINS_SPREAD (1: MX hosts on 127.0.0.1 .. 127.0.0.K, one
#        smtp-sink each, all on the same mx_port), DOMAINS_SESSIONS (10
#        submitting SMTP sessions), DOMAINS_SIZE (4096 bytes of body),
#        DOMAINS_LIMIT (2.0 s), BENCH_ROUNDS (5), FERRY (./ferry),
#        BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1, BENCH_TIMEOUT (60 s),
#        FERRY_EXTRA_CONF (lines appended to ferry's config).
#
# Owns only the measurement.  DNS is test/slowdns.py (dN.test MX 10
# mx.dN.test, mx.dN.test A 127.0.0.x, AAAA NODATA), so each message costs
# ferry an MX lookup and then an A+AAAA lookup, 100 ms in a row, before it
# can connect.  ferry runs with smarthost empty, dns_servers = slowdns,
# mx_port = the sinks' port, outbound_tls = none, dnssec = no,
# max_deliveries = DOMAINS_DELIVERIES, the rest of the outbound settings
# at their defaults.  The messages are submitted over DOMAINS_SESSIONS
# parallel SMTP sessions (Python smtplib); the clock starts when the first
# one is accepted (its 250 after DATA) and stops when the smtp-sink -c
# counters add up to all of them.  Also printed per round: when the last
# message was accepted, ferry's per-message delay= figures, and the DNS
# queries slowdns saw.  Needs root.  Exit: 0 every round delivered
# everything within the limit, 1 otherwise, 64 usage.

set -u

BENCH_POLL_INTERVAL=0.005	# seconds between looks at the sink counters
BENCH_START_WAIT=100		# tenths of a second for a listener to appear
BENCH_STOP_WAIT=100		# tenths of a second for ferry to exit
BENCH_SINK_BACKLOG=1000		# smtp-sink's listen backlog
SPREAD_MAX=254			# 127.0.0.1 .. 127.0.0.254

me=domains
here=$(cd "$(dirname "$0")/.." && pwd) || exit 1

[ $# -le 1 ] || { echo "usage: sh $0 [MESSAGES]" >&2; exit 64; }
n=${1:-${DOMAINS_N:-200}}
delay=${DOMAINS_DELAY_MS:-50}
conc=${DOMAINS_DELIVERIES:-20}
spread=${DOMAINS_SPREAD:-1}
sessions=${DOMAINS_SESSIONS:-10}
size=${DOMAINS_SIZE:-4096}
limit=${DOMAINS_LIMIT:-2.0}
rounds=${BENCH_ROUNDS:-5}
timeout=${BENCH_TIMEOUT:-60}
for v in "$n" "$delay" "$conc" "$spread" "$sessions" "$size" "$rounds" \
    "$timeout"; do
	case $v in
	''|*[!0-9]*|0) echo "$me: not a positive number: '$v'" >&2; exit 64 ;;
	esac
done
[ "$spread" -le $SPREAD_MAX ] ||
    { echo "$me: DOMAINS_SPREAD is at most $SPREAD_MAX" >&2; exit 64; }
ferry=${FERRY:-$here/ferry}

die() {
	echo "$me: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (ferry binds and drops privileges)"
[ -x "$ferry" ] || die "no $ferry; build it first (make)"
for c in smtp-sink python3 ss; do
	command -v "$c" >/dev/null || die "$c is missing (sh test/deps.sh test)"
done
if ! id ferry >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin ferry ||
	    die "cannot create user ferry"
fi

dir=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/ferry-domains.XXXXXX") ||
    die "mktemp failed"
chmod 755 "$dir" || die "chmod $dir"

ferry_pid=
dns_pid=
sink_pids=
waiter_pid=
ok=

cleanup() {
	[ -n "$waiter_pid" ] && kill "$waiter_pid" 2>/dev/null
	[ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null
	[ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null
	for p in $sink_pids; do
		kill "$p" 2>/dev/null
	done
	if [ -n "$ok" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$dir"
	else
		echo "$me: queues and logs kept in $dir"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# listening PORT [COUNT] [u]: at least COUNT (1) sockets listen on PORT
# (TCP; UDP with u).
listening() {
	got=$(ss -Hl"${3:-t}"n "sport = :$1" 2>/dev/null | wc -l)
	[ "$got" -ge "${2:-1}" ]
}

used_ports=
free_port() {
	while :; do
		p=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		p=$((20000 + p % 40000))
		case " $used_ports " in *" $p "*) continue ;; esac
		listening "$p" && continue
		listening "$p" 1 u && continue
		used_ports="$used_ports $p"
		echo "$p"
		return
	done
}

# wait_for WHAT PID PORT COUNT PROTO ERRFILE: until COUNT listeners.
wait_for() {
	i=0
	while ! listening "$3" "$4" "$5"; do
		kill -0 "$2" 2>/dev/null || {
			cat "$6" >&2
			die "$1 exited at start-up"
		}
		i=$((i + 1))
		[ $i -le $BENCH_START_WAIT ] || die "$1 does not listen on $3"
		sleep 0.1
	done
}

# The submitter: SESSIONS threads, message i to rcpt@d<i>.test, each
# thread on one connection; writes "first_start first_accepted
# last_accepted sent" (unix seconds).  And the waiter, as in relay.sh.
write_helpers() {
	cat >"$dir/submit.py" <<'EOF'
import smtplib, sys, threading, time

host, port, n, sessions, size, out = sys.argv[1], int(sys.argv[2]), \
    int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
LINE = 'x' * 70 + '\r\n'
body = ''.join(LINE for _ in range(max(1, size // len(LINE))))
lock = threading.Lock()
accepted, errors = [], []


def work(k):
    try:
        c = smtplib.SMTP(host, port, 'bench-client.test', timeout=30)
        for i in range(k + 1, n + 1, sessions):
            msg = ('From: <sender@bench-client.test>\r\n'
                   'To: <rcpt@d%d.test>\r\nSubject: domain %d\r\n'
                   'Message-ID: <%d@bench-client.test>\r\n\r\n%s'
                   % (i, i, i, body))
            c.sendmail('sender@bench-client.test', ['rcpt@d%d.test' % i],
                       msg.encode('ascii'))
            t = time.time()
            with lock:
                accepted.append(t)
        c.quit()
    except (OSError, smtplib.SMTPException) as e:
        with lock:
            errors.append('session %d: %s' % (k, e))


threads = [threading.Thread(target=work, args=(k,)) for k in range(sessions)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
for e in errors:
    print(e, file=sys.stderr)
with open(out, 'w') as f:
    f.write('%.6f %.6f %.6f %d\n' % (t0, min(accepted or [0]),
                                      max(accepted or [0]), len(accepted)))
sys.exit(1 if errors or len(accepted) != n else 0)
EOF
	cat >"$dir/sinkwait.py" <<'EOF'
import re, sys, time

out, n, timeout, interval = sys.argv[1], int(sys.argv[2]), \
    float(sys.argv[3]), float(sys.argv[4])
files = sys.argv[5:]
TAIL = 256
mesg = re.compile(rb'mesg=(\d+)')


def count(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL))
            found = mesg.findall(f.read())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


deadline = time.time() + timeout
while True:
    got = sum(count(p) for p in files)
    t = time.time()
    if got >= n or t > deadline:
        break
    time.sleep(interval)
with open(out, 'w') as f:
    f.write('%.6f %d\n' % (t, got))
sys.exit(0 if got >= n else 1)
EOF
}

# One round in $1; appends "done_s last_accepted_s delivered submitted
# dns_queries delay_median delay_max vmhwm_kb" to $dir/rounds.res.
run_round() {
	rd=$1
	mkdir "$rd" || die "mkdir $rd"
	python3 "$here/test/slowdns.py" --port "$dns_port" --delay-ms "$delay" \
	    --domains "$n" --spread "$spread" --log "$rd/dns.log" \
	    >"$rd/dns.out" 2>&1 &
	dns_pid=$!
	wait_for slowdns "$dns_pid" "$dns_port" 1 u "$rd/dns.out"
	counters=
	x=1
	while [ $x -le "$spread" ]; do
		smtp-sink -u nobody -c "127.0.0.$x:$sink_port" \
		    "$BENCH_SINK_BACKLOG" >"$rd/sink-$x.count" \
		    2>"$rd/sink-$x.err" &
		sink_pids="$sink_pids $!"
		wait_for smtp-sink $! "$sink_port" "$x" t "$rd/sink-$x.err"
		counters="$counters $rd/sink-$x.count"
		x=$((x + 1))
	done
	conf=$rd/relay.conf
	cat >"$conf" <<EOF
hostname = bench.test
listen_smtp = 127.0.0.1:$ferry_port
listen_submission =
local_socket = $rd/submit.sock
queue_dir = $rd/queue
log = stderr
user = ferry
max_connections = 256
max_connections_per_client = 256
relay_networks = 127.0.0.0/8
smarthost =
dns_servers = 127.0.0.1:$dns_port
dnssec = no
outbound_tls = none
mx_port = $sink_port
max_deliveries = $conc
${FERRY_EXTRA_CONF:-}
EOF
	"$ferry" -c "$conf" serve 2>"$rd/ferry.log" &
	ferry_pid=$!
	wait_for ferry "$ferry_pid" "$ferry_port" 1 t "$rd/ferry.log"

	# shellcheck disable=SC2086
	python3 "$dir/sinkwait.py" "$rd/done" "$n" "$timeout" \
	    "$BENCH_POLL_INTERVAL" $counters &
	waiter_pid=$!
	python3 "$dir/submit.py" 127.0.0.1 "$ferry_port" "$n" "$sessions" \
	    "$size" "$rd/submitted" 2>"$rd/submit.err" ||
	    { cat "$rd/submit.err" >&2; die "submitting to ferry failed"; }
	wait "$waiter_pid"
	rc=$?
	waiter_pid=
	read -r _ t_first t_last submitted <"$rd/submitted"
	read -r t_done got <"$rd/done"
	[ $rc -eq 0 ] || echo "$me: the sinks got only $got of $n in" \
	    "${timeout}s" >&2

	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ferry_pid/status")
	kill -TERM "$ferry_pid"
	i=0
	while kill -0 "$ferry_pid" 2>/dev/null; do
		i=$((i + 1))
		[ $i -le $BENCH_STOP_WAIT ] || die "ferry did not exit on SIGTERM"
		sleep 0.1
	done
	wait "$ferry_pid"
	ferry_pid=
	kill -TERM "$dns_pid"
	wait "$dns_pid"
	dns_pid=
	for p in $sink_pids; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	sink_pids=
	queries=$(sed -n 's/^slowdns: \([0-9]*\) queries$/\1/p' "$rd/dns.out")
	# Postfix-style delay= of each status=sent line: arrival to delivery.
	delays=$(sed -n 's/.*, delay=\([0-9.]*\),.*status=sent.*/\1/p' \
	    "$rd/ferry.log" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) print "? ?"
		else printf "%s %s\n", v[int((NR + 1) / 2)], v[NR] }')
	echo "$t_first $t_last $t_done $got $submitted ${queries:-?} $delays" \
	    "$hwm" | awk '{ printf "%.3f %.3f %d %d %s %s %s %s\n",
		$3 - $1, $2 - $1, $4, $5, $6, $7, $8, $9 }' >>"$dir/rounds.res"
}

write_helpers
ferry_port=$(free_port)
sink_port=$(free_port)
dns_port=$(free_port)
echo "$me: $n messages to $n domains, DNS answers ${delay} ms late," \
    "max_deliveries $conc, MX hosts on $spread address(es)," \
    "$sessions submitting sessions, $rounds rounds"
echo "$me: load average before: $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(nproc) CPUs"
r=1
while [ $r -le "$rounds" ]; do
	run_round "$dir/round-$r"
	r=$((r + 1))
done

echo "$me: each round: seconds_to_all_delivered seconds_to_last_accepted" \
    "delivered submitted dns_queries delay_median delay_max vmhwm_kb" \
    "(seconds from the first message accepted)"
sed 's/^/  /' "$dir/rounds.res"
echo "$me: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v n="$n" -v limit="$limit" '{ v[NR] = $1; if ($3 < n) short++
	    if ($1 >= limit) over++ }
    END {
	for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++)
		if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	printf "domains: %d messages to %d domains delivered in %.2f s " \
	    "(median of %d; min %.2f, max %.2f; target < %s s): %s\n",
	    n, n, med, NR, v[1], v[NR], limit,
	    (over || short) ? "MISSED" : "ok"
	exit (over || short) ? 1 : 0
    }' "$dir/rounds.res" && ok=1
[ -n "$ok" ]
