#!/bin/sh
# relay.sh - how fast ferry and Postfix relay mail end to end, and at what
# memory cost, measured in one run on the same disk: smtp-source -> MTA ->
# smtp-sink, from the first message sent until the sink has all of them.
#
#   sh bench/relay.sh [MESSAGES [SESSIONS [SIZE]]]
#   env: BENCH_N (2000), BENCH_SESSIONS (20), BENCH_SIZE (4096 bytes of
#        body), BENCH_REUSE=1 (many messages per inbound connection,
#        smtp-source -d), FERRY (./ferry), BENCH_ROUNDS (3; rates are the
#        median round, memory the largest), BENCH_TMPDIR (/var/tmp),
#        BENCH_KEEP=1 (keep queues and logs), BENCH_TIMEOUT (300 s for the
#        sink to get everything), BENCH_DELIVERIES (20: ferry's
#        max_deliveries and max_deliveries_per_destination, Postfix's
#        default_destination_concurrency_limit), FERRY_EXTRA_CONF (lines
#        appended to ferry's config), BENCH_DOMAINS=0 (skip the second
#        part, bench/domains.sh: 200 domains behind a 50 ms DNS).
#
# Owns only the measurement.  Each MTA gets its own smtp-sink (separate
# ports) as its smarthost / relayhost, started fresh for every round; the
# sink's -c counter says how many messages it has taken, and the round ends
# when it reaches N.  Settings on both sides:
#   ferry:   smarthost = [127.0.0.1]:SINK, smarthost_tls = none,
#            max_connections(_per_client) = 256, max_deliveries = 20,
#            max_deliveries_per_destination = 20
#   Postfix: test/postfix-instance.sh with relayhost [127.0.0.1]:SINK,
#            smtpd process limit 256, default_destination_concurrency_limit
#            set to the same 20 (Postfix's default), everything else default
# Peak memory as bench/accept.sh: ferry's VmHWM; for Postfix the sum of
# VmRSS over master and all its children sampled every 50 ms, and the PSS
# sum, which counts shared pages once.  The sinks are not counted.
# Needs root.  Exit: 0 done and every message reached each sink, 1
# otherwise, 64 usage.

set -u

BENCH_DRAIN_WAIT=50		# tenths of a second for a queue to empty

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

load_args "$@"
rounds=${BENCH_ROUNDS:-3}
timeout=${BENCH_TIMEOUT:-300}
conc=${BENCH_DELIVERIES:-20}
positive "$n" "$s" "$size" "$rounds" "$timeout" "$conc"

prepare "the daemons bind and drop privileges" ferry-relay \
    smtp-source smtp-sink postfix postconf python3 ss

# drive DIR PORT: starts the waiter on DIR's sink, runs smtp-source
# against PORT; prints "t0 t_sent t_done delivered" (epoch seconds).
drive() {
	waiter_start "$1/done" "$n" "$timeout" "$1/sink.count"
	t0=$(now)
	smtp_source "$2" "$1/smtp-source.log" || return 1
	t1=$(now)
	waiter_wait "the sink"
	echo "$t0 $t1 $done_at $got"
}

# The times as "e2e_seconds accept_seconds delivered".
durations() {
	echo "$1" | awk '{ printf "%.3f %.3f %d\n", $3 - $1, $2 - $1, $4 }'
}

# One round against ferry in $1 (a fresh directory); appends "e2e accept
# delivered left vmhwm_kb rss_kb pss_kb processes samples" to ferry.res.
run_ferry() {
	fd=$1
	mkdir "$fd" || die "mkdir $fd"
	sink_start 127.0.0.1 "$ferry_sink" "$fd/sink.count" "$fd/sink.err" 1
	ferry_start "$fd" "$ferry_port" <<EOF
smarthost = [127.0.0.1]:$ferry_sink
smarthost_tls = none
max_deliveries = $conc
max_deliveries_per_destination = $conc
EOF
	sampler_start "$ferry_pid" "$fd/mem"
	res=$(drive "$fd" "$ferry_port") || die "smtp-source against ferry failed"
	sampler_stop
	# The 250 from the sink comes before ferry's own state write.
	i=0
	while left=$(ferry_queued "$fd") && [ "$left" != 0 ]; do
		i=$((i + 1))
		if [ $i -gt $BENCH_DRAIN_WAIT ] || [ "$left" = "?" ]; then
			break
		fi
		sleep 0.1
	done
	hwm=$(ferry_hwm)
	ferry_stop
	sinks_stop
	echo "$(durations "$res") $left $hwm $(cat "$fd/mem")" >>"$dir/ferry.res"
}

# The same against a fresh Postfix in $1; appends to postfix.res (its
# "vmhwm" column is the sampled RSS sum: many processes, no one HWM).
run_postfix() {
	pd=$1
	mkdir "$pd" || die "mkdir $pd"
	sink_start 127.0.0.1 "$pf_sink" "$pd/sink.count" "$pd/sink.err" 1
	pf_start "$pd" "$pf_port" "[127.0.0.1]:$pf_sink"
	# Written after start (postfix-instance.sh writes main.cf); the value
	# is Postfix's default, so the reload changes nothing but says it.
	postconf -c "$pd" -e "default_destination_concurrency_limit = $conc" ||
	    die "cannot set Postfix's concurrency limit"
	postfix -c "$pd" reload >>"$pd/maillog" 2>&1 ||
	    die "postfix reload failed; see $pd/maillog"
	pf_conc=$(postconf -c "$pd" -x -h smtp_destination_concurrency_limit)
	# reload restarts qmgr; let it settle before the clock starts.
	sleep 1
	sampler_start "$(pf_master "$pd")" "$pd/mem"
	res=$(drive "$pd" "$pf_port") || die "smtp-source against Postfix failed"
	sampler_stop
	i=0
	while left=$(pf_queued "$pd") && [ "$left" != 0 ]; do
		i=$((i + 1))
		[ $i -le $BENCH_DRAIN_WAIT ] || break
		sleep 0.1
	done
	pf_stop "$pd"
	sinks_stop
	read -r rss _ <"$pd/mem"
	echo "$(durations "$res") $left $rss $(cat "$pd/mem")" >>"$dir/postfix.res"
}

# Per column: the median end-to-end and accept times, the smallest count
# delivered, the largest left behind and the largest memory figures.
summary() {
	awk -v e2e="$(median 1 "$1")" -v acc="$(median 2 "$1")" '
	    NR == 1 || $3 < d { d = $3 }
	    { if ($4 == "?" || left == "?") left = "?"
	      else if ($4 > left) left = $4
	      for (i = 5; i <= 9; i++) if ($i > m[i]) m[i] = $i }
	    END { printf "%s %s %d %s %d %d %d %d %d\n", e2e, acc, d,
		left == "" ? 0 : left, m[5], m[6], m[7], m[8], m[9] }' "$1"
}

write_sampler
write_sinkwait
free_port; ferry_port=$port
free_port; ferry_sink=$port
free_port; pf_port=$port
free_port; pf_sink=$port
pf_conc='?'
echo "$me: $n messages of $size bytes over $s sessions ($(reuse_how))," \
    "$rounds rounds, $conc deliveries at once;" \
    "queues in $dir on $(queue_disk)"
load_before
alternate_rounds "$rounds"

# --- report --------------------------------------------------------------
f_sum=$(summary "$dir/ferry.res")
p_sum=$(summary "$dir/postfix.res")
read -r f_e2e f_acc f_d f_left _ _ f_pss _ <<EOF
$f_sum
EOF
read -r p_e2e p_acc p_d p_left _ _ p_pss _ <<EOF
$p_sum
EOF
echo "$me: Postfix smtp_destination_concurrency_limit = $pf_conc"
width=32
table_head $width
awk -v w=$width -v n="$n" -v rounds="$rounds" \
    -v fe="$f_e2e" -v pe="$p_e2e" -v fa="$f_acc" -v pa="$p_acc" \
    -v fd="$f_d" -v pd="$p_d" -v fl="$f_left" -v pl="$p_left" 'BEGIN {
	fmt = "%-" w "s %12s %12s\n"
	printf fmt, "end-to-end s (median of " rounds ")", sprintf("%.2f", fe),
	    sprintf("%.2f", pe)
	printf fmt, "end-to-end msg/s", sprintf("%.0f", n / fe),
	    sprintf("%.0f", n / pe)
	printf fmt, "accepting s (median)", sprintf("%.2f", fa),
	    sprintf("%.2f", pa)
	printf fmt, "at the sink (min)", fd, pd
	printf fmt, "left in queue (max)", fl, pl
}'
table_memory $width "$f_sum" "$p_sum"
awk -v n="$n" -v fe="$f_e2e" -v pe="$p_e2e" 'BEGIN {
	printf "relay: ferry %.0f msg/s, postfix %.0f msg/s end to end, " \
	    "ratio %.2fx (target >= 1.5x)\n", n / fe, n / pe, pe / fe
}'
rss_ratio "$f_sum" "$p_sum"
awk -v fp="$f_pss" -v pp="$p_pss" 'BEGIN {
	printf " (target <= 0.1); PSS ratio %.3f\n", fp / pp
}'
load_after
echo "$me: each round: e2e_s accept_s delivered left hwm/rss_kb rss_kb" \
    "pss_kb procs samples"
report_rounds
ok=1
[ "$f_d" -ge "$n" ] || { echo "$me: ferry's sink got $f_d of $n" >&2; ok=; }
[ "$p_d" -ge "$n" ] || { echo "$me: Postfix's sink got $p_d of $n" >&2; ok=; }
[ "$f_left" = 0 ] || echo "$me: warning: ferry left $f_left queued" >&2
[ "$p_left" = 0 ] || echo "$me: warning: Postfix left $p_left queued" >&2

if [ "${BENCH_DOMAINS:-1}" != 0 ]; then
	echo
	FERRY=$ferry sh "$here/bench/domains.sh" || ok=
fi
[ -n "$ok" ]
