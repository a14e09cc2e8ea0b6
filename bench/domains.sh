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

SPREAD_MAX=254			# 127.0.0.1 .. 127.0.0.254

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

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
positive "$n" "$delay" "$conc" "$spread" "$sessions" "$size" "$rounds" \
    "$timeout"
[ "$spread" -le $SPREAD_MAX ] ||
    { echo "$me: DOMAINS_SPREAD is at most $SPREAD_MAX" >&2; exit 64; }

prepare "ferry binds and drops privileges" ferry-domains smtp-sink python3 ss

# The submitter: SESSIONS threads, message i to rcpt@d<i>.test, each
# thread on one connection; writes "first_start first_accepted
# last_accepted sent" (unix seconds).
write_submit() {
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
	wait_listen slowdns "$dns_pid" "$dns_port" 1 u "$rd/dns.out"
	counters=
	x=1
	while [ $x -le "$spread" ]; do
		sink_start "127.0.0.$x" "$sink_port" "$rd/sink-$x.count" \
		    "$rd/sink-$x.err" "$x"
		counters="$counters $rd/sink-$x.count"
		x=$((x + 1))
	done
	ferry_start "$rd" "$ferry_port" <<EOF
smarthost =
dns_servers = 127.0.0.1:$dns_port
dnssec = no
outbound_tls = none
mx_port = $sink_port
max_deliveries = $conc
EOF

	# shellcheck disable=SC2086
	waiter_start "$rd/done" "$n" "$timeout" $counters
	python3 "$dir/submit.py" 127.0.0.1 "$ferry_port" "$n" "$sessions" \
	    "$size" "$rd/submitted" 2>"$rd/submit.err" ||
	    { cat "$rd/submit.err" >&2; die "submitting to ferry failed"; }
	waiter_wait "the sinks"
	read -r _ t_first t_last submitted <"$rd/submitted"

	hwm=$(ferry_hwm)
	ferry_stop
	kill -TERM "$dns_pid"
	wait "$dns_pid"
	dns_pid=
	sinks_stop
	queries=$(sed -n 's/^slowdns: \([0-9]*\) queries$/\1/p' "$rd/dns.out")
	# Postfix-style delay= of each status=sent line: arrival to delivery.
	delays=$(sed -n 's/.*, delay=\([0-9.]*\),.*status=sent.*/\1/p' \
	    "$rd/ferry.log" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) print "? ?"
		else printf "%s %s\n", v[int((NR + 1) / 2)], v[NR] }')
	echo "$t_first $t_last $done_at $got $submitted ${queries:-?} $delays" \
	    "$hwm" | awk '{ printf "%.3f %.3f %d %d %s %s %s %s\n",
		$3 - $1, $2 - $1, $4, $5, $6, $7, $8, $9 }' >>"$dir/rounds.res"
}

write_submit
write_sinkwait
free_port; ferry_port=$port
free_port; sink_port=$port
free_port; dns_port=$port
echo "$me: $n messages to $n domains, DNS answers ${delay} ms late," \
    "max_deliveries $conc, MX hosts on $spread address(es)," \
    "$sessions submitting sessions, $rounds rounds"
load_before
r=1
while [ $r -le "$rounds" ]; do
	run_round "$dir/round-$r"
	r=$((r + 1))
done

echo "$me: each round: seconds_to_all_delivered seconds_to_last_accepted" \
    "delivered submitted dns_queries delay_median delay_max vmhwm_kb" \
    "(seconds from the first message accepted)"
sed 's/^/  /' "$dir/rounds.res"
load_after
awk -v n="$n" -v limit="$limit" -v med="$(median 1 "$dir/rounds.res")" '
    NR == 1 || $1 < lo { lo = $1 }
    NR == 1 || $1 > hi { hi = $1 }
    { if ($3 < n) short++
      if ($1 >= limit) over++ }
    END {
	printf "domains: %d messages to %d domains delivered in %.2f s " \
	    "(median of %d; min %.2f, max %.2f; target < %s s): %s\n",
	    n, n, med, NR, lo, hi, limit,
	    (over || short) ? "MISSED" : "ok"
	exit (over || short) ? 1 : 0
    }' "$dir/rounds.res" && ok=1
[ -n "$ok" ]
