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

BENCH_SAMPLE_INTERVAL=0.05	# seconds between memory samples
BENCH_POLL_INTERVAL=0.005	# seconds between looks at a sink's counter
BENCH_START_WAIT=100		# tenths of a second for a listener to appear
BENCH_STOP_WAIT=100		# tenths of a second for ferry to exit
BENCH_DRAIN_WAIT=50		# tenths of a second for a queue to empty
BENCH_SINK_BACKLOG=1000		# smtp-sink's listen backlog

me=relay
here=$(cd "$(dirname "$0")/.." && pwd) || exit 1

[ $# -le 3 ] || { echo "usage: sh $0 [MESSAGES [SESSIONS [SIZE]]]" >&2; exit 64; }
n=${1:-${BENCH_N:-2000}}
s=${2:-${BENCH_SESSIONS:-20}}
size=${3:-${BENCH_SIZE:-4096}}
rounds=${BENCH_ROUNDS:-3}
timeout=${BENCH_TIMEOUT:-300}
conc=${BENCH_DELIVERIES:-20}
for v in "$n" "$s" "$size" "$rounds" "$timeout" "$conc"; do
	case $v in
	''|*[!0-9]*|0) echo "$me: not a positive number: '$v'" >&2; exit 64 ;;
	esac
done
ferry=${FERRY:-$here/ferry}
reuse=
[ "${BENCH_REUSE:-0}" = 1 ] && reuse=-d

die() {
	echo "$me: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (the daemons bind and drop privileges)"
[ -x "$ferry" ] || die "no $ferry; build it first (make)"
for c in smtp-source smtp-sink postfix postconf python3 ss; do
	command -v "$c" >/dev/null || die "$c is missing (sh test/deps.sh test)"
done
if ! id ferry >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin ferry ||
	    die "cannot create user ferry"
fi

dir=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/ferry-relay.XXXXXX") ||
    die "mktemp failed"
# The daemons drop privileges and must reach their queues below this.
chmod 755 "$dir" || die "chmod $dir"

ferry_pid=
sampler_pid=
sink_pid=
waiter_pid=
pf_running=
ok=

cleanup() {
	[ -n "$waiter_pid" ] && kill "$waiter_pid" 2>/dev/null
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
	[ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
	[ -n "$pf_running" ] &&
	    sh "$here/test/postfix-instance.sh" stop "$pf_running" >/dev/null
	if [ -n "$ok" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$dir"
	else
		echo "$me: queues and logs kept in $dir"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

listening() {
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# A high TCP port nothing listens on and not handed out in this run.
used_ports=
free_port() {
	while :; do
		p=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		p=$((20000 + p % 40000))
		case " $used_ports " in *" $p "*) continue ;; esac
		listening "$p" && continue
		used_ports="$used_ports $p"
		echo "$p"
		return
	done
}

now() {
	date +%s.%N
}

# The memory sampler (as in bench/accept.sh): follows the process tree
# under one pid and records the largest VmRSS and Pss sums it saw.  And
# the waiter: polls smtp-sink -c output until its message counter reaches
# N, then writes the time it saw that.
write_helpers() {
	cat >"$dir/sampler.py" <<'EOF'
import os, signal, sys, time

root, out, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
stop = False


def on_term(signum, frame):
    global stop
    stop = True


def tree():
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(')') + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    todo, seen = [root], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def field(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


signal.signal(signal.SIGTERM, on_term)
peak_rss = peak_pss = peak_n = samples = 0
while True:
    pids = tree()
    rss = sum(field('/proc/%d/status' % p, 'VmRSS:') for p in pids)
    pss = sum(field('/proc/%d/smaps_rollup' % p, 'Pss:') for p in pids)
    peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
    peak_n, samples = max(peak_n, len(pids)), samples + 1
    if stop:
        break
    time.sleep(interval)
with open(out, 'w') as f:
    f.write('%d %d %d %d\n' % (peak_rss, peak_pss, peak_n, samples))
EOF
	cat >"$dir/sinkwait.py" <<'EOF'
# sinkwait.py OUT N TIMEOUT INTERVAL COUNTERFILE...: the sum of the last
# "mesg=K" of each smtp-sink -c output file; writes "time count" to OUT
# when it reaches N (exit 0) or at the timeout (exit 1).
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

sampler_start() {
	python3 "$dir/sampler.py" "$1" "$2" "$BENCH_SAMPLE_INTERVAL" &
	sampler_pid=$!
}

sampler_stop() {
	kill -TERM "$sampler_pid" 2>/dev/null
	wait "$sampler_pid"
	sampler_pid=
}

# sink_start DIR PORT: a fresh smtp-sink counting into DIR/sink.count.
sink_start() {
	smtp-sink -u nobody -c "127.0.0.1:$2" "$BENCH_SINK_BACKLOG" \
	    >"$1/sink.count" 2>"$1/sink.err" &
	sink_pid=$!
	i=0
	while ! listening "$2"; do
		kill -0 "$sink_pid" 2>/dev/null || {
			cat "$1/sink.err" >&2
			sink_pid=
			die "smtp-sink on $2 exited at start-up"
		}
		i=$((i + 1))
		[ $i -le $BENCH_START_WAIT ] || die "smtp-sink does not listen on $2"
		sleep 0.1
	done
}

sink_stop() {
	kill "$sink_pid" 2>/dev/null
	wait "$sink_pid" 2>/dev/null
	sink_pid=
}

# drive DIR PORT: starts the waiter on DIR's sink, runs smtp-source
# against PORT; prints "t0 t_sent t_done delivered" (epoch seconds).
drive() {
	python3 "$dir/sinkwait.py" "$1/done" "$n" "$timeout" \
	    "$BENCH_POLL_INTERVAL" "$1/sink.count" &
	waiter_pid=$!
	t0=$(now)
	# shellcheck disable=SC2086
	smtp-source -4 $reuse -s "$s" -m "$n" -l "$size" -M bench-client.test \
	    -f sender@bench-client.test -t rcpt@example.net \
	    "127.0.0.1:$2" >"$1/smtp-source.log" 2>&1 || {
		cat "$1/smtp-source.log" >&2
		return 1
	}
	t1=$(now)
	wait "$waiter_pid"
	rc=$?
	waiter_pid=
	read -r t2 got <"$1/done"
	[ $rc -eq 0 ] || echo "$me: the sink got only $got of $n in" \
	    "${timeout}s" >&2
	echo "$t0 $t1 $t2 $got"
}

# The times as "e2e_seconds accept_seconds delivered".
durations() {
	echo "$1" | awk '{ printf "%.3f %.3f %d\n", $3 - $1, $2 - $1, $4 }'
}

ferry_queued() {
	"$ferry" -c "$1" mailq --json 2>>"$2" |
	    python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' ||
	    echo "?"
}

# One round against ferry in $1 (a fresh directory); appends "e2e accept
# delivered left vmhwm_kb rss_kb pss_kb processes samples" to ferry.res.
run_ferry() {
	fd=$1
	mkdir "$fd" || die "mkdir $fd"
	sink_start "$fd" "$ferry_sink"
	conf=$fd/relay.conf
	cat >"$conf" <<EOF
hostname = bench.test
listen_smtp = 127.0.0.1:$ferry_port
listen_submission =
local_socket = $fd/submit.sock
queue_dir = $fd/queue
log = stderr
user = ferry
max_connections = 256
max_connections_per_client = 256
relay_networks = 127.0.0.0/8
smarthost = [127.0.0.1]:$ferry_sink
smarthost_tls = none
max_deliveries = $conc
max_deliveries_per_destination = $conc
${FERRY_EXTRA_CONF:-}
EOF
	"$ferry" -c "$conf" serve 2>"$fd/ferry.log" &
	ferry_pid=$!
	i=0
	while ! listening "$ferry_port"; do
		kill -0 "$ferry_pid" 2>/dev/null || {
			tail -20 "$fd/ferry.log" >&2
			ferry_pid=
			die "ferry exited at start-up; log above"
		}
		i=$((i + 1))
		[ $i -le $BENCH_START_WAIT ] ||
		    die "ferry does not listen on $ferry_port"
		sleep 0.1
	done
	sampler_start "$ferry_pid" "$fd/mem"
	res=$(drive "$fd" "$ferry_port") || die "smtp-source against ferry failed"
	sampler_stop
	# The 250 from the sink comes before ferry's own state write.
	i=0
	while left=$(ferry_queued "$conf" "$fd/ferry.log") && [ "$left" != 0 ]; do
		i=$((i + 1))
		if [ $i -gt $BENCH_DRAIN_WAIT ] || [ "$left" = "?" ]; then
			break
		fi
		sleep 0.1
	done
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ferry_pid/status")
	kill -TERM "$ferry_pid"
	i=0
	while kill -0 "$ferry_pid" 2>/dev/null; do
		i=$((i + 1))
		[ $i -le $BENCH_STOP_WAIT ] || die "ferry did not exit on SIGTERM"
		sleep 0.1
	done
	wait "$ferry_pid"
	rc=$?
	ferry_pid=
	[ $rc -eq 0 ] || echo "$me: warning: ferry exited $rc on SIGTERM" >&2
	sink_stop
	echo "$(durations "$res") $left $hwm $(cat "$fd/mem")" >>"$dir/ferry.res"
}

pf_queued() {
	find "$1/queue/maildrop" "$1/queue/incoming" "$1/queue/active" \
	    "$1/queue/deferred" "$1/queue/hold" -type f | wc -l
}

# The same against a fresh Postfix in $1; appends to postfix.res (its
# "vmhwm" column is the sampled RSS sum: many processes, no one HWM).
run_postfix() {
	pd=$1
	mkdir "$pd" || die "mkdir $pd"
	sink_start "$pd" "$pf_sink"
	sh "$here/test/postfix-instance.sh" start "$pd" "$pf_port" \
	    "[127.0.0.1]:$pf_sink" >/dev/null || die "Postfix did not start"
	pf_running=$pd
	# Written after start (postfix-instance.sh writes main.cf); the value
	# is Postfix's default, so the reload changes nothing but says it.
	postconf -c "$pd" -e "default_destination_concurrency_limit = $conc" ||
	    die "cannot set Postfix's concurrency limit"
	postfix -c "$pd" reload >>"$pd/maillog" 2>&1 ||
	    die "postfix reload failed; see $pd/maillog"
	pf_conc=$(postconf -c "$pd" -x -h smtp_destination_concurrency_limit)
	# reload restarts qmgr; let it settle before the clock starts.
	sleep 1
	pf_master=$(tr -d ' \n' <"$pd/queue/pid/master.pid")
	sampler_start "$pf_master" "$pd/mem"
	res=$(drive "$pd" "$pf_port") || die "smtp-source against Postfix failed"
	sampler_stop
	i=0
	while left=$(pf_queued "$pd") && [ "$left" != 0 ]; do
		i=$((i + 1))
		[ $i -le $BENCH_DRAIN_WAIT ] || break
		sleep 0.1
	done
	sh "$here/test/postfix-instance.sh" stop "$pd" >/dev/null ||
	    die "Postfix did not stop"
	pf_running=
	sink_stop
	read -r rss _ <"$pd/mem"
	echo "$(durations "$res") $left $rss $(cat "$pd/mem")" >>"$dir/postfix.res"
}

# Per column: the median end-to-end and accept times, the smallest count
# delivered, the largest left behind and the largest memory figures.
median() {
	awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]
		else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

summary() {
	awk -v e2e="$(median 1 "$1")" -v acc="$(median 2 "$1")" '
	    NR == 1 || $3 < d { d = $3 }
	    { if ($4 == "?" || left == "?") left = "?"
	      else if ($4 > left) left = $4
	      for (i = 5; i <= 9; i++) if ($i > m[i]) m[i] = $i }
	    END { printf "%s %s %d %s %d %d %d %d %d\n", e2e, acc, d,
		left == "" ? 0 : left, m[5], m[6], m[7], m[8], m[9] }' "$1"
}

write_helpers
ferry_port=$(free_port)
ferry_sink=$(free_port)
pf_port=$(free_port)
pf_sink=$(free_port)
pf_conc='?'
if [ -n "$reuse" ]; then
	how="reusing connections"
else
	how="one message per connection"
fi
echo "$me: $n messages of $size bytes over $s sessions ($how), $rounds" \
    "rounds, $conc deliveries at once;" \
    "queues in $dir on $(df --output=source "$dir" | tail -1)"
echo "$me: load average before: $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(nproc) CPUs"

# Alternate who goes first, so neither always meets a cold or a busy disk.
r=1
while [ $r -le "$rounds" ]; do
	if [ $((r % 2)) -eq 1 ]; then
		run_ferry "$dir/ferry-$r"
		run_postfix "$dir/postfix-$r"
	else
		run_postfix "$dir/postfix-$r"
		run_ferry "$dir/ferry-$r"
	fi
	r=$((r + 1))
done

# --- report --------------------------------------------------------------
read -r f_e2e f_acc f_d f_left f_hwm f_rss f_pss f_np f_samp <<EOF
$(summary "$dir/ferry.res")
EOF
read -r p_e2e p_acc p_d p_left _ p_rss p_pss p_np p_samp <<EOF
$(summary "$dir/postfix.res")
EOF
echo "$me: Postfix smtp_destination_concurrency_limit = $pf_conc"
awk -v n="$n" -v s="$s" -v size="$size" -v rounds="$rounds" \
    -v fe="$f_e2e" -v pe="$p_e2e" -v fa="$f_acc" -v pa="$p_acc" \
    -v fd="$f_d" -v pd="$p_d" -v fl="$f_left" -v pl="$p_left" \
    -v fh="$f_hwm" -v fr="$f_rss" -v fp="$f_pss" -v fnp="$f_np" \
    -v pr="$p_rss" -v pp="$p_pss" -v pnp="$p_np" \
    -v fsa="$f_samp" -v psa="$p_samp" 'BEGIN {
	fmt = "%-32s %12s %12s\n"
	printf fmt, "", "ferry", "postfix"
	printf fmt, "messages x sessions", n " x " s, n " x " s
	printf fmt, "body bytes", size, size
	printf fmt, "end-to-end s (median of " rounds ")", sprintf("%.2f", fe),
	    sprintf("%.2f", pe)
	printf fmt, "end-to-end msg/s", sprintf("%.0f", n / fe),
	    sprintf("%.0f", n / pe)
	printf fmt, "accepting s (median)", sprintf("%.2f", fa),
	    sprintf("%.2f", pa)
	printf fmt, "at the sink (min)", fd, pd
	printf fmt, "left in queue (max)", fl, pl
	printf fmt, "peak RSS MB (HWM / sum)", sprintf("%.1f", fh / 1024),
	    sprintf("%.1f", pr / 1024)
	printf fmt, "peak RSS MB (sampled sum)", sprintf("%.1f", fr / 1024),
	    sprintf("%.1f", pr / 1024)
	printf fmt, "peak PSS MB (sampled sum)", sprintf("%.1f", fp / 1024),
	    sprintf("%.1f", pp / 1024)
	printf fmt, "processes (max)", fnp, pnp
	printf fmt, "memory samples (max)", fsa, psa
	printf "relay: ferry %.0f msg/s, postfix %.0f msg/s end to end, " \
	    "ratio %.2fx (target >= 1.5x)\n", n / fe, n / pe, pe / fe
	printf "peak RSS: ferry %.1f MB, postfix %.1f MB, ratio %.3f " \
	    "(target <= 0.1); PSS ratio %.3f\n",
	    fh / 1024, pr / 1024, fh / pr, fp / pp
}'
echo "$me: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$me: each round: e2e_s accept_s delivered left hwm/rss_kb rss_kb" \
    "pss_kb procs samples"
sed 's/^/  ferry   /' "$dir/ferry.res"
sed 's/^/  postfix /' "$dir/postfix.res"
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
