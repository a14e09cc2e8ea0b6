#!/bin/sh
# accept.sh - how fast ferry and Postfix accept relay mail, and at what
# memory cost, measured in one run on the same disk.
#
#   sh bench/accept.sh [MESSAGES [SESSIONS [SIZE]]]
#   env: BENCH_N (2000), BENCH_SESSIONS (20), BENCH_SIZE (4096 bytes of
#        body), BENCH_REUSE=1 (many messages per connection, smtp-source
#        -d; default one message per connection), FERRY (./ferry),
#        BENCH_ROUNDS (3; rates are the median round, memory the largest),
#        BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1 (keep the queues and logs),
#        FERRY_EXTRA_CONF (lines appended to ferry's config),
#        BENCH_POSTFIX_HOLD=1 (Postfix parks all mail in its hold queue
#        and tries no delivery: accepting alone, for a ferry that does
#        not deliver yet).
#
# Owns only the measurement.  Postfix's smtp-source sends the same load to
# ferry and then to a private Postfix (test/postfix-instance.sh); both
# relay 127.0.0.0/8 to a closed port, so every message stays queued, and
# both queues live in one mktemp directory.  Peak memory: ferry's VmHWM;
# for Postfix the sum of VmRSS over master and all its children, sampled
# every 50 ms (plus the PSS sum, which counts shared pages once).
# Afterwards it counts what each side queued.  Needs root.
# Exit: 0 done and both queued every message, 1 otherwise, 64 usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

load_args "$@"
positive "$n" "$s" "$size"
rounds=${BENCH_ROUNDS:-3}
case $rounds in
''|*[!0-9]*|0) echo "$me: BENCH_ROUNDS: not a positive number" >&2; exit 64 ;;
esac
pf_mode=relay
[ "${BENCH_POSTFIX_HOLD:-0}" = 1 ] && pf_mode=hold

prepare "both daemons bind and drop privileges" ferry-bench \
    smtp-source postfix python3 ss

# Runs smtp-source against port $1; prints the seconds it took.
drive() {
	t0=$(now)
	smtp_source "$1" "$dir/smtp-source-$1.log" || return 1
	t1=$(now)
	echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }'
}

# One round against ferry in $1 (a fresh directory); appends "seconds
# queued vmhwm_kb rss_kb pss_kb processes samples" to $dir/ferry.res.
run_ferry() {
	fd=$1
	mkdir "$fd" || die "mkdir $fd"
	ferry_start "$fd" "$ferry_port" <<EOF
# Like Postfix's relayhost here: a closed port, so mail stays deferred.
smarthost = [127.0.0.1]:$dead_port
smarthost_tls = none
EOF
	sampler_start "$ferry_pid" "$fd/mem"
	secs=$(drive "$ferry_port") || die "smtp-source against ferry failed"
	sampler_stop
	hwm=$(ferry_hwm)
	queued=$(ferry_queued "$fd")
	ferry_stop
	echo "$secs $queued $hwm $(cat "$fd/mem")" >>"$dir/ferry.res"
}

# The same against a fresh Postfix in $1; appends to $dir/postfix.res
# (its "vmhwm" column is the sampled RSS sum: many processes, no one HWM).
run_postfix() {
	pd=$1
	pf_relay="[127.0.0.1]:$dead_port"
	[ $pf_mode = hold ] && pf_relay=hold
	pf_start "$pd" "$pf_port" "$pf_relay"
	sampler_start "$(pf_master "$pd")" "$pd/mem"
	secs=$(drive "$pf_port") || die "smtp-source against Postfix failed"
	sampler_stop
	queued=$(pf_queued "$pd")
	pf_stop "$pd"
	read -r rss _ <"$pd/mem"
	echo "$secs $queued $rss $(cat "$pd/mem")" >>"$dir/postfix.res"
}

# Per column: the median time, the smallest count queued (every round has
# to queue every message), the largest memory figures.
summary() {
	awk -v med="$(median 1 "$1")" 'NR == 1 || $2 < q { q = $2 }
	    { for (i = 3; i <= 7; i++) if ($i > m[i]) m[i] = $i }
	    END { printf "%s %s %d %d %d %d %d\n", med, q,
		m[3], m[4], m[5], m[6], m[7] }' "$1"
}

write_sampler
free_port; dead_port=$port
free_port; ferry_port=$port
free_port; pf_port=$port
echo "$me: $n messages of $size bytes over $s sessions ($(reuse_how))," \
    "$rounds rounds, Postfix mode $pf_mode;" \
    "queues in $dir on $(queue_disk)"
# Other work on the machine moves these figures a lot; say how busy it was.
load_before
alternate_rounds "$rounds"

# --- report --------------------------------------------------------------
f_sum=$(summary "$dir/ferry.res")
p_sum=$(summary "$dir/postfix.res")
read -r f_secs f_q _ <<EOF
$f_sum
EOF
read -r p_secs p_q _ <<EOF
$p_sum
EOF
width=28
table_head $width
awk -v w=$width -v n="$n" -v rounds="$rounds" -v fs="$f_secs" \
    -v ps="$p_secs" -v fq="$f_q" -v pq="$p_q" 'BEGIN {
	fmt = "%-" w "s %12s %12s\n"
	printf fmt, "seconds (median of " rounds ")", sprintf("%.2f", fs),
	    sprintf("%.2f", ps)
	printf fmt, "msg/s", sprintf("%.0f", n / fs), sprintf("%.0f", n / ps)
	printf fmt, "queued afterwards (min)", fq, pq
}'
table_memory $width "$f_sum" "$p_sum"
awk -v n="$n" -v fs="$f_secs" -v ps="$p_secs" 'BEGIN {
	printf "accept: ferry %.0f msg/s, postfix %.0f msg/s, ratio %.1fx\n",
	    n / fs, n / ps, ps / fs
}'
rss_ratio "$f_sum" "$p_sum"
echo
load_after
echo "$me: each round: seconds queued hwm/rss_kb rss_kb pss_kb procs samples"
report_rounds
ok=1
[ "$f_q" = "$n" ] || { echo "$me: ferry queued $f_q of $n" >&2; ok=; }
[ "$p_q" = "$n" ] || { echo "$me: Postfix queued $p_q of $n" >&2; ok=; }
[ -n "$ok" ]
