#!/bin/sh
# startup.sh - how long ferry and Postfix take to restart over a large
# queue of deferred mail, until the first SMTP greeting, and their memory
# right then; measured in one run on the same disk, cold and warm.
#
#   sh bench/startup.sh [MESSAGES [SESSIONS [SIZE]]]
#   env: BENCH_N (20000 deferred messages), BENCH_SESSIONS (20, to queue
#        them), BENCH_SIZE (4096 bytes of body), BENCH_REUSE=1 (queue
#        them over fewer connections, smtp-source -d), FERRY (./ferry),
#        BENCH_ROUNDS (3; the figures are the median round), BENCH_TMPDIR
#        (/var/tmp: a real disk, not tmpfs), BENCH_KEEP=1 (keep queues and
#        logs), BENCH_TIMEOUT (600 s for all of the mail to be deferred),
#        FERRY_EXTRA_CONF (lines appended to ferry's config).
#
# Owns only the measurement.  smtp-source queues the load into ferry and
# into a private Postfix (test/postfix-instance.sh), both relaying to a
# closed port, and the script waits until every message has been tried
# and deferred: ferry holds N queue files, each with its ID.st; Postfix
# holds N files in deferred/ and none in incoming/ or active/.  Retries
# are an hour away on both sides (ferry retry_min = 1h; Postfix
# minimal_backoff_time = 1h), so no restart tries a delivery.  Then, in
# each round, each MTA (who goes first alternating) is started cold
# (after sync and drop_caches) and then warm, and stopped after each.
# The time runs from just before the exec of "ferry serve" or "postfix
# start" until a new connection reads the 220 greeting, polling every
# millisecond; ferry greets while its loop reads the queue's index, and
# Postfix's master starts smtpd on demand while qmgr scans the queue in
# the background, so the 220 is the figure to compare.  "postfix start" runs
# without postfix-script's checks (lib.sh pf_restart says why); the one
# of them that reads the whole queue, postsuper's structure check (-s
# -p), is timed on its own beside it, cold and warm, with Postfix down.
# Memory right after the 220, with that connection still open:
# VmRSS and Pss summed over the process tree (ferry: its one process;
# Postfix: master and its children, the smtpd answering us included).
# Needs root (drop_caches, the daemons bind and drop privileges).
# Exit: 0 done and both queues still hold every message, 1 otherwise, 64
# usage.

set -u

STARTUP_POLL=0.001		# seconds between connection attempts
STARTUP_GREET_WAIT=120		# seconds for a start to reach its 220
STARTUP_READY_WAIT=1000		# hundredths of a second for python to start
STARTUP_CHECK_EVERY=1		# seconds between looks at the queues

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh" || exit 1

BENCH_N=${BENCH_N:-20000}
load_args "$@"
rounds=${BENCH_ROUNDS:-3}
timeout=${BENCH_TIMEOUT:-600}
positive "$n" "$s" "$size" "$rounds" "$timeout"

prepare "drop_caches; the daemons bind and drop privileges" ferry-startup \
    smtp-source postfix python3 ss
[ -w /proc/sys/vm/drop_caches ] ||
    die "cannot write /proc/sys/vm/drop_caches (a container?)"

# The greeter: waits for the 220 and weighs the tree that sent it.
write_greeter() {
	cat >"$dir/greet.py" <<'EOF'
# greet.py OUT PORT PIDFILE TIMEOUT INTERVAL READY WATCH: creates READY,
# then connects to 127.0.0.1:PORT every INTERVAL seconds until a server
# takes the connection (gives up early if WATCH is 1 and the pid in
# PIDFILE has exited), and reads its greeting to the last line; with the
# connection still open it sums VmRSS and Pss over the process tree under
# the pid in PIDFILE.  Writes "epoch_of_220 rss_kb pss_kb processes" to
# OUT and exits 0; exits 1 at the timeout or on a greeting other than
# 220.  READY lets the caller start the clock after python's own start.
import os, socket, sys, time

from proctree import field, tree

out, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
timeout, interval, ready = float(sys.argv[4]), float(sys.argv[5]), \
    sys.argv[6]
watch = sys.argv[7] == '1'
LINE_MAX = 1024


def fail(why):
    sys.stderr.write('greet.py: %s\n' % why)
    sys.exit(1)


# The daemon of PIDFILE has exited (no file or an empty one: not started
# yet).  The shell reaps it only after us, so look for a zombie too.
def gone():
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid == 0:
        return False
    try:
        with open('/proc/%d/stat' % pid) as f:
            st = f.read()
    except OSError:
        return True
    return st[st.rindex(')') + 2] in 'ZX'


open(ready, 'w').close()
deadline = time.time() + timeout
while True:
    try:
        conn = socket.create_connection(('127.0.0.1', port),
                                        max(0.001, deadline - time.time()))
        break
    except ConnectionRefusedError:
        if time.time() > deadline:
            fail('nothing listens on port %d' % port)
        if watch and gone():
            fail('the daemon exited before it listened')
        time.sleep(interval)
    except OSError as e:
        fail('connecting to port %d: %s' % (port, e))
reader = conn.makefile('rb')
# A multi-line greeting ends with "220 "; "220-" lines come before it.
while True:
    try:
        line = reader.readline(LINE_MAX)
    except OSError as e:
        fail('reading the greeting: %s' % e)
    if line[:4] != b'220-':
        break
t220 = time.time()
if line[:4] != b'220 ':
    fail('greeting: %r' % line)
root = 0
while root == 0:
    try:
        with open(pidfile) as f:
            root = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pass
    if root == 0:
        if time.time() > deadline:
            fail('no pid in %s' % pidfile)
        time.sleep(interval)
pids = tree(root)
rss = sum(field('/proc/%d/status' % p, 'VmRSS:') for p in pids)
pss = sum(field('/proc/%d/smaps_rollup' % p, 'Pss:') for p in pids)
try:
    conn.sendall(b'QUIT\r\n')
    reader.readline(LINE_MAX)
except OSError:
    pass
conn.close()
with open(out, 'w') as f:
    f.write('%.6f %d %d %d\n' % (t220, rss, pss, len(pids)))
EOF
}

# ferry_counts: "messages states" in ferry's queue (file names of 18 hex
# digits, and those with .st after them).
ferry_counts() {
	# shellcheck disable=SC2012 # ls -f: only names, unsorted, fast
	ls -f "$ferry_dir/queue" | awk '
	    /^[0-9A-Fa-f]+$/ && length($0) == 18 { m++ }
	    /^[0-9A-Fa-f]+\.st$/ && length($0) == 21 { st++ }
	    END { printf "%d %d\n", m, st }'
}

# pf_counts: "deferred pending" in Postfix's queue (pending: maildrop/,
# incoming/, active/).
pf_counts() {
	q=$pf_dir/queue
	echo "$(find "$q/deferred" -type f | wc -l)" \
	    "$(find "$q/maildrop" "$q/incoming" "$q/active" -type f | wc -l)"
}

# wait_deferred WHAT COUNTS: until COUNTS (a function) prints "N N" for
# ferry or "N 0" for Postfix; dies at the timeout.
wait_deferred() {
	want="$n $n"
	[ "$1" = Postfix ] && want="$n 0"
	t=0
	while got=$($2) && [ "$got" != "$want" ]; do
		t=$((t + STARTUP_CHECK_EVERY))
		[ $t -le "$timeout" ] ||
		    die "$1 has not deferred all $n in ${timeout}s: $got"
		sleep $STARTUP_CHECK_EVERY
	done
}

# queue_up: queues the load into both and waits until all of it is
# deferred, then stops both; sets ferry_dir and pf_dir.
queue_up() {
	ferry_dir=$dir/ferry
	pf_dir=$dir/postfix
	mkdir "$ferry_dir" || die "mkdir $ferry_dir"
	ferry_start "$ferry_dir" "$ferry_port" <<EOF
# A closed port, and no retry for an hour: the mail stays deferred.
smarthost = [127.0.0.1]:$dead_port
smarthost_tls = none
retry_min = 1h
retry_max = 4h
EOF
	smtp_source "$ferry_port" "$dir/smtp-source-ferry.log" ||
	    die "smtp-source against ferry failed"
	wait_deferred ferry ferry_counts
	ferry_stop
	# postfix-instance.sh: minimal_backoff_time = 1h, queue_run_delay = 1h.
	pf_start "$pf_dir" "$pf_port" "[127.0.0.1]:$dead_port"
	smtp_source "$pf_port" "$dir/smtp-source-postfix.log" ||
	    die "smtp-source against Postfix failed"
	wait_deferred Postfix pf_counts
	pf_stop "$pf_dir"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches || die "cannot drop caches"
}

# measure MTA RD MODE: one start of MTA (ferry or postfix), cold (caches
# dropped just before) or warm, its files in the round directory RD; sets
# res to "seconds rss_kb pss_kb processes" and leaves it stopped.
measure() {
	out=$2/$1-$3
	if [ "$1" = ferry ]; then
		gport=$ferry_port pidfile=$out.pid log=$ferry_dir/ferry.log
		watch=1
	else
		# Left from the last start; read only after the 220, when the
		# new master has written it.  A failed start stops us first.
		gport=$pf_port pidfile=$pf_dir/queue/pid/master.pid
		log=$pf_dir/maillog watch=0
	fi
	# waiter_pid: lib.sh's cleanup stops the greeter if we die.
	python3 "$dir/greet.py" "$out" "$gport" "$pidfile" \
	    "$STARTUP_GREET_WAIT" "$STARTUP_POLL" "$out.ready" "$watch" &
	waiter_pid=$!
	i=0
	while [ ! -e "$out.ready" ]; do
		kill -0 "$waiter_pid" 2>/dev/null || die "greet.py did not start"
		i=$((i + 1))
		[ $i -le $STARTUP_READY_WAIT ] || die "greet.py did not start"
		sleep 0.01
	done
	[ "$3" = cold ] && drop_caches
	t0=$(now)
	if [ "$1" = ferry ]; then
		ferry_restart "$ferry_dir"
		echo "$ferry_pid" >"$pidfile" || die "cannot write $pidfile"
	else
		pf_restart "$pf_dir"
	fi
	wait "$waiter_pid"
	rc=$?
	waiter_pid=
	[ $rc -eq 0 ] || {
		tail -"$BENCH_LOG_TAIL" "$log" >&2
		die "no greeting from $1 ($3); log above"
	}
	if [ "$1" = ferry ]; then
		ferry_stop
	else
		pf_stop "$pf_dir"
	fi
	res=$(awk -v t0="$t0" '{ printf "%.3f %d %d %d\n", $1 - t0, $2, $3,
	    $4 }' "$out")
}

# run_MTA RD (for alternate_rounds): a cold and a warm start; appends
# "cold_s warm_s cold_rss_kb warm_rss_kb cold_pss_kb warm_pss_kb
# cold_procs warm_procs" to dir/MTA.res.
run_mta() {
	mkdir "$2" || die "mkdir $2"
	measure "$1" "$2" cold
	read -r cs cr cp cn <<EOF
$res
EOF
	measure "$1" "$2" warm
	read -r ws wr wp wn <<EOF
$res
EOF
	echo "$cs $ws $cr $wr $cp $wp $cn $wn" >>"$dir/$1.res"
}

run_ferry() {
	run_mta ferry "$1"
}

# Also times postsuper, once cold and once warm, into dir/postsuper.res.
run_postfix() {
	run_mta postfix "$1"
	pf_check cold
	c=$res
	pf_check warm
	echo "$c $res" >>"$dir/postsuper.res"
}

# pf_check MODE: the queue structure check a checked "postfix start" runs
# before master (postsuper with no options: -s -p over every queue
# directory), alone, cold or warm; sets res to its seconds.
pf_check() {
	[ "$1" = cold ] && drop_caches
	t0=$(now)
	postsuper -c "$pf_dir" >>"$pf_dir/maillog" 2>&1 ||
	    die "postsuper failed; see $pf_dir/maillog"
	res=$(echo "$t0 $(now)" | awk '{ printf "%.3f\n", $2 - $1 }')
}

write_proctree
write_greeter
free_port; dead_port=$port
free_port; ferry_port=$port
free_port; pf_port=$port
echo "$me: $n deferred messages of $size bytes (queued over $s" \
    "sessions), $rounds rounds, each cold then warm;" \
    "queues in $dir on $(queue_disk)"
load_before
t_q=$(now)
queue_up
echo "$me: queued and deferred on both sides in" \
    "$(echo "$t_q $(now)" | awk '{ printf "%.0f", $2 - $1 }') s"
alternate_rounds "$rounds"

# --- report --------------------------------------------------------------
read -r f_m f_st <<EOF
$(ferry_counts)
EOF
read -r p_def p_pend <<EOF
$(pf_counts)
EOF
med() {
	median "$1" "$dir/$2.res"
}
width=32
table_head $width
awk -v w=$width -v rounds="$rounds" \
    -v fc="$(med 1 ferry)" -v pc="$(med 1 postfix)" \
    -v fw="$(med 2 ferry)" -v pw="$(med 2 postfix)" \
    -v frc="$(med 3 ferry)" -v prc="$(med 3 postfix)" \
    -v frw="$(med 4 ferry)" -v prw="$(med 4 postfix)" \
    -v fpc="$(med 5 ferry)" -v ppc="$(med 5 postfix)" \
    -v fn="$(med 7 ferry)" -v pn="$(med 7 postfix)" \
    -v psc="$(med 1 postsuper)" -v psw="$(med 2 postsuper)" \
    -v fq="$f_st" -v pq="$p_def" 'BEGIN {
	fmt = "%-" w "s %12s %12s\n"
	printf fmt, "first 220 cold s (median of " rounds ")",
	    sprintf("%.3f", fc), sprintf("%.3f", pc)
	printf fmt, "first 220 warm s (median)", sprintf("%.3f", fw),
	    sprintf("%.3f", pw)
	printf fmt, "postsuper -s -p cold s (median)", "-",
	    sprintf("%.3f", psc)
	printf fmt, "postsuper -s -p warm s (median)", "-",
	    sprintf("%.3f", psw)
	printf fmt, "RSS MB at 220, cold (median)", sprintf("%.1f", frc / 1024),
	    sprintf("%.1f", prc / 1024)
	printf fmt, "RSS MB at 220, warm (median)", sprintf("%.1f", frw / 1024),
	    sprintf("%.1f", prw / 1024)
	printf fmt, "PSS MB at 220, cold (median)", sprintf("%.1f", fpc / 1024),
	    sprintf("%.1f", ppc / 1024)
	printf fmt, "processes at 220 (median)", fn, pn
	printf fmt, "deferred afterwards", fq, pq
	printf "startup: first 220 cold: ferry %.3f s, postfix %.3f s, " \
	    "ratio %.1fx; warm: %.3f s, %.3f s, %.1fx (postfix / ferry)\n",
	    fc, pc, pc / fc,
	    fw, pw, pw / fw
	printf "RSS at first 220 (cold): ferry %.1f MB, postfix %.1f MB, " \
	    "ratio %.3f\n", frc / 1024, prc / 1024, frc / prc
}'
load_after
echo "$me: each round: cold_s warm_s cold_rss_kb warm_rss_kb cold_pss_kb" \
    "warm_pss_kb cold_procs warm_procs"
report_rounds
sed 's/^/  postsuper (cold_s warm_s) /' "$dir/postsuper.res"
ok=1
if [ "$f_m" != "$n" ] || [ "$f_st" != "$n" ]; then
	echo "$me: ferry holds $f_m messages, $f_st deferred, of $n" >&2
	ok=
fi
if [ "$p_def" != "$n" ] || [ "$p_pend" != 0 ]; then
	echo "$me: Postfix holds $p_def deferred, $p_pend pending, of $n" >&2
	ok=
fi
[ -n "$ok" ]
