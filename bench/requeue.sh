#!/bin/sh
# requeue.sh - what ferry's scheduler costs to flush a big deferred queue
# that is deferred again: N messages queued while the smarthost is down,
# then flushed to an smtp-sink that refuses every RCPT with a 4xx, so each
# goes back to the idle list.  The scan over that list must not cost
# O(queue) per freed slot (it did: a reviewer saw 13 s of CPU for 16,000;
# here 1.5 s of user CPU before the fix, 0.6 s after).
#
#   sh bench/requeue.sh [MESSAGES...]
#   env: FERRY (./ferry), BENCH_TMPDIR (/var/tmp), BENCH_KEEP=1 (keep
#        queues and logs), BENCH_TIMEOUT (600 s for each phase)
#
# Prints, per N (default 4000 16000), ferry's CPU seconds (user and
# system, /proc/PID/stat; the system part is mostly the state writes) and
# the wall time from the flush until the last deferral.  Needs root.
# Exit: 0 done, 1 otherwise, 64 usage.

set -u

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

[ $# -gt 0 ] || set -- 4000 16000
positive "$@"
timeout=${BENCH_TIMEOUT:-600}
positive "$timeout"
prepare "the daemon binds and drops privileges" ferry-requeue \
    smtp-source smtp-sink ss

# The running ferry's CPU seconds: "user system".
ferry_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, "")
	    printf "%.2f %.2f\n", $12 / hz, $13 / hz }' "/proc/$ferry_pid/stat"
}

# deferred_at_least DIR K: DIR's ferry logged K deferrals; dies at the
# timeout or if ferry exits.
deferred_at_least() {
	i=0
	while [ "$(grep -c 'status=deferred' "$1/ferry.log")" -lt "$2" ]; do
		kill -0 "$ferry_pid" 2>/dev/null || die "ferry exited"
		i=$((i + 1))
		[ $i -le $((timeout * 10)) ] || die "fewer than $2 deferrals"
		sleep 0.1
	done
}

free_port; ferry_port=$port
free_port; sink_port=$port
load_before
for n in "$@"; do
	d=$dir/n$n
	mkdir "$d" || die "mkdir $d"
	ferry_start "$d" "$ferry_port" <<EOF2
smarthost = [127.0.0.1]:$sink_port
smarthost_tls = none
EOF2
	# Nothing listens on the sink's port yet: each message is deferred.
	s=20 size=1024 reuse=
	smtp_source "$ferry_port" "$d/smtp-source.log" ||
	    die "smtp-source failed"
	deferred_at_least "$d" "$n"
	smtp-sink -u nobody -r RCPT "127.0.0.1:$sink_port" \
	    "$BENCH_SINK_BACKLOG" >/dev/null 2>"$d/sink.err" &
	sink_pids="$sink_pids $!"
	wait_listen smtp-sink $! "$sink_port" 1 t "$d/sink.err"
	c0=$(ferry_cpu)
	t0=$(now)
	"$ferry" -c "$d/relay.conf" flush 2>>"$d/ferry.log" ||
	    die "ferry flush failed"
	deferred_at_least "$d" $((2 * n))
	t1=$(now)
	c1=$(ferry_cpu)
	ferry_stop
	sinks_stop
	echo "$c0 $c1" | awk -v n="$n" -v t0="$t0" -v t1="$t1" '{
	    printf "requeue: N=%d: ferry CPU %.2f s (user %.2f, system " \
		"%.2f), wall %.2f s from the flush to the last deferral\n",
		n, $3 + $4 - $1 - $2, $3 - $1, $4 - $2, t1 - t0 }'
done
load_after
ok=1
