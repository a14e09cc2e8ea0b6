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

BENCH_SAMPLE_INTERVAL=0.05	# seconds between memory samples
BENCH_START_WAIT=100		# tenths of a second for a listener to appear
BENCH_STOP_WAIT=100		# tenths of a second for ferry to exit

me=accept
here=$(cd "$(dirname "$0")/.." && pwd) || exit 1

[ $# -le 3 ] || { echo "usage: sh $0 [MESSAGES [SESSIONS [SIZE]]]" >&2; exit 64; }
n=${1:-${BENCH_N:-2000}}
s=${2:-${BENCH_SESSIONS:-20}}
size=${3:-${BENCH_SIZE:-4096}}
for v in "$n" "$s" "$size"; do
	case $v in
	''|*[!0-9]*|0) echo "$me: not a positive number: '$v'" >&2; exit 64 ;;
	esac
done
ferry=${FERRY:-$here/ferry}
reuse=
[ "${BENCH_REUSE:-0}" = 1 ] && reuse=-d
rounds=${BENCH_ROUNDS:-3}
case $rounds in
''|*[!0-9]*|0) echo "$me: BENCH_ROUNDS: not a positive number" >&2; exit 64 ;;
esac
pf_mode=relay
[ "${BENCH_POSTFIX_HOLD:-0}" = 1 ] && pf_mode=hold

die() {
	echo "$me: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (both daemons bind and drop privileges)"
[ -x "$ferry" ] || die "no $ferry; build it first (make)"
for c in smtp-source postfix python3 ss; do
	command -v "$c" >/dev/null || die "$c is missing (sh test/deps.sh test)"
done
if ! id ferry >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin ferry ||
	    die "cannot create user ferry"
fi

dir=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/ferry-bench.XXXXXX") ||
    die "mktemp failed"
# Both daemons drop privileges and must reach their queues below this.
chmod 755 "$dir" || die "chmod $dir"

ferry_pid=
sampler_pid=
pf_running=
ok=

cleanup() {
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
	[ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null
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

# A high TCP port nothing listens on.
free_port() {
	while :; do
		p=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		p=$((20000 + p % 40000))
		listening "$p" || { echo "$p"; return; }
	done
}

now() {
	date +%s.%N
}

# Writes the sampler used for both daemons: it follows the process tree
# under one pid and records the largest VmRSS and Pss sums it saw.
write_sampler() {
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

# Runs smtp-source against port $1; prints the seconds it took.
drive() {
	t0=$(now)
	# shellcheck disable=SC2086
	smtp-source -4 $reuse -s "$s" -m "$n" -l "$size" -M bench-client.test \
	    -f sender@bench-client.test -t rcpt@example.net \
	    "127.0.0.1:$1" >"$dir/smtp-source-$1.log" 2>&1 ||
	    { cat "$dir/smtp-source-$1.log" >&2; return 1; }
	t1=$(now)
	echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }'
}

# One round against ferry in $1 (a fresh directory); appends "seconds
# queued vmhwm_kb rss_kb pss_kb processes samples" to $dir/ferry.res.
run_ferry() {
	fd=$1
	mkdir "$fd" || die "mkdir $fd"
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
# Like Postfix's relayhost here: a closed port, so mail stays deferred.
smarthost = [127.0.0.1]:$dead_port
smarthost_tls = none
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
	secs=$(drive "$ferry_port") || die "smtp-source against ferry failed"
	sampler_stop
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ferry_pid/status")
	queued=$("$ferry" -c "$conf" mailq --json 2>>"$fd/ferry.log" |
	    python3 -c 'import json, sys; print(len(json.load(sys.stdin)))') ||
	    queued="?"
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
	echo "$secs $queued $hwm $(cat "$fd/mem")" >>"$dir/ferry.res"
}

# The same against a fresh Postfix in $1; appends to $dir/postfix.res
# (its "vmhwm" column is the sampled RSS sum: many processes, no one HWM).
run_postfix() {
	pd=$1
	pf_relay="[127.0.0.1]:$dead_port"
	[ $pf_mode = hold ] && pf_relay=hold
	sh "$here/test/postfix-instance.sh" start "$pd" "$pf_port" \
	    "$pf_relay" >/dev/null || die "Postfix did not start"
	pf_running=$pd
	pf_master=$(tr -d ' \n' <"$pd/queue/pid/master.pid")
	sampler_start "$pf_master" "$pd/mem"
	secs=$(drive "$pf_port") || die "smtp-source against Postfix failed"
	sampler_stop
	queued=$(find "$pd/queue/maildrop" "$pd/queue/incoming" \
	    "$pd/queue/active" "$pd/queue/deferred" "$pd/queue/hold" \
	    -type f | wc -l)
	sh "$here/test/postfix-instance.sh" stop "$pd" >/dev/null ||
	    die "Postfix did not stop"
	pf_running=
	read -r rss _ <"$pd/mem"
	echo "$secs $queued $rss $(cat "$pd/mem")" >>"$dir/postfix.res"
}

# Per column: the median time, the largest memory figures, the smallest
# count queued (every round has to queue every message).
summary() {
	med=$(awk '{ print $1 }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]
		else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	awk -v med="$med" 'NR == 1 || $2 < q { q = $2 }
	    { for (i = 3; i <= 7; i++) if ($i > m[i]) m[i] = $i }
	    END { printf "%s %s %d %d %d %d %d\n", med, q,
		m[3], m[4], m[5], m[6], m[7] }' "$1"
}

write_sampler
dead_port=$(free_port)
ferry_port=$(free_port)
pf_port=$(free_port)
while [ "$pf_port" = "$ferry_port" ] || [ "$pf_port" = "$dead_port" ]; do
	pf_port=$(free_port)
done
if [ -n "$reuse" ]; then
	how="reusing connections"
else
	how="one message per connection"
fi
echo "$me: $n messages of $size bytes over $s sessions ($how)," \
    "$rounds rounds, Postfix mode $pf_mode;" \
    "queues in $dir on $(df --output=source "$dir" | tail -1)"
# Other work on the machine moves these figures a lot; say how busy it was.
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
read -r f_secs f_q f_hwm f_rss f_pss f_np f_samp <<EOF
$(summary "$dir/ferry.res")
EOF
read -r p_secs p_q _ p_rss p_pss p_np p_samp <<EOF
$(summary "$dir/postfix.res")
EOF
awk -v n="$n" -v s="$s" -v size="$size" -v rounds="$rounds" \
    -v fs="$f_secs" -v ps="$p_secs" -v fq="$f_q" -v pq="$p_q" \
    -v fh="$f_hwm" -v fr="$f_rss" -v fp="$f_pss" -v fnp="$f_np" \
    -v pr="$p_rss" -v pp="$p_pss" -v pnp="$p_np" \
    -v fsa="$f_samp" -v psa="$p_samp" 'BEGIN {
	fmt = "%-28s %12s %12s\n"
	printf fmt, "", "ferry", "postfix"
	printf fmt, "messages x sessions", n " x " s, n " x " s
	printf fmt, "body bytes", size, size
	printf fmt, "seconds (median of " rounds ")", sprintf("%.2f", fs),
	    sprintf("%.2f", ps)
	printf fmt, "msg/s", sprintf("%.0f", n / fs), sprintf("%.0f", n / ps)
	printf fmt, "queued afterwards (min)", fq, pq
	printf fmt, "peak RSS MB (HWM / sum)", sprintf("%.1f", fh / 1024),
	    sprintf("%.1f", pr / 1024)
	printf fmt, "peak RSS MB (sampled sum)", sprintf("%.1f", fr / 1024),
	    sprintf("%.1f", pr / 1024)
	printf fmt, "peak PSS MB (sampled sum)", sprintf("%.1f", fp / 1024),
	    sprintf("%.1f", pp / 1024)
	printf fmt, "processes (max)", fnp, pnp
	printf fmt, "memory samples (max)", fsa, psa
	printf "accept: ferry %.0f msg/s, postfix %.0f msg/s, ratio %.1fx\n",
	    n / fs, n / ps, ps / fs
	printf "peak RSS: ferry %.1f MB, postfix %.1f MB, ratio %.3f\n",
	    fh / 1024, pr / 1024, fh / pr
}'
echo "$me: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$me: each round: seconds queued hwm/rss_kb rss_kb pss_kb procs samples"
sed 's/^/  ferry   /' "$dir/ferry.res"
sed 's/^/  postfix /' "$dir/postfix.res"
ok=1
[ "$f_q" = "$n" ] || { echo "$me: ferry queued $f_q of $n" >&2; ok=; }
[ "$p_q" = "$n" ] || { echo "$me: Postfix queued $p_q of $n" >&2; ok=; }
[ -n "$ok" ]
